"""One test per defect rule of doc/vhd-defects.md, asserting the Cloud Images code."""

import io
import struct
import time

import pytest

from rax_glance import errors
from rax_glance.vhd import coalesce
from rax_glance.vhd import format as fmt
from rax_glance.vhd import reader
from rax_glance.vhd import validate
from tests.unit.vhd import builder
from tests.unit.vhd.helpers import patch
from tests.unit.vhd.helpers import patch_footers
from tests.unit.vhd.helpers import patch_header
from tests.unit.vhd.helpers import stream_read
from tests.unit.vhd.helpers import to_raw

MIB = 1 << 20


def small_dynamic(size=6 * MIB, **kwargs):
    disk = builder.Dynamic(size, **kwargs)
    disk.write(0, b'\x11' * 4096)
    disk.write(3 * MIB, b'\x22' * MIB)
    return disk


@pytest.fixture
def good():
    return small_dynamic().build()


def assert_code(data, code, limits=None, leaf=True):
    with pytest.raises(errors.ImageError) as info:
        stream_read(data, limits, leaf)
    assert info.value.code == code, info.value.describe()
    return info.value


def test_good_image_is_valid(good):
    raw, stream = stream_read(good)
    assert raw[:4096] == b'\x11' * 4096
    assert raw[3 * MIB:4 * MIB] == b'\x22' * MIB
    assert stream.warnings == []


# 1. footer cookie
def test_bad_footer_cookie_dynamic(good):
    data = patch(good, 0, b'conectiX')
    # Without a copy at 0 the file is taken for a fixed disk whose end has
    # no footer either... but here the end has one, of a dynamic disk.
    assert_code(patch(data, len(data) - 512, b'conectiX'), 396)


def test_bad_footer_cookie_fixed():
    data = builder.fixed(bytes(MIB), cookie=b'notavhd!')
    assert_code(data, 396)


def test_not_a_vhd_at_all():
    assert_code(b'hello world'.ljust(4096, b'\0'), 396)


# 2. footer checksum
def test_bad_footer_checksum(good):
    assert_code(patch(good, 64, b'\0\0\0\1'), 396)


def test_bad_footer_checksum_fixed():
    data = builder.fixed(bytes(MIB), checksum=0x1234)
    assert_code(data, 396)


# 3. dynamic header
@pytest.mark.parametrize('offset,value', [
    (0, b'cxsparsX'),                        # cookie
    (24, struct.pack('>I', 0x20000)),        # version
    (8, struct.pack('>Q', 0)),               # data offset not all ones
])
def test_bad_header_fields(good, offset, value):
    assert_code(patch_header(good, offset, value), 111)


def test_bad_header_checksum(good):
    assert_code(patch_header(good, 36, b'\0\0\0\0', fix_checksum=False), 111)


# 4. trailing footer differs from the copy
def test_trailing_footer_differs(good):
    end = len(good) - 512
    data = patch(good, end + 24, struct.pack('>I', 12345), 64, end, 512)
    err = assert_code(data, 111)
    assert 'trailing footer' in err.detail


# 5. features, version, unique id, saved state
@pytest.mark.parametrize('offset,value,code', [
    (8, struct.pack('>I', 0), 111),          # reserved bit missing
    (8, struct.pack('>I', 0x102), 111),      # unknown feature bit
    (12, struct.pack('>I', 0x20000), 111),   # footer version
    (68, bytes(16), 614),                    # null unique id
    (84, b'\1', 111),                        # saved state
])
def test_footer_field_defects(good, offset, value, code):
    assert_code(patch_footers(good, offset, value), code)


# 6. disk types
def test_unknown_disk_type(good):
    assert_code(patch_footers(good, 60, struct.pack('>I', 5)), 523)


def test_differencing_disk(good):
    base = small_dynamic()
    child = builder.Dynamic(6 * MIB, disk_type=4, parent=base)
    child.write(0, b'\x33' * 512)
    assert_code(child.build(), 721)


# 7. block size
@pytest.mark.parametrize('block_size', [3 * MIB, 256, 0])
def test_bad_block_size(good, block_size):
    assert_code(patch_header(good, 32, struct.pack('>I', block_size)), 111)


# 8. BAT too small
def test_bat_too_small(good):
    assert_code(patch_header(good, 28, struct.pack('>I', 2)), 111)


