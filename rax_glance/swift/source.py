"""Import sources: resolve what a `container/object` name stands for, inside one account only.

An import runs with more authority than its customer (in ``service`` mode the reseller
service user; in ``keystone`` mode the customer's token, which Swift still lets follow links
the customer cannot read itself: a symlink is followed with the *reader's* authority). So
Swift must never be the one to follow a name. The bundle resolves the name itself, before it
reads a byte, with requests that never follow anything:

``HEAD <c>/<o>?symlink=get&multipart-manifest=get``
    the object itself: a symlink's target (``X-Symlink-Target`` and
    ``X-Symlink-Target-Account``), a Dynamic Large Object's ``X-Object-Manifest``, a Static
    Large Object's ``X-Static-Large-Object``, or a plain object's length and ETag.

and refuses (:class:`SourceRefused`) unless every object it leads to lies in the account of
the requesting project:

- symlinks (same account: followed; another account: refused; a loop or a chain longer
  than ``MAX_DEPTH``: refused);
- DLO manifests: the segment container must exist in the account (a DLO always names a
  container of its own account); its listing is read once, bounded by ``MAX_PIECES``, and
  every listed segment is resolved in turn (a segment may itself be a symlink);
- SLO manifests (read with ``multipart-manifest=get``, bounded by ``MAX_MANIFEST_BYTES``): every
  segment path is resolved the same way (nested SLOs included, ``MAX_DEPTH`` deep), ranges and
  inline ``data`` segments are honoured, and a segment must have the size its manifest says;
- versioned objects: the legacy ``X-Versions-Location`` / ``X-History-Location`` keep old
  versions in another container of the same account and serve the current one at the name,
  so the name is read as any object; with object versioning (``X-Versions-Enabled``) the
  name answers as a link to ``<c>/<o>?version-id=<id>`` (``X-Object-Version-Id``): that
  version is read by its id (same account, Swift's reserved versions container) and
  resolved like any object, so a version that is itself a symlink is checked too.

The result is a list of :class:`Piece` (container, object, ETag, byte range), all in the
account. :func:`open_source` then reads exactly those pieces, each with
``symlink=get&multipart-manifest=get`` (Swift follows nothing) and ``If-Match`` on the ETag
seen while resolving: an object swapped after the check (for a symlink, a manifest or other
bytes) answers 412 and the import is refused. No byte of another account, nor of a Glance
store's account (:func:`rax_glance.swift.access.check_task_account` refuses those accounts
as a task's account at all), is ever read.
"""

import base64
import json
import urllib.parse

import swiftclient
from oslo_log import log as logging

from rax_glance.swift import errors
from rax_glance.swift import names

LOG = logging.getLogger(__name__)

# Swift's own limits for SLOs are 10 levels and 1000 segments per manifest; a DLO lists
# any number of objects. Beyond these an import is refused (not truncated).
MAX_DEPTH = 10
MAX_PIECES = 10000
MAX_MANIFEST_BYTES = 8 * 1024 * 1024
MAX_INLINE_BYTES = 64 * 1024
READ_SIZE = 1024 * 1024
NOFOLLOW = 'symlink=get&multipart-manifest=get'


class SourceRefused(errors.SwiftError):
    """The source is missing, or leads outside the requesting project's account, or is not
    something the bundle can resolve. The user sees only the import's not-found message;
    ``message`` (the reason) is for the log."""

    http_status = 404


class Piece:
    """`length` bytes from `offset` of one plain object (or inline `data` of an SLO)."""

    __slots__ = ('container', 'obj', 'etag', 'offset', 'length', 'size', 'data', 'query')

    def __init__(self, container=None, obj=None, etag=None, offset=0, length=0, size=0,
                 data=None, query=NOFOLLOW):
        self.container = container
        self.obj = obj
        self.etag = etag
        self.offset = offset
        self.length = length
        self.size = size
        self.data = data
        self.query = query

    def sliced(self, start, length):
        """The part [start, start + length) of this piece (relative to the piece)."""
        if self.data is not None:
            return Piece(data=self.data[start:start + length], length=length)
        return Piece(self.container, self.obj, self.etag, self.offset + start, length,
                     self.size, query=self.query)

    def __repr__(self):
        if self.data is not None:
            return '<Piece inline %d bytes>' % self.length
        return '<Piece %s/%s [%d+%d] etag %s>' % (self.container, self.obj, self.offset,
                                                   self.length, self.etag)


