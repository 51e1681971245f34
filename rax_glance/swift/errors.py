"""Typed errors of the Swift adapters, and their translation for glance_store callers.

Every error has a ``message`` fit to show a user (no traceback, no credentials) and, when it
came from Swift, the ``http_status`` Swift answered.
"""

import http.client
import socket

import requests
import swiftclient
import urllib3
from glance_store import exceptions as store_exc


class SwiftError(Exception):
    """Base of every error raised by :mod:`rax_glance.swift`."""

    http_status = None

    def __init__(self, message, http_status=None):
        super().__init__(message)
        self.message = message
        if http_status is not None:
            self.http_status = http_status


class InvalidName(SwiftError, ValueError):
    """A container or object name breaks Swift's limits or the export rules."""


class ContainerNotFound(SwiftError):
    http_status = 404

    def __init__(self, container):
        # The exact Cloud Images wording for a missing export container.
        super().__init__('Container not found. Container: %s' % container)
        self.container = container


class ObjectExists(SwiftError):
    http_status = 409

    def __init__(self, container, obj):
        super().__init__("Object already exists in user's container. Container/Object: %s/%s"
                         % (container, obj))
        self.container = container
        self.obj = obj


class SegmentPrefixInUse(SwiftError):
    """Objects already exist under the segment prefix: a new DLO would serve them too."""

    http_status = 409

    def __init__(self, container, prefix, names):
        shown = ', '.join(names[:3]) + (', ...' if len(names) > 3 else '')
        super().__init__('Objects already exist under the segment prefix %s/%s (%s); '
                         'remove them first.' % (container, prefix, shown))
        self.names = names


class ObjectNotFound(SwiftError):
    http_status = 404

    def __init__(self, container, obj):
        super().__init__('Object not found: %s/%s' % (container, obj))


class NotADLO(SwiftError):
    """The object is not a manifest written by this bundle (no recorded size and hashes)."""


class IntegrityError(SwiftError):
    """A DLO's segments or served bytes do not match what was recorded when it was written."""

    def __init__(self, container, obj, problems):
        self.problems = list(problems)
        super().__init__('%s/%s is damaged: %s' % (container, obj, '; '.join(self.problems)))


class UploadCancelled(SwiftError):
    def __init__(self, container, obj):
        super().__init__('Upload of %s/%s was cancelled' % (container, obj))


class UploadFailed(SwiftError):
    """Writing a DLO failed; ``leftovers`` names segments that could not be deleted."""

    def __init__(self, message, http_status=None, leftovers=(), cause=None):
        self.leftovers = list(leftovers)
        self.cause = cause
        if self.leftovers:
            message += ('; %d segment(s) could not be deleted: %s'
                        % (len(self.leftovers), ', '.join(self.leftovers)))
        super().__init__(message, http_status)


class AccessError(SwiftError):
    """No way to reach the project's account (configuration, catalog or credentials)."""


class ProtectedAccount(AccessError):
    """A task asked for the account of a Glance store (or another protected account)."""

    http_status = 403

    def __init__(self, account):
        super().__init__('Swift account %s is protected: no task may read or write it'
                         % account)
        self.account = account


class SourceError(SwiftError):
    """Reading the data to upload failed."""


TIMEOUT_ERRORS = (requests.exceptions.Timeout, socket.timeout, TimeoutError)
# Everything a broken or reset connection can raise through swiftclient/requests/urllib3.
CONNECTION_ERRORS = (requests.exceptions.RequestException, urllib3.exceptions.HTTPError,
                     http.client.HTTPException, ConnectionError)


