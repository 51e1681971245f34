"""Dynamic Large Objects that can be verified: write, read with verification, check, delete.

Layout (what Swift's DLO middleware and Cloud Files clients expect): segments
``<object>-00001``, ``<object>-00002``, ... in the same container, then a zero-byte manifest
``<object>`` with ``X-Object-Manifest: <container>/<object>-``. A DLO alone silently serves a
short file when a segment is lost and appends any stray object under the prefix, so the
manifest also records, as object metadata a client can read::

    X-Object-Meta-Rax-Dlo-Size           total bytes
    X-Object-Meta-Rax-Dlo-Segment-Size   bytes per segment (the last may be shorter)
    X-Object-Meta-Rax-Dlo-Segment-Count  number of segments
    X-Object-Meta-Rax-Dlo-Md5            md5 of the whole content
    X-Object-Meta-Rax-Dlo-Sha256         sha256 of the whole content
    X-Object-Meta-Rax-Dlo-Segments-Etag  md5 of the segments' md5 hex digests in order
                                         (what Swift serves as the DLO's ETag)

Writing reads the source once. Each segment is spooled (memory, then disk past
``spool_memory``) so python-swiftclient can rewind it to retry, and is PUT with its md5 as
``ETag`` so Swift rejects corrupted bytes (422). ``concurrency`` segments are in flight at once.
The manifest is written last; on any failure or cancellation every segment written is
deleted and no manifest is left.

With ``claim`` (what exports use: several writers may race for one name), the writer first
claims the name: it PUTs a zero-byte placeholder ``<object>`` with ``If-None-Match: *`` and
``X-Object-Meta-Rax-Dlo-Writer: <its id>`` (``...-Rax-Dlo-State: writing``), waits a moment
and reads it back. Only the writer whose id is on the object goes on; every other one fails
with ObjectExists having written nothing. The claimant checks that the segment prefix is
empty, writes the segments (checking before each one that the placeholder is still its
own), re-checks it once more and replaces it with the manifest (which keeps the writer id).
Its cleanup deletes the segments it wrote and the placeholder or manifest only while it
still carries its id, so a losing writer can never delete the winner's object.

Reading checks the listing against the record first (missing, stray, resized or replaced
segments), then streams the segments (each must match its listed length and ETag) while
hashing them, and holds the last chunk back until length and sha256 match: a damaged object
raises :class:`IntegrityError` instead of handing out a short or altered image.
"""

import concurrent.futures
import hashlib
import queue
import tempfile
import threading
import time
import urllib.parse
import uuid

import swiftclient
from oslo_log import log as logging

from rax_glance.swift import errors
from rax_glance.swift import names

LOG = logging.getLogger(__name__)

MiB = 1024 * 1024
META = 'x-object-meta-rax-dlo-'
MAX_SEGMENTS = 99999
READ_SIZE = MiB
RECORD_KEYS = ('size', 'segment-size', 'segment-count', 'md5', 'sha256', 'segments-etag')
WRITER_HEADER = 'X-Object-Meta-Rax-Dlo-Writer'
STATE_HEADER = 'X-Object-Meta-Rax-Dlo-State'


def segment_name(obj, index):
    return '%s-%05d' % (obj, index)


def segment_prefix(obj):
    return obj + '-'


def _connect(swift):
    """`swift` is a ProjectSwift-like object (with `.connection()`) or a factory."""
    return swift.connection() if hasattr(swift, 'connection') else swift()


def _chunks(source, size=READ_SIZE):
    if hasattr(source, 'read'):
        while True:
            chunk = source.read(size)
            if not chunk:
                return
            yield chunk
    else:
        for chunk in source:
            if chunk:
                yield chunk


def _new_spool(memory, directory):
    if memory > 0:
        return tempfile.SpooledTemporaryFile(max_size=memory, dir=directory)
    return tempfile.TemporaryFile(dir=directory)


class _HashThread:
    """Whole-content digests computed beside the main thread (hashlib drops the GIL), so
    md5 + sha256 of the whole do not slow the per-segment work. Memory: a few chunks."""

    def __init__(self, algorithms):
        self.hashers = {name: hashlib.new(name) for name in algorithms}
        self._queue = queue.Queue(maxsize=8)
        self._thread = threading.Thread(target=self._run, name='dlo-hash', daemon=True)
        self._thread.start()

    def _run(self):
        hashers = list(self.hashers.values())
        while True:
            chunk = self._queue.get()
            if chunk is None:
                return
            for hasher in hashers:
                hasher.update(chunk)

    def update(self, chunk):
        self._queue.put(chunk)

    def finish(self):
        self._queue.put(None)
        self._thread.join()
        return {name: h.hexdigest() for name, h in self.hashers.items()}