class Source:
    """A resolved import source: its pieces in order and their total size."""

    def __init__(self, container, obj, pieces):
        self.container = container
        self.obj = obj
        self.pieces = list(pieces)
        self.size = sum(p.length for p in self.pieces)

    def __repr__(self):
        return '<Source %s/%s %d bytes in %d pieces>' % (self.container, self.obj, self.size,
                                                         len(self.pieces))


def _refuse(reason, *args):
    raise SourceRefused(reason % args if args else reason)


def _account_of(storage_url):
    return urllib.parse.unquote(
        urllib.parse.urlparse(storage_url).path.rstrip('/').rsplit('/', 1)[-1])


def _split_target(value, what, empty_object=False):
    """`container/object` (URL-quoted, as Swift keeps link targets) -> validated parts."""
    try:
        target = urllib.parse.unquote(value, errors='strict')
        container, obj = target.split('/', 1)
        names.validate_container(container)
        if obj or not empty_object:
            names.validate_object(obj, False)
        return container, obj
    except (ValueError, UnicodeDecodeError, errors.InvalidName):
        _refuse('%s %r is not a container/object path', what, value)


def _is_true(value):
    return str(value or '').strip().lower() in ('true', '1', 'yes', 'on')


class Resolver:
    """Resolves names in the account of `conn` (a swiftclient Connection pinned to it)."""

    def __init__(self, conn, account, max_depth=None, max_pieces=None):
        self.conn = conn
        self.account = account
        self.max_depth = MAX_DEPTH if max_depth is None else max_depth
        self.max_pieces = MAX_PIECES if max_pieces is None else max_pieces
        self.count = 0

    # -- Swift calls that never follow anything -------------------------------------------
    def _head(self, container, obj, query=NOFOLLOW):
        try:
            return self.conn.head_object(container, obj, query_string=query)
        except swiftclient.ClientException as exc:
            if exc.http_status in (400, 401, 403, 404, 409, 412, 416):
                _refuse('HEAD %s/%s answered %s', container, obj, exc.http_status)
            raise

    def _read_manifest(self, container, obj, etag):
        headers = {'If-Match': '"%s"' % etag} if etag else {}
        try:
            resp_headers, body = self.conn.get_object(
                container, obj, query_string=NOFOLLOW, headers=headers,
                resp_chunk_size=READ_SIZE)
        except swiftclient.ClientException as exc:
            if exc.http_status in (400, 401, 403, 404, 409, 412, 416):
                _refuse('GET manifest %s/%s answered %s', container, obj, exc.http_status)
            raise
        data = bytearray()
        try:
            for chunk in body:
                data += chunk
                if len(data) > MAX_MANIFEST_BYTES:
                    _refuse('SLO manifest %s/%s is larger than %d bytes', container, obj,
                            MAX_MANIFEST_BYTES)
        finally:
            if hasattr(body, 'close'):
                body.close()
        if not _is_true(resp_headers.get('x-static-large-object')):
            _refuse('%s/%s stopped being an SLO manifest while being read', container, obj)
        try:
            manifest = json.loads(bytes(data))
        except ValueError:
            _refuse('SLO manifest %s/%s is not JSON', container, obj)
        if not isinstance(manifest, list):
            _refuse('SLO manifest %s/%s is not a list', container, obj)
        return manifest

    def _listing(self, container, prefix):
        try:
            self.conn.head_container(container)
        except swiftclient.ClientException as exc:
            if exc.http_status in (400, 401, 403, 404):
                _refuse('DLO segment container %s answered %s', container, exc.http_status)
            raise
        items = []
        marker = ''
        while True:
            try:
                _, page = self.conn.get_container(container, prefix=prefix, marker=marker,
                                                  limit=1000)
            except swiftclient.ClientException as exc:
                if exc.http_status in (400, 401, 403, 404):
                    _refuse('Listing %s answered %s', container, exc.http_status)
                raise
            if not page:
                return items
            items.extend(page)
            if len(items) > self.max_pieces:
                _refuse('DLO %s/%s lists more than %d segments', container, prefix,
                        self.max_pieces)
            marker = page[-1]['name']

    # -- resolution -----------------------------------------------------------------------
    def _add(self, pieces):
        self.count += len(pieces)
        if self.count > self.max_pieces:
            _refuse('more than %d pieces', self.max_pieces)
        return pieces

    def resolve(self, container, obj):
        return Source(container, obj, self._resolve(container, obj, 0, ()))

    def _resolve(self, container, obj, depth, seen, query=NOFOLLOW):
        if depth > self.max_depth:
            _refuse('%s/%s: more than %d levels of links and manifests', container, obj,
                    self.max_depth)
        key = (container, obj, query)
        if key in seen:
            _refuse('%s/%s: link or manifest loop', container, obj)
        seen = seen + (key,)
        headers = self._head(container, obj, query)

        version_id = headers.get('x-object-version-id')
        # `null`: an object written before versioning was enabled; it lives at the name.
        if version_id and version_id != 'null' and 'version-id=' not in query:
            # Object versioning: the name is a link to its current version (the target
            # reads `<c>/<o>?version-id=<id>`); read that version by its id, then resolve
            # what it is (data, or a link of its own) like any object.
            return self._versioned(container, obj, headers, depth, seen)

        target = headers.get('x-symlink-target')
        if target is not None:
            account = headers.get('x-symlink-target-account')
            if account is not None and urllib.parse.unquote(account) != self.account:
                _refuse('%s/%s is a symlink into account %s (the task\'s is %s)', container,
                        obj, account, self.account)
            if '?' in target or urllib.parse.unquote(target).startswith('\x00'):
                _refuse('%s/%s links to %r, which only object versioning may', container,
                        obj, target)
            t_container, t_obj = _split_target(target, 'Symlink target')
            return self._resolve(t_container, t_obj, depth + 1, seen)

        if _is_true(headers.get('x-static-large-object')):
            return self._slo(container, obj, headers.get('etag', '').strip('"'), depth, seen)

        manifest = headers.get('x-object-manifest')
        if manifest is not None:
            return self._dlo(container, obj, manifest, depth, seen)

        try:
            size = int(headers.get('content-length'))
        except (TypeError, ValueError):
            _refuse('%s/%s has no length', container, obj)
        etag = headers.get('etag', '').strip('"')
        if not etag:
            _refuse('%s/%s has no ETag', container, obj)
        return self._add([Piece(container, obj, etag, 0, size, size, query=query)])

    def _versioned(self, container, obj, headers, depth, seen):
        version_id = headers['x-object-version-id']
        query = 'version-id=%s&%s' % (urllib.parse.quote(version_id, safe=''), NOFOLLOW)
        return self._resolve(container, obj, depth + 1, seen, query=query)

    def _dlo(self, container, obj, value, depth, seen):
        seg_container, prefix = _split_target(value, 'X-Object-Manifest', empty_object=True)
        pieces = []
        for item in self._listing(seg_container, prefix):
            name = item.get('name')
            if not isinstance(name, str) or 'subdir' in item:
                continue
            pieces.extend(self._resolve(seg_container, name, depth + 1, seen))
        return pieces

    def _slo(self, container, obj, etag, depth, seen):
        manifest = self._read_manifest(container, obj, etag)
        pieces = []
        for seg in manifest:
            if not isinstance(seg, dict):
                _refuse('SLO %s/%s has a malformed segment', container, obj)
            if 'data' in seg:
                try:
                    data = base64.b64decode(seg['data'], validate=True)
                except (ValueError, TypeError):
                    _refuse('SLO %s/%s has a malformed data segment', container, obj)
                if len(data) > MAX_INLINE_BYTES:
                    _refuse('SLO %s/%s has an oversized data segment', container, obj)
                pieces.extend(self._add([Piece(data=data, length=len(data))]))
                continue
            path = seg.get('name')
            if not isinstance(path, str) or not path.startswith('/'):
                _refuse('SLO %s/%s has a segment without a path', container, obj)
            s_container, s_obj = _split_target(urllib.parse.quote(path[1:]), 'SLO segment')
            sub = self._resolve(s_container, s_obj, depth + 1, seen)
            sub_size = sum(p.length for p in sub)
            listed = seg.get('bytes')
            if not isinstance(listed, int) or isinstance(listed, bool) or listed != sub_size:
                _refuse('SLO %s/%s: segment %s has %d bytes, its manifest says %r', container,
                        obj, path, sub_size, listed)
            if seg.get('range') is not None:
                start, length = _parse_range(seg['range'], sub_size)
                if length is None:
                    _refuse('SLO %s/%s: bad range %r for %s', container, obj, seg['range'],
                            path)
                sub = _slice(sub, start, length)
            pieces.extend(sub)
        return pieces


