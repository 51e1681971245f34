"""glance_store driver ``swiftdlo``: images as verifiable Dynamic Large Objects in Swift.

Enable it as a Glance backend (the entry point name is the URL scheme)::

    [DEFAULT]
    enabled_backends = local:file, swift:swiftdlo

    [swift]                       # the backend group: options below
    swiftdlo_container = glance-images

    [rax_swift]                   # how to reach Swift (see rax_glance.swift.access)
    auth_url = ...
    user = ...
    key = ...

Where images live: in the account of the service user of ``[rax_swift]`` (its own storage
URL, or, with ``swiftdlo_account_project``, that project's account through
``storage_url_template``), container ``swiftdlo_container`` (created on first upload), one
DLO per image named after the image id: manifest ``<image_id>`` and segments
``<image_id>-00001``... Locations read ``swiftdlo://<container>/<image_id>``; the account is
configuration, so credentials never enter Glance's database.

Unlike glance_store's ``swift`` driver (Keystone v3 only) it talks to any Swift auth that
python-swiftclient speaks (tempauth v1 included), and every download is verified against the
size and sha256 recorded at upload: a lost or altered segment makes the download fail instead
of serving a short image.

The export flow calls :func:`write_project_object` to write a stream into a container of the
requesting project's own account.
"""

import threading
import urllib.parse

import swiftclient
from glance_store import capabilities
from glance_store import driver
from glance_store import exceptions
from glance_store import location
from oslo_config import cfg
from oslo_log import log as logging

from rax_glance.swift import access
from rax_glance.swift import dlo
from rax_glance.swift import errors
from rax_glance.swift import names

LOG = logging.getLogger(__name__)
SCHEME = 'swiftdlo'
# Name of the backend group shown in the sample config (operators choose their own).
SAMPLE_GROUP = 'swift'

OPTIONS = [
    cfg.StrOpt('swiftdlo_container', default='glance-images',
               help='Container (in the service account) holding this store\'s images.'),
    cfg.StrOpt('swiftdlo_account_project',
               help='Keep images in this project\'s account (through [rax_swift] '
                    'storage_url_template) instead of the service user\'s own account.'),
    cfg.BoolOpt('swiftdlo_create_container', default=True,
                help='Create the container on the first upload when it does not exist.'),
    cfg.IntOpt('swiftdlo_segment_size', min=1, max=access.MAX_SEGMENT_SIZE,
               help='Segment size in bytes for this store; [rax_swift] segment_size when '
                    'unset.'),
    cfg.IntOpt('swiftdlo_segment_concurrency', min=1, max=64,
               help='Segments uploaded at once for this store; [rax_swift] '
                    'segment_concurrency when unset.'),
]


def list_opts():
    return [(SAMPLE_GROUP, OPTIONS)]


class StoreLocation(location.StoreLocation):
    """``swiftdlo://<container>/<object>`` (both percent-encoded)."""

    def process_specs(self):
        self.scheme = SCHEME
        self.container = self.specs.get('container')
        self.obj = self.specs.get('obj')

    def get_uri(self):
        return '%s://%s/%s' % (SCHEME, urllib.parse.quote(self.container, safe=''),
                               urllib.parse.quote(self.obj, safe=''))

    def parse_uri(self, uri):
        self.validate_schemas(uri, valid_schemas=('%s://' % SCHEME,))
        rest = uri[len(SCHEME) + 3:]
        if '/' not in rest or '?' in rest or '#' in rest:
            raise exceptions.BadStoreUri(
                message='Expected %s://<container>/<object>, got %s' % (SCHEME, uri))
        container, obj = rest.split('/', 1)
        try:
            self.container = names.validate_container(urllib.parse.unquote(container))
            self.obj = names.validate_object(urllib.parse.unquote(obj))
        except errors.InvalidName as exc:
            raise exceptions.BadStoreUri(message='%s: %s' % (uri, exc.message)) from None
        self.scheme = SCHEME


# What Swift and the adapters raise; anything else (e.g. Glance's own size-limit errors
# raised by the image data it hands to `add`) passes through for Glance to answer.
_SWIFT_FAILURES = ((errors.SwiftError, swiftclient.ClientException) + errors.TIMEOUT_ERRORS
                   + errors.CONNECTION_ERRORS)