class DLOWriter:
    """Writes one DLO. Build it, hand `cancel` to whoever may abort, then call `write`."""

    def __init__(self, swift, container, obj, segment_size=256 * MiB, concurrency=4,
                 spool_memory=4 * MiB, spool_dir=None, cleanup_timeout=60.0,
                 extra_hashes=(), on_chunk=None, headers=None, content_type=None,
                 create_container=False, cancel_event=None, claim=False, writer_id=None,
                 claim_settle=1.0):
        if segment_size < 1:
            raise ValueError('segment_size must be positive')
        if concurrency < 1:
            raise ValueError('concurrency must be at least 1')
        self.swift = swift
        self.container = names.validate_container(container)
        self.obj = names.validate_object(obj)
        self.segment_size = segment_size
        self.concurrency = concurrency
        self.spool_memory = spool_memory
        self.spool_dir = spool_dir
        self.cleanup_timeout = cleanup_timeout
        self.extra_hashes = tuple(a for a in extra_hashes if a not in ('md5', 'sha256'))
        self.on_chunk = on_chunk
        self.headers = dict(headers or {})
        self.content_type = content_type
        self.create_container = create_container
        self._cancel = cancel_event or threading.Event()
        self._failed = threading.Event()
        self._local = threading.local()
        self._attempted = []  # segment names whose PUT started: cleanup deletes them
        self._attempted_lock = threading.Lock()
        self._manifest_written = False
        self._conns = []
        self.claim = claim
        self.writer_id = writer_id or uuid.uuid4().hex
        self.claim_settle = claim_settle
        self._claimed = False

    # -- control ------------------------------------------------------------------------
    def cancel(self):
        """Stop the upload; `write` then deletes what it wrote and raises UploadCancelled."""
        self._cancel.set()

    @property
    def cancelled(self):
        return self._cancel.is_set()

    def _stop_requested(self):
        return self._cancel.is_set() or self._failed.is_set()

    # -- Swift calls --------------------------------------------------------------------
    def _thread_conn(self):
        conn = getattr(self._local, 'conn', None)
        if conn is None:
            conn = self._local.conn = _connect(self.swift)
            with self._attempted_lock:
                self._conns.append(conn)
        return conn

    def _preflight(self, conn):
        try:
            conn.head_container(self.container)
        except swiftclient.ClientException as exc:
            if exc.http_status != 404:
                raise
            if not self.create_container:
                raise errors.ContainerNotFound(self.container) from None
            conn.put_container(self.container)
        try:
            # The name itself: a symlink there counts as an object (never follow it).
            conn.head_object(self.container, self.obj, query_string='symlink=get')
        except swiftclient.ClientException as exc:
            if exc.http_status != 404:
                raise
        else:
            raise errors.ObjectExists(self.container, self.obj)
        if self.claim:
            self._claim(conn)
        _, listing = conn.get_container(self.container, prefix=segment_prefix(self.obj),
                                        limit=4)
        if listing:
            if self._claimed:
                self._release_claim(conn)
            raise errors.SegmentPrefixInUse(self.container, segment_prefix(self.obj),
                                            [item['name'] for item in listing])

    def _claim(self, conn):
        """Own the name before writing anything under it, or raise ObjectExists."""
        try:
            conn.put_object(self.container, self.obj, b'', content_length=0,
                            content_type=self.content_type,
                            headers={'If-None-Match': '*', WRITER_HEADER: self.writer_id,
                                     STATE_HEADER: 'writing'})
        except swiftclient.ClientException as exc:
            # 412: it exists; 409: a concurrent PUT of the same name carried a newer time.
            if exc.http_status in (409, 412):
                raise errors.ObjectExists(self.container, self.obj) from None
            raise
        # Two PUTs that both passed the If-None-Match check before either landed both
        # answer 201; the newer one wins. Read back once both have landed.
        time.sleep(self.claim_settle)
        if not self._still_ours(conn):
            raise errors.ObjectExists(self.container, self.obj)
        self._claimed = True

    def _still_ours(self, conn):
        try:
            headers = conn.head_object(self.container, self.obj,
                                       headers={'X-Newest': 'true'},
                                       query_string='multipart-manifest=get')
        except swiftclient.ClientException as exc:
            if exc.http_status == 404:
                return False
            raise
        return headers.get(WRITER_HEADER.lower()) == self.writer_id

    def _release_claim(self, conn):
        if self._still_ours(conn):
            _delete_with_retry(conn, self.container, self.obj,
                               time.monotonic() + self.cleanup_timeout)
        self._claimed = False

    def _put_segment(self, name, spool, size, md5_hex):
        try:
            if self._stop_requested():
                return None
            if self.claim and not self._still_ours(self._thread_conn()):
                # Another writer owns the name now: write and delete nothing more. (Its
                # own segment PUTs carry newer timestamps than any of ours in flight.)
                self._claimed = False
                raise errors.ObjectExists(self.container, self.obj)
            with self._attempted_lock:
                self._attempted.append(name)
            spool.seek(0)
            etag = self._thread_conn().put_object(
                self.container, name, spool, content_length=size, etag=md5_hex,
                content_type='application/octet-stream')
            if etag and etag.strip('"') != md5_hex:
                raise errors.UploadFailed('Swift stored segment %s/%s with ETag %s, expected %s'
                                          % (self.container, name, etag, md5_hex))
            return name
        except BaseException:
            self._failed.set()
            raise
        finally:
            spool.close()

    # -- the upload ---------------------------------------------------------------------
    def write(self, source):
        """Upload `source` (file-like with read(), or an iterable of bytes) as the DLO.

        Returns a dict: container, object, location, size, segment_size, segment_count,
        md5, sha256, segments_etag, hashes (every computed digest by algorithm), segments.
        """
        try:
            return self._write_checked(source)
        finally:
            for conn in self._conns:
                conn.close()

    def _write_checked(self, source):
        conn = self._thread_conn()
        try:
            self._preflight(conn)
        except Exception as exc:
            raise self._swift_failure(exc, 'Preparing to write') from exc
        try:
            result = self._write(conn, source)
        except BaseException as exc:
            leftovers = self._cleanup()
            if isinstance(exc, errors.UploadFailed):
                if leftovers:
                    raise errors.UploadFailed(exc.message, exc.http_status, leftovers,
                                              cause=exc.cause) from exc
                raise
            if isinstance(exc, errors.UploadCancelled) or self._cancel.is_set():
                if leftovers:
                    LOG.error('Cancelled upload %s/%s left %s', self.container, self.obj,
                              ', '.join(leftovers))
                raise errors.UploadCancelled(self.container, self.obj) from exc
            # The source failed (e.g. a format error while producing the data): keep its
            # exception, it carries what the caller must report.
            if leftovers:
                LOG.error('Segments left behind in %s after a failed upload: %s',
                          self.container, ', '.join(leftovers))
            raise
        return result

    def _write(self, conn, source):
        hash_thread = _HashThread(('md5', 'sha256') + self.extra_hashes)
        pool = concurrent.futures.ThreadPoolExecutor(self.concurrency,
                                                     thread_name_prefix='dlo-put')
        slots = threading.Semaphore(self.concurrency)
        futures = []
        seg_md5s = []
        total = 0
        index = 0
        spool = None
        seg_hash = None
        seg_len = 0

        def done(future, spool):
            if future.cancelled():  # never ran: its spool is still open
                spool.close()
            slots.release()

        def submit():
            """Hand the full spool to a PUT worker; False if stopped while waiting."""
            nonlocal spool
            while not slots.acquire(timeout=0.2):
                if self._stop_requested():
                    return False
            md5_hex = seg_hash.hexdigest()
            seg_md5s.append(md5_hex)
            future = pool.submit(self._put_segment, segment_name(self.obj, index), spool,
                                 seg_len, md5_hex)
            future.add_done_callback(lambda f, s=spool: done(f, s))
            futures.append(future)
            spool = None
            return True

        try:
            for chunk in _chunks(source):
                if self._stop_requested():
                    break
                if self.on_chunk is not None:
                    self.on_chunk(chunk)
                hash_thread.update(chunk)
                total += len(chunk)
                view = memoryview(chunk)
                while view:
                    if spool is None:
                        index += 1
                        if index > MAX_SEGMENTS:
                            raise errors.UploadFailed(
                                'Too much data for %d segments of %d bytes'
                                % (MAX_SEGMENTS, self.segment_size), 413)
                        spool = _new_spool(self.spool_memory, self.spool_dir)
                        seg_hash = hashlib.md5()
                        seg_len = 0
                    take = view[:self.segment_size - seg_len]
                    spool.write(take)
                    seg_hash.update(take)
                    seg_len += len(take)
                    view = view[len(take):]
                    if seg_len == self.segment_size and not submit():
                        break
            if spool is not None and not self._stop_requested():
                submit()
        finally:
            if spool is not None:
                spool.close()
            digests = hash_thread.finish()
            if self._stop_requested():
                for future in futures:
                    future.cancel()
            pool.shutdown(wait=True)
        self._raise_first_failure(futures)
        if self._cancel.is_set():
            raise errors.UploadCancelled(self.container, self.obj)

        segments_etag = hashlib.md5(''.join(seg_md5s).encode('ascii')).hexdigest()
        record = {'size': total, 'segment-size': self.segment_size,
                  'segment-count': len(seg_md5s), 'md5': digests['md5'],
                  'sha256': digests['sha256'], 'segments-etag': segments_etag}
        headers = dict(self.headers)
        if self.claim:
            headers[WRITER_HEADER] = self.writer_id
            headers[STATE_HEADER] = 'complete'
            try:
                ours = self._still_ours(conn)
            except Exception as exc:
                raise self._swift_failure(exc, 'Checking the claim on') from exc
            if not ours:
                self._claimed = False
                raise errors.ObjectExists(self.container, self.obj)
        headers['X-Object-Manifest'] = urllib.parse.quote(
            '%s/%s' % (self.container, segment_prefix(self.obj)))
        for key, value in record.items():
            headers['X-Object-Meta-Rax-Dlo-%s' % key.title()] = str(value)
        self._manifest_written = True
        try:
            conn.put_object(self.container, self.obj, b'', content_length=0, headers=headers,
                            content_type=self.content_type)
            # One node answers at once; a cluster may update its container listings late.
            problems = []
            for delay in (0, 0.5, 1, 2):
                time.sleep(delay)
                if self._cancel.is_set():
                    raise errors.UploadCancelled(self.container, self.obj)
                listing = list_segments(conn, self.container, self.obj)
                problems = check_listing(self.obj, _normalize_record(record), listing)
                if not problems:
                    break
        except Exception as exc:
            raise self._swift_failure(exc, 'Writing the manifest of') from exc
        if problems:
            raise errors.UploadFailed('Swift does not list what was written to %s/%s: %s'
                                      % (self.container, self.obj, '; '.join(problems)))
        names_written = [segment_name(self.obj, i) for i in range(1, len(seg_md5s) + 1)]
        return {'container': self.container, 'object': self.obj,
                'location': '%s/%s' % (self.container, self.obj), 'size': total,
                'segment_size': self.segment_size, 'segment_count': len(seg_md5s),
                'md5': digests['md5'], 'sha256': digests['sha256'],
                'segments_etag': segments_etag, 'hashes': digests,
                'segments': names_written}

    def _raise_first_failure(self, futures):
        for future in futures:
            if future.cancelled():
                continue
            exc = future.exception()
            if exc is not None:
                raise self._swift_failure(exc, 'Writing a segment of') from exc

    def _swift_failure(self, exc, doing):
        if isinstance(exc, errors.SwiftError):
            return exc
        return errors.UploadFailed(
            errors.describe(exc, '%s %s/%s failed' % (doing, self.container, self.obj)),
            errors.status_of(exc), cause=exc)

    def _cleanup(self):
        """Delete the manifest (if written) and every segment attempted; retry for
        `cleanup_timeout` seconds. Returns the names that could not be deleted.

        With `claim`, nothing at all is deleted unless the name is still claimed by this
        writer (a writer that lost it cannot tell its segments from the winner's); the
        segments go first and the placeholder or manifest last, so the name stays claimed
        until the prefix is clean."""
        if self.claim:
            return self._cleanup_claimed()
        doomed = list(self._attempted)
        if self._manifest_written:
            doomed.insert(0, self.obj)
        if not doomed:
            return []
        deadline = time.monotonic() + self.cleanup_timeout
        conn = _connect(self.swift)
        self._conns.append(conn)
        # The prefix was empty before this upload (preflight), so whatever is listed under it
        # is ours.
        leftovers = self._delete_with_prefix(conn, doomed, deadline)
        self._log_cleanup(doomed, leftovers)
        return leftovers

    def _delete_with_prefix(self, conn, doomed, deadline):
        """Delete `doomed`; then, if all went, whatever is listed under the segment prefix (a
        PUT the client gave up on may still have landed). Only for a prefix known to be this
        writer's. Returns the names that could not be deleted."""
        leftovers = [name for name in doomed
                     if not _delete_with_retry(conn, self.container, name, deadline)]
        if not leftovers:
            try:
                listed = list_segments(conn, self.container, self.obj)
            except Exception:
                listed = []
            for item in listed:
                if not _delete_with_retry(conn, self.container, item['name'], deadline):
                    leftovers.append(item['name'])
        return leftovers

    def _cleanup_claimed(self):
        if not self._claimed:
            if self._attempted:
                LOG.warning('Upload %s/%s lost its claim on the name to another writer; '
                            'leaving %d segment(s) alone', self.container, self.obj,
                            len(self._attempted))
            return []
        deadline = time.monotonic() + self.cleanup_timeout
        conn = _connect(self.swift)
        self._conns.append(conn)
        leftovers = []
        try:
            if not self._still_ours(conn):
                self._claimed = False
                return self._cleanup_claimed()
            doomed = list(self._attempted)
            # While the name is ours (checked above, prefix empty when claimed) the prefix is
            # ours too.
            leftovers = self._delete_with_prefix(conn, doomed, deadline)
            if self._still_ours(conn):
                if not _delete_with_retry(conn, self.container, self.obj, deadline):
                    leftovers.append(self.obj)
            doomed.append(self.obj)
        except Exception as exc:
            LOG.error('Cleaning up the failed upload %s/%s failed: %s', self.container,
                      self.obj, errors.describe(exc, 'cleanup'))
            return [self.obj]
        self._claimed = False
        self._log_cleanup(doomed, leftovers)
        return leftovers

    def _log_cleanup(self, doomed, leftovers):
        if leftovers:
            LOG.error('Could not delete %d object(s) of failed upload %s/%s: %s',
                      len(leftovers), self.container, self.obj, ', '.join(leftovers))
        else:
            LOG.info('Removed %d object(s) of failed upload %s/%s', len(doomed),
                     self.container, self.obj)


