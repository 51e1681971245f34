"""Validation rules shared by the streaming and the random-access readers.

Each ``check_*`` function looks at already parsed metadata and raises the
typed error (:mod:`rax_glance.errors`) of the first defect it finds.  The
numbers in comments refer to the defect list of ``doc/vhd-defects.md``.
"""

import array
import dataclasses
import sys
import time

from rax_glance import errors
from rax_glance.vhd import format as fmt

GIB = 1 << 30


@dataclasses.dataclass
class Limits:
    """What an image may be.  Sizes are in bytes.

    ``max_physical_size`` bounds the disk data of the file: the VHD's own
    metadata (footers, header, BAT, sector bitmaps: at most 1/4096 of the
    data plus 1 MiB) comes on top, so that a full 40 GiB disk passes a
    40 GiB limit.
    """

    max_virtual_size: int = 40 * GIB
    max_physical_size: int = 40 * GIB
    max_block_size: int = 16 << 20
    max_table_entries: int = 1 << 20
    # How far in the future a timestamp may be (clock skew of the writer).
    max_future_seconds: int = 2 * 86400
    # Whether a differencing disk is acceptable (export of chains, CLI).
    allow_differencing: bool = False
    # Whether data under clear sector bitmap bits is only warned about.
    # qemu ignores the bitmap and shows that data, the VHD specification
    # (and XenServer's tapdisk) reads zeros: the two readers see different
    # disks, so customer uploads are refused (code 111).
    allow_hidden_data: bool = False
    # A fixed "now" for tests; None means the clock.
    now: float = None

    @property
    def physical_allowance(self):
        return (self.max_physical_size + self.max_physical_size // 4096
                + (1 << 20))

    def current_vhd_time(self):
        return fmt.vhd_timestamp(self.now if self.now is not None
                                 else time.time())


UNLIMITED = Limits(max_virtual_size=fmt.MAX_DISK_SIZE,
                   max_physical_size=fmt.MAX_DISK_SIZE,
                   allow_differencing=True, allow_hidden_data=True)


def footer_length(file_size):
    """512, or 511 for the short footer of pre-2004 Virtual PC images."""
    if file_size % fmt.SECTOR == 0:
        return fmt.FOOTER_SIZE
    if file_size % fmt.SECTOR == fmt.SHORT_FOOTER_SIZE:
        return fmt.SHORT_FOOTER_SIZE
    return None


def check_physical_size(file_size, limits):
    if file_size > limits.physical_allowance:
        raise errors.PhysicalSizeError(
            'file is %d bytes, over the limit of %d bytes of disk data'
            % (file_size, limits.max_physical_size),
            limits.max_physical_size)


def check_footer_identity(footer, offset):
    """Defects 1 and 2: is this a VHD footer at all."""
    if footer.cookie != fmt.FOOTER_COOKIE:
        raise errors.NotVHDError('no VHD footer cookie "conectix" (found %r)'
                                 % footer.cookie, offset)
    if footer.checksum != footer.computed_checksum:
        raise errors.NotVHDError(
            'footer checksum is 0x%08x, computed 0x%08x'
            % (footer.checksum, footer.computed_checksum), offset + 64)