def _parse_range(value, size):
    """An SLO segment range `A-B`, `A-` or `-N` within `size` -> (start, length)."""
    if not isinstance(value, str) or value.count('-') != 1:
        return 0, None
    first, last = value.split('-')
    try:
        if first == '':
            n = int(last)
            start, end = max(size - n, 0), size - 1
        else:
            start = int(first)
            end = int(last) if last != '' else size - 1
    except ValueError:
        return 0, None
    end = min(end, size - 1)
    if start < 0 or start > end:
        return 0, None
    return start, end - start + 1


def _slice(pieces, start, length):
    out = []
    pos = 0
    for piece in pieces:
        lo, hi = max(start, pos), min(start + length, pos + piece.length)
        if lo < hi:
            out.append(piece.sliced(lo - pos, hi - lo))
        pos += piece.length
    return out


def resolve(swift, container, obj, conn=None):
    """Resolve `container/obj` in the account of `swift` (a ProjectSwift); returns a
    :class:`Source` or raises :class:`SourceRefused` (or a transient Swift error)."""
    names.validate_container(container)
    names.validate_object(obj, False)
    own = conn or swift.connection()
    try:
        source = Resolver(own, _account_of(swift.storage_url)).resolve(container, obj)
    finally:
        if conn is None:
            own.close()
    LOG.info('Import source %s/%s in %s: %d bytes in %d pieces', container, obj,
             _account_of(swift.storage_url), source.size, len(source.pieces))
    return source