def _delete_with_retry(conn, container, name, deadline):
    delay = 0.5
    while True:
        try:
            conn.delete_object(container, name)
            return True
        except swiftclient.ClientException as exc:
            if exc.http_status == 404:
                return True
            LOG.warning('Deleting %s/%s failed (%s); retrying', container, name,
                        exc.http_status)
        except Exception as exc:
            LOG.warning('Deleting %s/%s failed (%s); retrying', container, name,
                        exc.__class__.__name__)
        if time.monotonic() + delay > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 5)


def write_dlo(swift, container, obj, source, cancel_event=None, **kwargs):
    """Write `source` as a verifiable DLO at `container/obj`; see :class:`DLOWriter`.

    `swift` is a :class:`rax_glance.swift.access.ProjectSwift` (or any callable returning a
    new swiftclient Connection); `cancel_event` a threading.Event that aborts the upload.
    """
    return DLOWriter(swift, container, obj, cancel_event=cancel_event, **kwargs).write(source)


# -- reading and checking ---------------------------------------------------------------

def _normalize_record(raw):
    record = {}
    for key in RECORD_KEYS:
        value = raw.get(key)
        if key in ('size', 'segment-size', 'segment-count'):
            value = int(value)
        record[key] = value
    return record


def read_record(headers, container, obj):
    """The recorded size/hashes from a manifest's headers (lowercase, as swiftclient gives)."""
    raw = {key: headers.get(META + key) for key in RECORD_KEYS}
    missing = [k for k, v in raw.items() if v is None]
    if missing or 'x-object-manifest' not in headers:
        raise errors.NotADLO('%s/%s is not a verifiable Dynamic Large Object (missing %s)'
                             % (container, obj, ', '.join(
                                 (['X-Object-Manifest'] if 'x-object-manifest' not in headers
                                  else []) + ['X-Object-Meta-Rax-Dlo-%s' % k.title()
                                              for k in missing])))
    try:
        record = _normalize_record(raw)
    except ValueError:
        raise errors.NotADLO('%s/%s has malformed size metadata' % (container, obj)) from None
    expected = '%s/%s' % (container, segment_prefix(obj))
    if urllib.parse.unquote(headers['x-object-manifest']) != expected:
        raise errors.IntegrityError(container, obj, [
            'manifest points to %s instead of %s'
            % (urllib.parse.unquote(headers['x-object-manifest']), expected)])
    return record