def check_footer(footer, offset, limits, leaf=True):
    """Defects 1, 2, 5, 6, 13, 14 and 16 on one footer."""
    check_footer_identity(footer, offset)
    if footer.disk_type not in fmt.DISK_TYPE_NAMES:
        raise errors.DiskTypeError('disk type %d is not fixed, dynamic or '
                                   'differencing' % footer.disk_type,
                                   offset + 60)
    if footer.disk_type == fmt.DISK_DIFFERENCING and not (
            limits.allow_differencing):
        raise errors.HasParentError('differencing disk', offset + 60)
    size = footer.current_size
    if size > limits.max_virtual_size:
        raise errors.VirtualSizeError(
            'virtual size %d is over the limit of %d'
            % (size, limits.max_virtual_size), limits.max_virtual_size,
            offset + 48)
    if footer.unique_id == bytes(16):
        raise errors.NullUniqueIdError('unique id is all zeros', offset + 68)
    if not footer.features & fmt.FEATURE_RESERVED:
        raise errors.StructureError('features 0x%x lack the reserved bit 0x2'
                                    % footer.features, offset + 8)
    if footer.features & ~(fmt.FEATURE_RESERVED | fmt.FEATURE_TEMPORARY):
        raise errors.StructureError('unknown feature bits 0x%x'
                                    % footer.features, offset + 8)
    if footer.version != fmt.VERSION:
        raise errors.StructureError('footer version 0x%08x'
                                    % footer.version, offset + 12)
    if footer.saved_state:
        raise errors.StructureError('saved state is set (a suspended VM)',
                                    offset + 84)
    if leaf and footer.hidden:
        raise errors.StructureError('disk is marked hidden (a tapdisk '
                                    'internal node, not a leaf)', offset + 85)
    if size == 0 or size % fmt.SECTOR:
        raise errors.StructureError('current size %d is not a positive '
                                    'multiple of 512' % size, offset + 48)
    if size > fmt.MAX_DISK_SIZE:
        raise errors.StructureError('current size %d is over the format '
                                    'maximum' % size, offset + 48)
    if (footer.geometry != fmt.MAX_GEOMETRY
            and fmt.geometry_capacity(footer.geometry) > size):
        raise errors.StructureError(
            'geometry %d/%d/%d holds more than the current size %d'
            % (footer.geometry + (size,)), offset + 56)
    if footer.timestamp > (limits.current_vhd_time()
                           + limits.max_future_seconds):
        raise errors.StructureError('timestamp %d is in the future'
                                    % footer.timestamp, offset + 24)
    if footer.disk_type == fmt.DISK_FIXED:
        if footer.data_offset not in (fmt.NO_DATA_OFFSET, 0xFFFFFFFF):
            raise errors.StructureError('fixed disk with data offset %d'
                                        % footer.data_offset, offset + 16)
    elif (footer.data_offset < fmt.FOOTER_SIZE
          or footer.data_offset % fmt.SECTOR):
        raise errors.StructureError('header offset %d is not a sector after '
                                    'the footer copy' % footer.data_offset,
                                    offset + 16)