def iter_source(conn, source, chunk_size=READ_SIZE):
    """Bytes of the resolved `source`, read piece by piece from exactly the objects that were
    checked: Swift follows no link or manifest, and an object changed since (ETag) is
    refused (SourceRefused) instead of read."""
    for piece in source.pieces:
        if piece.data is not None:
            if piece.length:
                yield piece.data
            continue
        if piece.length == 0:
            continue
        headers = {'If-Match': '"%s"' % piece.etag}
        if piece.offset or piece.length != piece.size:
            headers['Range'] = 'bytes=%d-%d' % (piece.offset, piece.offset + piece.length - 1)
        try:
            resp_headers, body = conn.get_object(piece.container, piece.obj,
                                                 query_string=piece.query, headers=headers,
                                                 resp_chunk_size=chunk_size)
        except swiftclient.ClientException as exc:
            if exc.http_status in (400, 401, 403, 404, 409, 412, 416):
                _refuse('GET %s/%s answered %s (changed or removed since it was checked)',
                        piece.container, piece.obj, exc.http_status)
            raise
        try:
            if (resp_headers.get('x-symlink-target') is not None
                    or 'x-object-manifest' in resp_headers
                    or _is_true(resp_headers.get('x-static-large-object'))):
                _refuse('%s/%s became a link or manifest while being read', piece.container,
                        piece.obj)
            served = int(resp_headers.get('content-length', -1))
            if served != piece.length:
                _refuse('%s/%s served %d bytes, expected %d', piece.container, piece.obj,
                        served, piece.length)
            seen = 0
            for chunk in body:
                seen += len(chunk)
                if seen > piece.length:
                    _refuse('%s/%s served more than %d bytes', piece.container, piece.obj,
                            piece.length)
                yield chunk
            if seen != piece.length:
                _refuse('%s/%s served %d bytes, expected %d', piece.container, piece.obj,
                        seen, piece.length)
        finally:
            if hasattr(body, 'close'):
                body.close()