def describe(exc, what):
    """A one-line, user-safe description of a Swift failure while doing `what`."""
    if isinstance(exc, SwiftError):
        return exc.message
    if isinstance(exc, swiftclient.ClientException):
        status = exc.http_status
        reason = {
            401: 'Swift rejected the credentials (401)',
            403: 'Swift denied access (403)',
            404: 'not found in Swift (404)',
            409: 'Swift reported a conflict (409)',
            413: 'Swift refused the size (413: object or quota too large)',
            422: 'Swift found the data corrupted in transit (422: checksum mismatch)',
            507: 'Swift has no space left (507)',
        }.get(status)
        if reason is None and status is not None and status >= 500:
            reason = 'Swift is unavailable (%d)' % status
        if reason is None:
            reason = 'Swift answered %s %s' % (status, exc.http_reason or '')
        return '%s: %s' % (what, reason.strip())
    if isinstance(exc, TIMEOUT_ERRORS):
        return '%s: Swift did not answer in time' % what
    if isinstance(exc, CONNECTION_ERRORS):
        return '%s: cannot connect to Swift' % what
    return '%s: %s' % (what, exc.__class__.__name__)


def public_message(exc, what):
    """Like :func:`describe`, but naming no container, object, account or segment: what a
    Glance API user may see of a store failure (the detail goes to the log)."""
    cause = getattr(exc, 'cause', None)
    if isinstance(exc, UploadFailed) and cause is not None and \
            not isinstance(cause, SwiftError):
        return describe(cause, what)
    if isinstance(exc, IntegrityError):
        reason = 'the stored image data is damaged'
    elif isinstance(exc, NotADLO):
        reason = 'the stored image data is not in the expected format'
    elif isinstance(exc, (ObjectNotFound, ContainerNotFound)):
        reason = 'the stored image data is missing'
    elif isinstance(exc, (ObjectExists, SegmentPrefixInUse)):
        reason = 'the image data already exists in the store'
    elif isinstance(exc, InvalidName):
        reason = 'the image location is invalid'
    elif isinstance(exc, UploadCancelled):
        reason = 'cancelled'
    elif isinstance(exc, AccessError):
        reason = 'Swift is unreachable or refuses the store\'s credentials'
    elif isinstance(exc, SwiftError):
        reason = 'Swift failed'
    else:
        return describe(exc, what)  # names only `what` and the failure kind
    return '%s: %s' % (what, reason)


def status_of(exc):
    return getattr(exc, 'http_status', None)


def to_store_exception(exc, what, timeout=None, public=False):
    """Translate `exc` (raised while doing `what`) into the glance_store exception Glance's
    API layer knows how to answer, keeping a readable message (with `public`, one that names
    no internal location: :func:`public_message`)."""
    if isinstance(exc, store_exc.GlanceStoreException):
        return exc
    message = public_message(exc, what) if public else describe(exc, what)
    # Classify a failed upload by what made it fail, keep its message (it names leftovers).
    cause = getattr(exc, 'cause', None)
    if cause is not None:
        exc = cause
    status = status_of(exc)
    if isinstance(exc, (ObjectExists, SegmentPrefixInUse)):
        return store_exc.Duplicate(message=message)
    if isinstance(exc, IntegrityError):
        return store_exc.RemoteServiceUnavailable(message=message)
    if isinstance(exc, InvalidName):
        return store_exc.BadStoreUri(message=message)
    if isinstance(exc, (ObjectNotFound, ContainerNotFound)) or status == 404:
        return store_exc.NotFound(message=message)
    if isinstance(exc, UploadCancelled):
        return store_exc.BackendException(message)
    if status == 401:
        return store_exc.NotAuthenticated(message=message)
    if status == 403:
        return store_exc.Forbidden(message=message)
    if status == 409:
        return store_exc.Duplicate(message=message)
    if status in (413, 507):
        return store_exc.StorageFull(message=message)
    if isinstance(exc, TIMEOUT_ERRORS) or status in (408, 499):
        return store_exc.TimeoutError(message=message, timeout=timeout or 0)
    if isinstance(exc, CONNECTION_ERRORS) or (status is not None and status >= 500):
        return store_exc.RemoteServiceUnavailable(message=message)
    if isinstance(exc, AccessError):
        return store_exc.BadStoreConfiguration(store_name='swiftdlo', reason=message)
    return store_exc.BackendException(message)