def check_header(header, footer, file_size, limits):
    """Defects 3, 7, 8, 9 and the header/BAT placement.

    Returns the file offset where block data may start (end of the BAT).
    """
    offset = footer.data_offset
    end_of_data = file_size - footer_length(file_size)
    if offset + fmt.HEADER_SIZE > end_of_data:
        raise errors.StructureError('header offset %d is past the end of '
                                    'the file' % offset, 16)
    if header.cookie != fmt.HEADER_COOKIE:
        raise errors.StructureError('no dynamic header cookie "cxsparse"',
                                    offset)
    if header.checksum != header.computed_checksum:
        raise errors.StructureError(
            'header checksum is 0x%08x, computed 0x%08x'
            % (header.checksum, header.computed_checksum), offset + 36)
    if header.version != fmt.VERSION:
        raise errors.StructureError('header version 0x%08x' % header.version,
                                    offset + 24)
    if header.data_offset != fmt.NO_DATA_OFFSET:
        raise errors.StructureError('header data offset is not all ones',
                                    offset + 8)
    block = header.block_size
    if block < fmt.SECTOR or block & (block - 1):
        raise errors.StructureError('block size %d is not a power of two of '
                                    'at least 512' % block, offset + 32)
    if block > limits.max_block_size:
        raise errors.StructureError('block size %d is over %d'
                                    % (block, limits.max_block_size),
                                    offset + 32)
    needed = -(-footer.current_size // block)
    entries = header.max_table_entries
    if entries < needed:
        raise errors.StructureError(
            'BAT has %d entries, the disk needs %d' % (entries, needed),
            offset + 28)
    if (entries > limits.max_table_entries
            or entries > -(-fmt.MAX_DISK_SIZE // block)):
        raise errors.StructureError('absurd BAT size of %d entries'
                                    % entries, offset + 28)
    table = header.table_offset
    if table % fmt.SECTOR or table < offset + fmt.HEADER_SIZE:
        raise errors.StructureError(
            'BAT offset %d is not a sector after the header' % table,
            offset + 16)
    table_end = table + fmt.bat_size(entries)
    if table_end > end_of_data:
        raise errors.StructureError('BAT ends past the end of the file',
                                    table)
    if footer.disk_type == fmt.DISK_DIFFERENCING:
        if header.parent_unique_id == bytes(16):
            raise errors.ChainError('differencing disk without a parent id',
                                    offset + 40)
        if header.decoded_parent_name() is None:
            raise errors.ChainError('parent name is not valid UTF-16',
                                    offset + 64)
    return table_end


def parse_bat(data, entries):
    """The BAT as an ``array('I')`` of host-order sector offsets."""
    bat = array.array('I')
    bat.frombytes(bytes(data[:entries * 4]))
    if sys.byteorder == 'little':
        bat.byteswap()
    return bat


def check_bat(bat, header, footer, file_size, data_start):
    """Defects 8, 10 and 11: returns allocated blocks sorted by offset.

    The result is a list of ``(byte_offset, block_index)``.
    """
    block = header.block_size
    span = fmt.bitmap_size(block) + block
    end_of_data = file_size - footer_length(file_size)
    needed = -(-footer.current_size // block)
    table = header.table_offset
    allocated = []
    for index, sector in enumerate(bat):
        if sector == fmt.UNALLOCATED:
            continue
        where = table + 4 * index
        if index >= needed:
            raise errors.StructureError('BAT entry %d is allocated beyond '
                                        'the virtual size' % index, where)
        start = sector * fmt.SECTOR
        if start + span > end_of_data:
            raise errors.StructureError(
                'block %d at %d runs past the end of the data (%d)'
                % (index, start, end_of_data), where)
        if start < data_start:
            raise errors.StructureError(
                'block %d at %d overlaps the footer copy, header or BAT'
                % (index, start), where)
        allocated.append((start, index))
    allocated.sort()
    for (prev, prev_index), (start, index) in zip(allocated, allocated[1:], strict=False):
        if start < prev + span:
            raise errors.StructureError(
                'block %d at %d overlaps block %d at %d'
                % (index, start, prev_index, prev), table + 4 * index)
    return allocated


def check_trailing_footer(trailing, copy, offset):
    """Defect 4: the footer at the end must equal the copy at offset 0."""
    length = len(trailing)
    if bytes(trailing) != bytes(copy[:length]) or any(copy[length:]):
        raise errors.StructureError('trailing footer differs from the copy '
                                    'at offset 0', offset)


def bitmap_runs(bitmap, sectors):
    """Runs of set bits (MSB first) as ``(first_sector, count)`` pairs."""
    nbytes = (sectors + 7) // 8
    bits = bytes(bitmap[:nbytes])
    if bits.count(0xFF) == nbytes and sectors % 8 == 0:
        return [(0, sectors)]
    if not any(bits):
        return []
    runs = []
    run_start = None
    for byte_index, byte in enumerate(bits):
        base = byte_index * 8
        if byte == 0xFF and run_start is not None:
            continue
        if byte == 0 and run_start is None:
            continue
        for bit in range(8):
            sector = base + bit
            if sector >= sectors:
                break
            if byte & (0x80 >> bit):
                if run_start is None:
                    run_start = sector
            elif run_start is not None:
                runs.append((run_start, sector - run_start))
                run_start = None
    if run_start is not None:
        runs.append((run_start, sectors - run_start))
    return runs
