"""Property tests on random sparse disks (hypothesis).

Disks are built by the test's own builder; the expected content is a naive
byte array the test computes itself.
"""

import io

from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from rax_glance.vhd import coalesce
from rax_glance.vhd import content
from rax_glance.vhd import reader
from rax_glance.vhd import validate
from tests.unit.vhd import builder
from tests.unit.vhd.helpers import stream_read

SECTOR = 512
KIB = 1024
MIB = 1 << 20

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def sparse_writes(draw, size):
    sectors = size // SECTOR
    writes = []
    for _ in range(draw(st.integers(0, 6))):
        first = draw(st.integers(0, sectors - 1))
        count = draw(st.integers(1, min(sectors - first, 3000)))
        fill = draw(st.sampled_from(['byte', 'random', 'zero']))
        if fill == 'byte':
            data = bytes([draw(st.integers(1, 255))]) * (count * SECTOR)
        elif fill == 'random':
            seed = draw(st.binary(min_size=16, max_size=16))
            data = (seed * (count * SECTOR // 16 + 1))[:count * SECTOR]
        else:
            data = bytes(count * SECTOR)
        writes.append((first * SECTOR, data))
    return writes


@st.composite
def disks(draw):
    size = draw(st.integers(1, 9 * MIB // SECTOR)) * SECTOR
    block = draw(st.sampled_from([2 * MIB, 512 * KIB, 4 * KIB]))
    return size, block, draw(sparse_writes(size))


def build_dynamic(size, block, writes, disk_type=3, parent=None):
    disk = builder.Dynamic(size, block_size=block, disk_type=disk_type,
                           parent=parent)
    for offset, data in writes:
        disk.write(offset, data)
    return disk


@SETTINGS
@given(disks())
def test_read_matches_naive_model(disk):
    size, block, writes = disk
    data = build_dynamic(size, block, writes).build()
    raw, _ = stream_read(data)
    assert raw == builder.expected_content(size, writes)


@SETTINGS
@given(disks(), st.sampled_from(['dynamic', 'fixed']))
def test_write_read_round_trip(disk, kind):
    size, block, writes = disk
    expected = builder.expected_content(size, writes)
    source = content.content_from_stream(
        io.BytesIO(build_dynamic(size, block, writes).build()),
        len(build_dynamic(size, block, writes).build()), 'vhd')
    if kind == 'dynamic':
        out = content.dynamic_stream(source)
    else:
        out = content.fixed_stream(source)
    written = out.read()
    assert len(written) == out.size
    raw, stream = stream_read(written)
    assert raw == expected
    assert stream.virtual_size == size
    if kind == 'dynamic':
        # All-zero blocks of spooled content are not allocated.
        nonzero = {i for i in range(-(-size // (2 * MIB)))
                   if any(expected[i * 2 * MIB:(i + 1) * 2 * MIB])}
        if not isinstance(source, content.StreamedVHDContent):
            assert len(stream.allocated) == len(nonzero)


@SETTINGS
@given(st.integers(1, 6 * MIB // SECTOR), st.data())
def test_raw_round_trip(sectors, data):
    size = sectors * SECTOR
    writes = data.draw(sparse_writes(size))
    expected = builder.expected_content(size, writes)
    source = content.RawFileContent(io.BytesIO(expected), size)
    written = content.dynamic_stream(source).read()
    raw, _ = stream_read(written)
    assert raw == expected
    assert content.raw_stream(
        content.content_from_stream(io.BytesIO(written), len(written),
                                    'vhd')).read() == expected


@st.composite
def chains(draw):
    size = draw(st.integers(1, 7 * MIB // SECTOR)) * SECTOR
    depth = draw(st.integers(1, 4))
    base_kind = draw(st.sampled_from(['dynamic', 'fixed']))
    layers = []
    for level in range(depth):
        block = draw(st.sampled_from([2 * MIB, 512 * KIB]))
        # Children may be bigger than their parents (a resized disk).
        layer_size = size + (draw(st.integers(0, 8)) * SECTOR
                             if level < depth - 1 else 0)
        layers.append((layer_size, block, draw(sparse_writes(layer_size))))
    return base_kind, list(reversed(layers))    # base first


@SETTINGS
@given(chains())
def test_coalesce_equals_naive_overlay(chain):
    base_kind, layers = chain
    disks = []
    parent = None
    expected = None
    for level, (size, block, writes) in enumerate(layers):
        if level == 0 and base_kind == 'fixed':
            data = builder.expected_content(size, writes)
            disk_bytes = builder.fixed(data)
            parent = type('Fixed', (), {'unique_id': disk_bytes[-512 + 68:
                                                               -512 + 84]})
        else:
            disk = build_dynamic(size, block, writes,
                                 disk_type=3 if level == 0 else 4,
                                 parent=parent if level else None)
            disk_bytes = disk.build()
            parent = disk
        disks.append(disk_bytes)
        # Naive overlay: newer writes over the (resized) older content.
        old = expected or b''
        layer = bytearray(size)
        layer[:min(size, len(old))] = old[:size]
        for offset, data in writes:
            layer[offset:offset + len(data)] = data
        expected = bytes(layer)
    def open_files():
        return [reader.VHDFile(io.BytesIO(d), len(d), validate.UNLIMITED,
                               leaf=(n == len(disks) - 1), name='%d' % n)
                for n, d in enumerate(disks)]

    # dynamic_stream closes the chain's files once it is read.
    chain_content = coalesce.ChainContent(list(reversed(open_files())))
    merged = content.dynamic_stream(chain_content).read()
    raw, _ = stream_read(merged)
    assert raw == expected
    if len(disks) > 1:
        # The streaming reader of the leaf, given its parents, agrees.
        leaf = disks[-1]
        stream = reader.StreamReader(io.BytesIO(leaf), len(leaf),
                                     parents=list(reversed(open_files()))[1:])
        streamed = bytearray(len(expected))
        for offset, data in stream.extents():
            streamed[offset:offset + len(data)] = data
        assert bytes(streamed) == expected
