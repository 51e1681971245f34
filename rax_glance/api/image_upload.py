"""Paste filter for `PUT /v2/images/{id}/file`: clean refusals, and no data left by a failed one.

Place it after `context` in the glance-api pipeline (`etc/glance-api-paste.ini`):

    [filter:cloudimages-image-upload]
    paste.filter_factory = rax_glance.api.image_upload:filter_factory

Two defects of stock Glance 33's upload controller (`glance.api.v2.image_data`), both closed
here without patching Glance:

* **A refusal by policy logs an ERROR and a traceback.** Glance's policy check raises a webob
  403 (or 404 for an image the caller cannot see) inside the controller's `try`, whose
  `except webob.exc.HTTPError` logs "Failed to upload image data due to HTTP error" and then
  tries to "restore" the still-`queued` image ("Image status transition from queued to queued
  is not allowed", with a traceback). Customers are refused by design (`upload_image` is the
  operator's and the services'), so every customer upload did that. This filter runs *Glance's
  own* check first (the same image lookup through Glance's gateway, the same
  `ImageAPIPolicy.upload_image`, the same enforcer) before Glance's controller or the body is
  touched, and answers Glance's own 403/404 itself, with one INFO line in the log.

* **A refused upload can leave data behind.** When Glance's format inspection refuses the data
  (415 "Image disk_format vhd does not match stream data raw", and other failures after the
  data reached the store), Glance has already written the data to the store and set the image's
  checksum, hash and location; it then saves the image back as `queued` *with* them. The image
  downloads with `Content-Length: None` (gunicorn answers 500), a new upload of other data is
  refused ("checksum of uploaded data is different"), and the data stays in the store. After
  any error answer to an upload, this filter checks the image with Glance's database API, with
  the uploader's own request context (no more authority than the uploader has): if it is
  `queued` but carries data (locations, checksum, hash or size), the data is deleted from the
  store and the image is reset to what Glance has for an image without data, so its download
  answers 204 and a corrected upload works.
"""

import re

import webob
import webob.exc
from oslo_log import log as logging

LOG = logging.getLogger(__name__)

_UPLOAD_PATH = re.compile(r'^/v2/images/([^/]+)/file/?$')
# What an image without data has: Glance sets these while it stores the data.
_DATA_FIELDS = ('checksum', 'os_hash_algo', 'os_hash_value', 'size', 'virtual_size')


class ImageUploadFilter:
    """WSGI middleware in front of Glance's v2 API; see the module docstring."""

    def __init__(self, app):
        self.app = app
        self._controller = None

    def __call__(self, environ, start_response):
        match = _UPLOAD_PATH.match(environ.get('PATH_INFO', ''))
        if environ.get('REQUEST_METHOD', '').upper() != 'PUT' or match is None:
            return self.app(environ, start_response)
        image_id = match.group(1)
        req = webob.Request(environ)
        if getattr(req, 'context', None) is None:
            return self.app(environ, start_response)
        try:
            refusal = self._refusal(req, image_id)
        except Exception:  # noqa: BLE001 - Glance makes the same check again and answers it
            LOG.exception('Upload pre-check failed for image %s; Glance decides', image_id)
            refusal = None
        if refusal is not None:
            return refusal(environ, start_response)
        resp = req.get_response(self.app)
        if resp.status_code >= 400:
            try:
                self._clean(req.context, image_id)
            except Exception:  # noqa: BLE001 - the answer stands; the log says what is left
                LOG.exception('Could not remove the data of a refused upload to image %s',
                              image_id)
        return resp(environ, start_response)

    def _glance(self):
        if self._controller is None:
            from glance.api.v2 import image_data
            self._controller = image_data.ImageDataController()
        return self._controller

    def _refusal(self, req, image_id):
        """Glance's own answer (403/404) when its upload policy refuses the caller, else None."""
        from glance.api.v2 import policy as api_policy
        from glance.common import exception

        controller = self._glance()
        try:
            image = controller.gateway.get_repo(req.context).get(image_id)
            api_policy.ImageAPIPolicy(req.context, image, controller.policy).upload_image()
        except exception.GlanceException:
            return None  # Glance answers these itself, without a traceback (404, 403, ...)
        except (webob.exc.HTTPForbidden, webob.exc.HTTPNotFound) as exc:
            LOG.info('Refused an upload to image %s by project %s: %s %s', image_id,
                     req.context.project_id, exc.status_code, exc.explanation or exc.title)
            return exc
        return None

    def _clean(self, context, image_id):
        """Remove what a failed upload left on a queued image (no-op for a clean one).

        With the uploader's own context: Glance's database API lets it see and change only
        what it may (the operator, or a service acting for the image's owner), never more.
        """
        import glance.db
        from glance.common import exception
        from glance.common import store_utils

        db_api = glance.db.get_api()
        try:
            image = db_api.image_get(context, image_id)
        except (exception.NotFound, exception.Forbidden):
            return
        locations = image.get('locations') or []
        if image['status'] != 'queued' or not (
                locations or any(image.get(field) is not None for field in _DATA_FIELDS)):
            return
        LOG.warning('A refused upload left data on queued image %s: removing it', image_id)
        try:
            db_api.image_update(context, image_id, dict.fromkeys(_DATA_FIELDS),
                                from_state='queued')
        except exception.Conflict:
            return  # no longer queued: someone else's upload owns it now
        except exception.Forbidden:
            LOG.warning('Not allowed to clean queued image %s for project %s', image_id,
                        context.project_id)
            return
        for location in locations:
            store_utils.safe_delete_from_backend(context, image_id, location)
            try:
                db_api.image_location_delete(context, image_id, location['id'], 'deleted')
            except exception.NotFound:
                pass  # already marked deleted by safe_delete_from_backend


def filter_factory(global_conf, **local_conf):
    def _filter(app):
        return ImageUploadFilter(app)
    return _filter