def _translated(what, failures=_SWIFT_FAILURES):
    """Decorator: Swift adapter errors become glance_store exceptions with a message."""

    def wrap(func):
        def run(self, *args, **kwargs):
            try:
                return func(self, *args, **kwargs)
            except failures as exc:
                # Glance shows the message to its API user: no container/object names
                # there (they are the store's internals); the detail goes to the log.
                mapped = errors.to_store_exception(exc, what, self._timeout(), public=True)
                if mapped is exc:
                    raise
                LOG.warning('%s', errors.describe(exc, what))
                raise mapped from exc

        run.__name__ = func.__name__
        run.__doc__ = func.__doc__
        return run

    return wrap


class Store(driver.Store):
    """Images as DLOs in Swift, verified on every read."""

    # Ranges (READ_RANDOM) are served with the listing checked up front and the length
    # checked at the end; whole reads are also checked against the recorded sha256.
    _CAPABILITIES = (capabilities.BitMasks.RW_ACCESS |
                     capabilities.BitMasks.READ_RANDOM |
                     capabilities.BitMasks.DRIVER_REUSABLE)
    OPTIONS = OPTIONS
    READ_CHUNKSIZE = 1024 * 1024

    def __init__(self, conf, backend=None):
        super().__init__(conf, backend=backend)
        self._lock = threading.Lock()
        self._service_auth = None
        self._swift = None

    def get_schemes(self):
        return (SCHEME,)

    # -- configuration ------------------------------------------------------------------
    @property
    def store_conf(self):
        return getattr(self.conf, self.backend_group or 'glance_store')

    def _rax(self):
        return getattr(self.conf, access.GROUP)

    def _timeout(self):
        try:
            return self._rax().timeout
        except Exception:
            return 0

    def configure_add(self):
        """Check the settings (without contacting Swift: glance-api must start while Swift
        is down); raise BadStoreConfiguration, which disables add, when incomplete."""
        access.register_opts(self.conf)
        rax = self._rax()
        missing = [name for name in ('auth_url', 'user', 'key') if not getattr(rax, name)]
        if missing:
            raise exceptions.BadStoreConfiguration(
                store_name=SCHEME, reason='set %s in [%s]' % (', '.join(missing), access.GROUP))
        project = self.store_conf.swiftdlo_account_project
        if project and not rax.storage_url_template:
            raise exceptions.BadStoreConfiguration(
                store_name=SCHEME, reason='swiftdlo_account_project needs [%s] '
                                          'storage_url_template' % access.GROUP)
        try:
            names.validate_container(self.store_conf.swiftdlo_container)
            if project:
                access.check_project_id(project)
        except errors.SwiftError as exc:
            raise exceptions.BadStoreConfiguration(store_name=SCHEME,
                                                   reason=exc.message) from None
        with self._lock:
            self._service_auth = access.ServiceAuth.from_conf(self.conf)
            self._swift = None

    def _account(self):
        with self._lock:
            if self._swift is None:
                if self._service_auth is None:
                    access.register_opts(self.conf)
                    self._service_auth = access.ServiceAuth.from_conf(self.conf)
                self._swift = access.ProjectSwift.service_account(
                    self.conf, self._service_auth,
                    project_id=self.store_conf.swiftdlo_account_project)
            return self._swift

    def _writer_settings(self):
        rax = self._rax()
        return {
            'segment_size': self.store_conf.swiftdlo_segment_size or rax.segment_size,
            'concurrency': (self.store_conf.swiftdlo_segment_concurrency or
                            rax.segment_concurrency),
            'spool_memory': rax.spool_memory,
            'spool_dir': rax.spool_dir,
            'cleanup_timeout': rax.cleanup_timeout,
        }

    # -- the driver contract ------------------------------------------------------------
    @driver.back_compat_add
    @capabilities.check
    # write_dlo wraps every Swift failure in a SwiftError and re-raises the image data's own
    # errors untouched (a client that went away is not "cannot connect to Swift").
    @_translated('Adding image data to Swift', failures=(errors.SwiftError,))
    def add(self, image_id, image_file, image_size, hashing_algo, context=None,
            verifier=None):
        """Store `image_file` as the DLO `<container>/<image_id>`.

        :returns: (location URI, bytes written, md5 hex, `hashing_algo` hex, metadata)
        :raises: glance_store.exceptions.Duplicate when the image already exists there
        """
        container = self.store_conf.swiftdlo_container
        on_chunk = verifier.update if verifier is not None else None
        result = dlo.write_dlo(
            self._account(), container, image_id, image_file, extra_hashes=(hashing_algo,),
            on_chunk=on_chunk, create_container=self.store_conf.swiftdlo_create_container,
            content_type='application/octet-stream', **self._writer_settings())
        loc = StoreLocation({'container': container, 'obj': image_id}, self.conf,
                            backend_group=self.backend_group)
        metadata = {}
        if self.backend_group:
            metadata['store'] = self.backend_group
        LOG.info('Stored image %s as %s (%d bytes, %d segments)', image_id, loc.get_uri(),
                 result['size'], result['segment_count'])
        return (loc.get_uri(), result['size'], result['md5'],
                result['hashes'][hashing_algo], metadata)

    @capabilities.check
    @_translated('Reading image data from Swift')
    def get(self, location, offset=0, chunk_size=None, context=None):
        """(iterator of bytes, size) of the image, or of `chunk_size` bytes from `offset`;
        the iterator raises instead of finishing when the bytes served differ from what was
        stored."""
        loc = location.store_location
        if offset or chunk_size is not None:
            try:
                reader = dlo.open_dlo_range(self._account(), loc.container, loc.obj,
                                            offset or 0, chunk_size,
                                            chunk_size=self.READ_CHUNKSIZE)
            except ValueError as exc:
                raise exceptions.Invalid(message=str(exc)) from None
        else:
            reader = dlo.open_dlo(self._account(), loc.container, loc.obj,
                                  chunk_size=self.READ_CHUNKSIZE)
        return _translating_iter(reader, 'Reading image data from Swift'), reader.size

    @_translated('Getting the size of image data in Swift')
    def get_size(self, location, context=None):
        loc = location.store_location
        conn = self._account().connection()
        try:
            _, record = dlo.head_manifest(conn, loc.container, loc.obj)
        finally:
            conn.close()
        return record['size']

    @capabilities.check
    @_translated('Deleting image data from Swift')
    def delete(self, location, context=None):
        loc = location.store_location
        count = dlo.delete_dlo(self._account(), loc.container, loc.obj)
        LOG.info('Deleted %s (%d objects)', loc.get_uri(), count)

    # -- for the export flow ------------------------------------------------------------
    def write_project_object(self, context, container, obj, data, cancel_event=None,
                             writer_id=None):
        return write_project_object(context, container, obj, data, self.conf, cancel_event,
                                    writer_id)