def head_manifest(conn, container, obj):
    try:
        headers = conn.head_object(container, obj, query_string='multipart-manifest=get')
    except swiftclient.ClientException as exc:
        if exc.http_status == 404:
            raise errors.ObjectNotFound(container, obj) from None
        raise
    return headers, read_record(headers, container, obj)


def list_segments(conn, container, obj):
    """Every object under the segment prefix, in name order."""
    try:
        _, listing = conn.get_container(container, prefix=segment_prefix(obj),
                                        full_listing=True)
    except swiftclient.ClientException as exc:
        if exc.http_status == 404:
            raise errors.ContainerNotFound(container) from None
        raise
    return listing


def check_listing(obj, record, listing):
    """Problems (human readable) of a segment listing against the record; [] if intact."""
    problems = []
    count, seg_size, size = record['segment-count'], record['segment-size'], record['size']
    expected = [segment_name(obj, i) for i in range(1, count + 1)]
    listed = {item['name']: item for item in listing}
    missing = [name for name in expected if name not in listed]
    stray = sorted(set(listed) - set(expected))
    for name in missing[:10]:
        problems.append('segment %s is missing' % name)
    if len(missing) > 10:
        problems.append('%d more segments are missing' % (len(missing) - 10))
    for name in stray[:10]:
        problems.append('unexpected object %s under the segment prefix' % name)
    if len(stray) > 10:
        problems.append('%d more unexpected objects under the segment prefix'
                        % (len(stray) - 10))
    if problems:
        return problems
    for i, name in enumerate(expected, 1):
        want = seg_size if i < count else size - seg_size * (count - 1)
        if listed[name]['bytes'] != want:
            problems.append('segment %s has %d bytes, expected %d'
                            % (name, listed[name]['bytes'], want))
    if not problems:
        etags = ''.join(listed[name]['hash'] for name in expected)
        if hashlib.md5(etags.encode('ascii')).hexdigest() != record['segments-etag']:
            problems.append('segment contents were replaced (segment ETags do not match)')
    return problems


