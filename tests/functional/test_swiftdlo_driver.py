"""The swiftdlo driver called in-process the way glance_store calls it, on the real Swift."""

import hashlib
import io
import uuid

import pytest
from glance_store import exceptions as store_exc
from glance_store import location as store_location
from oslo_config import cfg

from rax_glance.store import swiftdlo
from rax_glance.swift import access
from tests.functional.swift_helpers import SEG
from tests.functional.swift_helpers import names_under
from tests.functional.swift_helpers import random_bytes


@pytest.fixture
def store(stack_info):
    info = stack_info['swift']
    conf = cfg.ConfigOpts()
    conf([], project='rax-glance-tests')
    store = swiftdlo.Store(conf, backend='swift')
    access.register_opts(conf)
    for key, value in dict(auth_mode='service', auth_url=info['auth_url'], auth_version='1',
                           user=info['service_user'], key=info['service_key'],
                           storage_url_template=info['storage_url_template'], retries=1,
                           retry_backoff=0.1).items():
        conf.set_override(key, value, group='rax_swift')
    container = 'driver-%s' % uuid.uuid4().hex[:8]
    conf.set_override('swiftdlo_container', container, group='swift')
    conf.set_override('swiftdlo_segment_size', SEG, group='swift')
    store.configure(re_raise_bsc=True)
    return store


def _location(store, uri):
    return store_location.Location('swiftdlo', swiftdlo.StoreLocation, store.conf, uri=uri,
                                   backend='swift')


def test_driver_contract(store):
    data = random_bytes(2 * SEG + 3)
    image_id = str(uuid.uuid4())
    uri, size, checksum, multihash, metadata = store.add(image_id, io.BytesIO(data), len(data),
                                                         'sha512')
    container = store.store_conf.swiftdlo_container
    assert uri == 'swiftdlo://%s/%s' % (container, image_id)
    assert (size, checksum) == (len(data), hashlib.md5(data).hexdigest())
    assert multihash == hashlib.sha512(data).hexdigest()
    assert metadata == {'store': 'swift'}

    loc = _location(store, uri)
    assert store.get_size(loc) == len(data)
    body, length = store.get(loc)
    assert length == len(data) and b''.join(body) == data
    body, length = store.get(loc, offset=5, chunk_size=SEG)
    assert length == SEG and b''.join(body) == data[5:5 + SEG]
    with pytest.raises(store_exc.Invalid):
        store.get(loc, offset=len(data), chunk_size=1)

    with pytest.raises(store_exc.Duplicate):
        store.add(image_id, io.BytesIO(b'again'), 5, 'sha512')

    # Legacy 4-tuple when no hashing_algo is given (glance_store's back_compat_add).
    other = str(uuid.uuid4())
    assert len(store.add(other, io.BytesIO(b'x'), 1)) == 4

    store.delete(loc)
    with pytest.raises(store_exc.NotFound):
        store.get(loc)
    with pytest.raises(store_exc.NotFound):
        store.get_size(loc)
    with pytest.raises(store_exc.NotFound):
        store.delete(loc)


class SizeLimitExceeded(Exception):
    """Stands for Glance's own errors raised by the image data it hands to add()."""


@pytest.mark.parametrize('error', [SizeLimitExceeded('over the cap'),
                                   ConnectionResetError('client went away')])
def test_errors_of_the_image_data_pass_through_and_nothing_is_left(store, error):
    def data():
        yield random_bytes(SEG)
        yield random_bytes(SEG)
        raise error

    class Reader:
        def __init__(self):
            self.it = data()

        def read(self, n):
            return next(self.it, b'')

    image_id = str(uuid.uuid4())
    with pytest.raises(type(error)):
        store.add(image_id, Reader(), 0, 'sha512')
    conn = store._account().connection()
    assert names_under(conn, store.store_conf.swiftdlo_container, image_id) == []