def _translating_iter(reader, what):
    try:
        yield from reader
    except _SWIFT_FAILURES as exc:
        mapped = errors.to_store_exception(exc, what, public=True)
        LOG.error('%s', errors.describe(exc, what))
        raise mapped from exc


def write_project_object(context, container, obj, data, conf=None, cancel_event=None,
                         writer_id=None):
    """Write `data` (file-like or iterable of bytes) as a verifiable DLO `container/obj` in
    the account of `context`'s project, as ``[rax_swift]`` configures.

    The container must exist and follow the Cloud Images export rules; `obj` must not exist.
    Raises rax_glance.swift.errors (ContainerNotFound, ObjectExists, InvalidName,
    UploadFailed, UploadCancelled, AccessError) with user-facing messages, or whatever `data`
    raised. Nothing is left behind on failure. Returns the dict of
    :func:`rax_glance.swift.dlo.write_dlo` (location, size, md5, sha256, ...).

    Writers racing for one name claim it first (``claim`` in :mod:`rax_glance.swift.dlo`,
    `writer_id` is put on the object): exactly one writes, the others raise ObjectExists
    having written and deleted nothing.
    """
    conf = conf or cfg.CONF
    access.register_opts(conf)
    names.validate_export_container(container)
    names.validate_object(obj)
    swift = access.ProjectSwift.from_context(context, conf)
    rax = getattr(conf, access.GROUP)
    return dlo.write_dlo(swift, container, obj, data, cancel_event=cancel_event,
                         segment_size=rax.segment_size, concurrency=rax.segment_concurrency,
                         spool_memory=rax.spool_memory, spool_dir=rax.spool_dir,
                         cleanup_timeout=rax.cleanup_timeout,
                         content_type='application/octet-stream', claim=True,
                         writer_id=writer_id)


def delete_project_object(context, container, obj, conf=None, writer_id=None):
    """Remove an exported DLO (manifest and segments) from `context`'s project account;
    with `writer_id`, only while the object still carries that writer's id."""
    conf = conf or cfg.CONF
    access.register_opts(conf)
    return dlo.delete_dlo(access.ProjectSwift.from_context(context, conf), container, obj,
                          writer_id=writer_id)