class VerifiedReader:
    """Iterates a DLO's bytes; raises IntegrityError instead of yielding the last chunk when
    the served length or sha256 differ from the record."""

    def __init__(self, container, obj, record, body, resp_headers, conn):
        self.container = container
        self.obj = obj
        self.record = record
        self.size = record['size']
        self._body = body
        self._conn = conn
        self.served_length = int(resp_headers.get('content-length', -1))

    def __iter__(self):
        sha256 = hashlib.sha256()
        seen = 0
        held = None
        try:
            for chunk in self._body:
                if not chunk:
                    continue
                seen += len(chunk)
                sha256.update(chunk)
                if seen > self.size:
                    break
                if held is not None:
                    yield held
                held = chunk
            problems = []
            if seen != self.size:
                problems.append('served %s bytes, recorded %d'
                                % ('more than %d' % self.size if seen > self.size else seen,
                                   self.size))
            elif sha256.hexdigest() != self.record['sha256']:
                problems.append('sha256 of the served bytes is %s, recorded %s'
                                % (sha256.hexdigest(), self.record['sha256']))
            if problems:
                raise errors.IntegrityError(self.container, self.obj, problems)
            if held is not None:
                yield held
        finally:
            self.close()

    def close(self):
        body, self._body = self._body, ()
        if hasattr(body, 'close'):
            body.close()
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _segment_bodies(conn, container, obj, record, listing, chunk_size):
    """The bytes of each recorded segment in order, read straight from the segments (the
    proxy's DLO middleware costs Swift about as much CPU again as serving the bytes). Each
    segment must be served with the length and ETag the checked listing gave."""
    listed = {item['name']: item for item in listing}
    for i in range(1, record['segment-count'] + 1):
        name = segment_name(obj, i)
        try:
            headers, body = conn.get_object(container, name, resp_chunk_size=chunk_size)
        except swiftclient.ClientException as exc:
            if exc.http_status == 404:
                raise errors.IntegrityError(container, obj, [
                    'segment %s is missing' % name]) from None
            raise
        want_len, want_etag = listed[name]['bytes'], listed[name]['hash']
        served_len = int(headers.get('content-length', -1))
        served_etag = headers.get('etag', '').strip('"')
        if served_len != want_len or served_etag != want_etag:
            body.close()
            raise errors.IntegrityError(container, obj, [
                'segment %s changed while being read (%d bytes, ETag %s; listed %d bytes, '
                'ETag %s)' % (name, served_len, served_etag, want_len, want_etag)])
        try:
            yield from body
        finally:
            body.close()