# 9. absurd BAT size
def test_absurd_table_entries(good):
    assert_code(patch_header(good, 28, struct.pack('>I', 0x7FFFFFFF)), 111)


# 10. BAT past EOF, truncation, size not a multiple of 512
def test_bat_entry_past_eof():
    data = small_dynamic().build(bat_override={0: 0x00FFFFFF})
    assert_code(data, 111)


def test_truncated_stream(good):
    cut = good[:len(good) // 2]
    with pytest.raises(errors.StructureError) as info:
        reader.StreamReader(io.BytesIO(cut), len(good)).validate()
    assert info.value.code == 111


def test_truncated_file_against_its_bat(good):
    # The file itself is shorter than the blocks its BAT points to.
    data = good[:-MIB - 512] + good[-512:]
    assert_code(data, 111)


def test_size_not_multiple_of_512(good):
    assert_code(good + b'\0' * 7, 396)


# 11. overlapping blocks
def test_block_overlaps_metadata():
    data = small_dynamic().build(bat_override={0: 2})    # inside the header
    assert_code(data, 111)


def test_blocks_overlap_each_other():
    disk = small_dynamic()
    data = disk.build()
    bat = 1536
    first = struct.unpack_from('>I', data, bat)[0]
    data = patch(data, bat + 4, struct.pack('>I', first + 8))
    assert_code(data, 111)


# 12. data where the bitmap is clear: qemu shows it, the specification
# reads zeros.  Refused (111) unless allowed (stored images on export):
# then it reads zeros, warned.
def hidden_data_disk():
    disk = builder.Dynamic(4 * MIB)
    disk.write(0, b'\x55' * 512)
    data = bytearray(disk.build())
    block_start = struct.unpack_from('>I', data, 1536)[0] * 512
    data[block_start + 512 + 4096:block_start + 512 + 8192] = b'\x66' * 4096
    return bytes(data)


def test_data_under_clear_bitmap_is_refused():
    error = assert_code(hidden_data_disk(), 111)
    assert 'bitmap marks unused' in error.detail
    with pytest.raises(errors.StructureError):
        to_raw(hidden_data_disk())


def test_data_under_clear_bitmap_reads_zero_when_allowed():
    data = hidden_data_disk()
    allowed = validate.Limits(allow_hidden_data=True)
    raw, stream = stream_read(data, allowed)
    assert raw[4096:8192] == bytes(4096)
    assert stream.warnings and 'bitmap' in stream.warnings[0]
    # The one-pass converter (no spooling for 2 MiB blocks) agrees.
    assert to_raw(data, allowed)[:8192] == b'\x55' * 512 + bytes(8192 - 512)
    # So does validate.UNLIMITED (export of stored images).
    assert stream_read(data, validate.UNLIMITED)[0] == raw


# 13. current size
def test_current_size_not_multiple_of_512(good):
    assert_code(patch_footers(good, 48, struct.pack('>Q', 6 * MIB - 3)), 111)


def test_geometry_beyond_current_size(good):
    assert_code(patch_footers(good, 56, struct.pack('>HBB', 60000, 16, 63)),
                111)


def test_virtual_size_over_limit():
    limits = validate.Limits(max_virtual_size=4 * MIB)
    err = assert_code(small_dynamic().build(), 413, limits)
    assert err.message.endswith('exceeds the 0.0GB limit.')
    default = errors.VirtualSizeError('x', 40 << 30)
    assert default.message == ('The image cannot be imported. The virtual '
                               'size of the disk exceeds the 40GB limit.')


def test_physical_size_over_limit():
    limits = validate.Limits(max_virtual_size=1 << 40,
                             max_physical_size=1 * MIB)
    data = builder.fixed(bytes(3 * MIB))
    assert_code(data, 609, limits)


def test_full_size_fixed_disk_is_within_physical_limit():
    limits = validate.Limits(max_virtual_size=2 * MIB,
                             max_physical_size=2 * MIB)
    stream_read(builder.fixed(bytes(2 * MIB)), limits)


# 14. timestamps far in the future
def test_timestamp_in_future(good):
    future = int(time.time()) - builder.VHD_EPOCH + 10 * 86400
    assert_code(patch_footers(good, 24, struct.pack('>I', future)), 111)


# 15. chains
def _chain_files(tmp_path, disks):
    paths = []
    for n, disk in enumerate(disks):
        path = tmp_path / ('%d.vhd' % n)
        path.write_bytes(disk.build())
        paths.append(str(path))
    return paths


def _chain_error(tmp_path, disks):
    with pytest.raises(errors.ChainError) as info:
        coalesce.open_chain(_chain_files(tmp_path, disks))
    assert info.value.code == 112
    return info.value


def test_chain_parent_id_mismatch(tmp_path):
    base = small_dynamic()
    child = builder.Dynamic(6 * MIB, disk_type=4, parent=small_dynamic())
    assert 'parent id' in _chain_error(tmp_path, [child, base]).detail


def test_chain_undecodable_parent_name(tmp_path):
    base = small_dynamic()
    child = builder.Dynamic(6 * MIB, disk_type=4, parent=base)
    child.header_kwargs['parent_name'] = b'\xd8\x00\x00\x41'   # lone surrogate
    _chain_error(tmp_path, [child, base])


def test_chain_missing_parent(tmp_path):
    base = small_dynamic()
    child = builder.Dynamic(6 * MIB, disk_type=4, parent=base)
    assert 'missing parent' in _chain_error(tmp_path, [child]).detail


def test_chain_cycle(tmp_path):
    a = builder.Dynamic(6 * MIB, disk_type=4)
    b = builder.Dynamic(6 * MIB, disk_type=4, parent=a)
    a.header_kwargs['parent_id'] = b.unique_id
    a.header_kwargs['parent_name'] = 'b.vhd'
    assert 'cycle' in _chain_error(tmp_path, [b, a, b]).detail


def test_chain_too_deep(tmp_path):
    with pytest.raises(errors.ChainError):
        coalesce.open_chain(['x.vhd'] * (coalesce.MAX_CHAIN_DEPTH + 1))


# 16. a leaf marked hidden
def test_hidden_leaf(good):
    data = patch_footers(good, 85, b'\1')
    assert_code(data, 111)
    stream_read(data, leaf=False)       # fine as a parent in a chain


# Accepted variants ----------------------------------------------------------

@pytest.mark.parametrize('creator', [b'win ', b'vpc ', b'tap\0', b'tap ',
                                     b'qemu', b'qem2'])
def test_creator_applications_accepted(good, creator):
    stream_read(patch_footers(good, 28, creator))


def test_force_size_geometry_accepted(good):
    stream_read(patch_footers(good, 56, struct.pack('>HBB', 65535, 16, 255)))


def test_short_511_byte_footer_fixed():
    data = builder.fixed(b'\x42' * MIB)[:-1]
    raw, stream = stream_read(data)
    assert raw == b'\x42' * MIB and stream.is_fixed


def test_short_511_byte_footer_dynamic(good):
    raw, _ = stream_read(good[:-1])
    assert raw[3 * MIB:4 * MIB] == b'\x22' * MIB


def test_blocks_out_of_order_and_gaps_accepted():
    disk = small_dynamic()
    disk.order = [1, 0]
    raw, _ = stream_read(disk.build(extra_gap=4096))
    assert raw[:4096] == b'\x11' * 4096


def test_fixed_disk_whose_data_starts_with_a_fixed_footer():
    inner = builder.fixed(bytes(512))
    data = builder.fixed(inner[-512:] + bytes(MIB - 512))
    raw, stream = stream_read(data)
    assert stream.is_fixed and raw[:8] == b'conectix'


def test_fixed_footer_size_mismatch():
    data = bytearray(builder.fixed(bytes(MIB)))
    end = len(data) - 512
    data = patch(bytes(data), end + 48, struct.pack('>Q', 2 * MIB), 64, end)
    assert_code(data, 111)


def test_errors_carry_offsets(good):
    err = assert_code(patch(good, 64, b'\0\0\0\1'), 396)
    assert err.offset == 64 and 'checksum' in err.detail
    assert err.describe().startswith('396: ')
    assert fmt.FOOTER_SIZE == 512


def test_stream_reader_with_wrong_parent():
    base = small_dynamic()
    child = builder.Dynamic(6 * MIB, disk_type=4, parent=base)
    child.write(0, b'\x33' * 512)
    other = small_dynamic().build()
    data = child.build()
    parent = reader.VHDFile(io.BytesIO(other), len(other), name='other')
    with pytest.raises(errors.ChainError):
        for _ in reader.StreamReader(io.BytesIO(data), len(data),
                                     parents=[parent]).extents():
            pass
