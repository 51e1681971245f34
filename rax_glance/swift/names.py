"""Container and object names: Swift's limits, and the Cloud Images export container rules."""

from rax_glance.swift.errors import InvalidName

# Swift's default constraints (swift/common/constraints.py).
MAX_CONTAINER_NAME_LENGTH = 256
MAX_OBJECT_NAME_LENGTH = 1024
# A DLO segment is named `<object>-NNNNN`; its name must fit Swift's limit too.
SEGMENT_SUFFIX_LENGTH = len('-00001')
# Cloud Images: an export container name must not contain these.
EXPORT_CONTAINER_FORBIDDEN = ('/', '?', '.')


def _utf8_length(kind, name):
    if not isinstance(name, str):
        raise InvalidName('%s name must be a string, not %s' % (kind, type(name).__name__))
    if not name:
        raise InvalidName('%s name must not be empty' % kind)
    if '\x00' in name:
        raise InvalidName('%s name must not contain NUL characters' % kind)
    try:
        return len(name.encode('utf-8'))
    except UnicodeEncodeError:
        raise InvalidName('%s name is not valid UTF-8: %r' % (kind, name)) from None


def validate_container(name):
    """Swift's rules for a container name; returns the name."""
    length = _utf8_length('Container', name)
    if length > MAX_CONTAINER_NAME_LENGTH:
        raise InvalidName('Container name is %d bytes long; Swift allows at most %d'
                          % (length, MAX_CONTAINER_NAME_LENGTH))
    if '/' in name:
        raise InvalidName('Container name must not contain "/": %s' % name)
    if name in ('.', '..'):
        raise InvalidName('Container name must not be "." or "..": %s' % name)
    return name


def validate_export_container(name):
    """The rules Cloud Images sets for `receiving_swift_container` of an export task."""
    validate_container(name)
    bad = [c for c in EXPORT_CONTAINER_FORBIDDEN if c in name]
    if bad:
        raise InvalidName('Container name must not contain %s: %s'
                          % (' or '.join('"%s"' % c for c in bad), name))
    return name


def validate_object(name, segmented=True):
    """Swift's rules for an object name; with `segmented`, room for the `-NNNNN` suffix."""
    length = _utf8_length('Object', name)
    limit = MAX_OBJECT_NAME_LENGTH - (SEGMENT_SUFFIX_LENGTH if segmented else 0)
    if length > limit:
        raise InvalidName('Object name is %d bytes long; at most %d are allowed%s'
                          % (length, limit, ' (segments add a 6-character suffix)'
                             if segmented else ''))
    parts = name.split('/')
    if any(part in ('.', '..') for part in parts):
        raise InvalidName('Object name must not contain "." or ".." path parts: %s' % name)
    return name


def split_path(path):
    """`CONTAINER/OBJECT` -> (container, object), both validated."""
    if not isinstance(path, str) or '/' not in path:
        raise InvalidName('Expected CONTAINER/OBJECT, got %r' % (path,))
    container, obj = path.split('/', 1)
    return validate_container(container), validate_object(obj)
