"""rax_glance.api.image_upload with a fake Glance app (the real one: functional tests)."""

import webob
import webob.exc

from rax_glance.api import image_upload

IMAGE = '0f6c1b1e-93a2-4b57-8b1e-2d6a0c5d7e11'


class FakeApp:
    def __init__(self, status=204):
        self.status = status
        self.calls = 0

    def __call__(self, environ, start_response):
        self.calls += 1
        return webob.Response(status=self.status)(environ, start_response)


class Filter(image_upload.ImageUploadFilter):
    def __init__(self, app, refusal=None, precheck_error=None, clean_error=None):
        super().__init__(app)
        self.refusal, self.precheck_error, self.clean_error = refusal, precheck_error, clean_error
        self.cleaned = []

    def _refusal(self, req, image_id):
        if self.precheck_error:
            raise self.precheck_error
        return self.refusal

    def _clean(self, context, image_id):
        self.cleaned.append(image_id)
        if self.clean_error:
            raise self.clean_error


def _req(method='PUT', path='/v2/images/%s/file' % IMAGE, context=True):
    req = webob.Request.blank(path, method=method)
    if context:
        req.context = object()  # as Glance's context filter sets it (webob adhoc attribute)
    return req


def test_other_requests_pass_untouched():
    for method, path in (('GET', '/v2/images/%s/file' % IMAGE), ('PUT', '/v2/images/%s' % IMAGE),
                         ('PUT', '/v2/images/%s/stage' % IMAGE),
                         ('PUT', '/v2/images/%s/file/x' % IMAGE)):
        app = FakeApp(status=500)
        filt = Filter(app, refusal=webob.exc.HTTPForbidden())
        resp = _req(method, path).get_response(filt)
        assert resp.status_code == 500 and app.calls == 1
        assert filt.cleaned == []


def test_refusal_is_answered_before_glance():
    app = FakeApp()
    resp = _req().get_response(Filter(app, refusal=webob.exc.HTTPForbidden(explanation='no')))
    assert resp.status_code == 403 and app.calls == 0


def test_precheck_failure_leaves_the_decision_to_glance():
    app = FakeApp()
    resp = _req().get_response(Filter(app, precheck_error=RuntimeError('db down')))
    assert resp.status_code == 204 and app.calls == 1


def test_error_answers_are_cleaned_up_and_kept():
    for status in (400, 413, 415, 500, 503):
        app = FakeApp(status=status)
        filt = Filter(app, clean_error=RuntimeError('store down'))
        resp = _req().get_response(filt)
        assert resp.status_code == status and filt.cleaned == [IMAGE]


def test_successful_upload_is_not_cleaned():
    filt = Filter(FakeApp(status=204))
    assert _req().get_response(filt).status_code == 204 and filt.cleaned == []