def open_dlo(swift, container, obj, chunk_size=MiB, conn=None, via_manifest=False):
    """Check the DLO's listing against its record, then start a verified download.

    The bytes are read from the segments directly (or, with `via_manifest`, through the
    manifest as any Swift client would) and checked against the record's size and sha256.
    Returns a :class:`VerifiedReader` (``.size``, iterate for bytes). Raises ObjectNotFound,
    NotADLO or IntegrityError before any byte is served when the damage is visible up front.
    """
    conn = conn or _connect(swift)
    _, record = head_manifest(conn, container, obj)
    listing = list_segments(conn, container, obj)
    problems = check_listing(obj, record, listing)
    if problems:
        raise errors.IntegrityError(container, obj, problems)
    if not via_manifest:
        body = _segment_bodies(conn, container, obj, record, listing, chunk_size)
        return VerifiedReader(container, obj, record, body,
                              {'content-length': str(record['size'])}, conn)
    try:
        resp_headers, body = conn.get_object(container, obj, resp_chunk_size=chunk_size)
    except swiftclient.ClientException as exc:
        if exc.http_status == 404:
            raise errors.ObjectNotFound(container, obj) from None
        raise
    reader = VerifiedReader(container, obj, record, body, resp_headers, conn)
    if reader.served_length != record['size']:
        reader.close()
        raise errors.IntegrityError(container, obj, [
            'Swift serves %d bytes, recorded %d' % (reader.served_length, record['size'])])
    return reader


class RangeReader:
    """Iterates part of a DLO; raises IntegrityError when Swift serves another length (a
    part cannot be checked against the whole's sha256: the listing was checked instead)."""

    def __init__(self, container, obj, length, body, conn):
        self.container = container
        self.obj = obj
        self.size = length
        self._body = body
        self._conn = conn

    def __iter__(self):
        seen = 0
        held = None
        try:
            for chunk in self._body:
                if not chunk:
                    continue
                seen += len(chunk)
                if held is not None:
                    yield held
                held = chunk
            if seen != self.size:
                raise errors.IntegrityError(self.container, self.obj, [
                    'served %d bytes of a %d-byte range' % (seen, self.size)])
            if held is not None:
                yield held
        finally:
            body, self._body = self._body, ()
            if hasattr(body, 'close'):
                body.close()
            self._conn.close()


def open_dlo_range(swift, container, obj, offset=0, length=None, chunk_size=MiB, conn=None):
    """Like :func:`open_dlo` for `length` bytes from `offset` (to the end when None).

    The listing is checked against the record first; the bytes are checked for length only.
    Raises ValueError for a range outside the object.
    """
    conn = conn or _connect(swift)
    _, record = head_manifest(conn, container, obj)
    problems = check_listing(obj, record, list_segments(conn, container, obj))
    if problems:
        raise errors.IntegrityError(container, obj, problems)
    size = record['size']
    if length is None:
        length = size - offset
    if offset < 0 or length < 0 or offset + length > size:
        raise ValueError('range %d+%d is outside the %d-byte object %s/%s'
                         % (offset, length, size, container, obj))
    if length == 0:
        conn.close()
        return RangeReader(container, obj, 0, iter(()), conn)
    try:
        headers, body = conn.get_object(
            container, obj, resp_chunk_size=chunk_size,
            headers={'Range': 'bytes=%d-%d' % (offset, offset + length - 1)})
    except swiftclient.ClientException as exc:
        if exc.http_status == 404:
            raise errors.ObjectNotFound(container, obj) from None
        raise
    if int(headers.get('content-length', -1)) != length:
        body.close()
        conn.close()
        raise errors.IntegrityError(container, obj, [
            'Swift serves %s bytes for a %d-byte range'
            % (headers.get('content-length'), length)])
    return RangeReader(container, obj, length, body, conn)


def verify_dlo(swift, container, obj, read_data=True, chunk_size=MiB):
    """End-to-end check of an exported DLO; never raises for damage, reports it.

    Returns a dict: ok (bool), problems (list of str), record (or None), listing_count,
    bytes_read, sha256 (of what was served, when read).
    """
    conn = _connect(swift)
    report = {'container': container, 'object': obj, 'ok': False, 'problems': [],
              'record': None, 'listing_count': None, 'bytes_read': None, 'sha256': None}
    try:
        _, record = head_manifest(conn, container, obj)
    except (errors.ObjectNotFound, errors.NotADLO, errors.IntegrityError) as exc:
        report['problems'].append(exc.message)
        return report
    report['record'] = record
    listing = list_segments(conn, container, obj)
    report['listing_count'] = len(listing)
    report['problems'].extend(check_listing(obj, record, listing))
    if read_data:
        sha256 = hashlib.sha256()
        md5 = hashlib.md5()
        seen = 0
        try:
            _, body = conn.get_object(container, obj, resp_chunk_size=chunk_size)
            for chunk in body:
                sha256.update(chunk)
                md5.update(chunk)
                seen += len(chunk)
        finally:
            conn.close()
        report['bytes_read'] = seen
        report['sha256'] = sha256.hexdigest()
        if seen != record['size']:
            report['problems'].append('Swift served %d bytes, recorded %d'
                                      % (seen, record['size']))
        elif sha256.hexdigest() != record['sha256']:
            report['problems'].append('sha256 of the served bytes is %s, recorded %s'
                                      % (sha256.hexdigest(), record['sha256']))
        elif md5.hexdigest() != record['md5']:
            report['problems'].append('md5 of the served bytes is %s, recorded %s'
                                      % (md5.hexdigest(), record['md5']))
    report['ok'] = not report['problems']
    return report


def delete_dlo(swift, container, obj, deadline_seconds=60.0, writer_id=None):
    """Delete the manifest, then every object under its segment prefix.

    With `writer_id` (the id a claiming writer put on the object), only an object that still
    carries that id is deleted, its segments first and the manifest last; anything else
    (someone else's object, or none) raises ObjectNotFound and nothing is deleted.
    Returns the number of objects deleted; raises ObjectNotFound when there was nothing.
    """
    if writer_id is not None:
        return _delete_own_dlo(swift, container, obj, deadline_seconds, writer_id)
    conn = _connect(swift)
    deleted = 0
    try:
        conn.delete_object(container, obj)
        deleted += 1
    except swiftclient.ClientException as exc:
        if exc.http_status != 404:
            raise
    deadline = time.monotonic() + deadline_seconds
    for item in list_segments(conn, container, obj):
        if not _delete_with_retry(conn, container, item['name'], deadline):
            raise errors.SwiftError('Could not delete %s/%s' % (container, item['name']))
        deleted += 1
    if not deleted:
        raise errors.ObjectNotFound(container, obj)
    return deleted


def _delete_own_dlo(swift, container, obj, deadline_seconds, writer_id):
    conn = _connect(swift)
    deadline = time.monotonic() + deadline_seconds

    def ours():
        try:
            headers = conn.head_object(container, obj, headers={'X-Newest': 'true'},
                                       query_string='multipart-manifest=get')
        except swiftclient.ClientException as exc:
            if exc.http_status == 404:
                return False
            raise
        return headers.get(WRITER_HEADER.lower()) == writer_id

    try:
        if not ours():
            raise errors.ObjectNotFound(container, obj)
        deleted = 0
        for item in list_segments(conn, container, obj):
            if not _delete_with_retry(conn, container, item['name'], deadline):
                raise errors.SwiftError('Could not delete %s/%s' % (container, item['name']))
            deleted += 1
        if ours():
            if not _delete_with_retry(conn, container, obj, deadline):
                raise errors.SwiftError('Could not delete %s/%s' % (container, obj))
            deleted += 1
        return deleted
    finally:
        conn.close()
