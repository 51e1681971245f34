"""Writers: dynamic and fixed VHD (and raw) from disk content, streamed.

Writers take *disk content* described block by block (2 MiB blocks):

``virtual_size``
    the size of the disk in bytes (a multiple of 512);
``block_order``
    the indices of the blocks that hold data, in the order their data comes;
``block_data``
    an iterable giving, for each index of ``block_order`` in turn, a
    bytes-like object with the block's content (the disk's last block may
    be short; anything missing reads as zero).

A dynamic VHD's BAT comes before its blocks, so the set of blocks must be
known before the first byte is written; this is why content comes with its
``block_order``.  The output is produced in one pass, and its size is
known up front (``.size``)::

    writer = DynamicWriter(virtual_size, block_order)
    for chunk in writer.chunks(block_data):
        out.write(chunk)

Written VHDs have the exact current size, the specification's CHS
geometry, a fresh unique id, correct checksums and 2 MiB blocks with full
bitmaps.  Their creator application is ``win `` (Hyper-V): with it qemu,
like Hyper-V, XenServer and VirtualBox, takes the current size (not the
geometry) as the disk's size; we never claim ``tap `` (tapdisk would then
look for a batmap).
"""

from rax_glance.vhd import format as fmt

BLOCK_SIZE = fmt.DEFAULT_BLOCK_SIZE


def _new_footer(virtual_size, disk_type, data_offset, unique_id, timestamp):
    return fmt.Footer(
        data_offset=data_offset,
        timestamp=fmt.vhd_timestamp() if timestamp is None else timestamp,
        original_size=virtual_size, current_size=virtual_size,
        geometry=fmt.chs_geometry(virtual_size), disk_type=disk_type,
        unique_id=unique_id or fmt.new_unique_id())


def _check_size(virtual_size):
    if virtual_size <= 0 or virtual_size % fmt.SECTOR:
        raise ValueError('virtual size %d is not a positive multiple of 512'
                         % virtual_size)


class DynamicWriter:
    """A dynamic VHD: footer copy, header, BAT, blocks, footer."""

    def __init__(self, virtual_size, block_order, unique_id=None,
                 timestamp=None):
        _check_size(virtual_size)
        self.virtual_size = virtual_size
        self.block_order = list(block_order)
        self.entries = -(-virtual_size // BLOCK_SIZE)
        self.bitmap_size = fmt.bitmap_size(BLOCK_SIZE)
        self.footer = _new_footer(virtual_size, fmt.DISK_DYNAMIC,
                                  fmt.FOOTER_SIZE, unique_id, timestamp)
        self.table_offset = fmt.FOOTER_SIZE + fmt.HEADER_SIZE
        self.data_start = self.table_offset + fmt.bat_size(self.entries)
        span = self.bitmap_size + BLOCK_SIZE
        self.size = (self.data_start + len(self.block_order) * span
                     + fmt.FOOTER_SIZE)

    def head(self):
        """Footer copy, dynamic header and BAT."""
        header = fmt.DynamicHeader(table_offset=self.table_offset,
                                   max_table_entries=self.entries,
                                   block_size=BLOCK_SIZE)
        bat = bytearray(b'\xff' * fmt.bat_size(self.entries))
        span = self.bitmap_size + BLOCK_SIZE
        seen = set()
        for position, index in enumerate(self.block_order):
            if not 0 <= index < self.entries or index in seen:
                raise ValueError('bad or repeated block index %d' % index)
            seen.add(index)
            sector = (self.data_start + position * span) // fmt.SECTOR
            bat[index * 4:index * 4 + 4] = sector.to_bytes(4, 'big')
        footer = self.footer.pack()
        return footer + header.pack() + bytes(bat)

    def _bitmap(self, index):
        sectors = min(BLOCK_SIZE, self.virtual_size - index * BLOCK_SIZE)
        sectors //= fmt.SECTOR
        full, rest = divmod(sectors, 8)
        bitmap = b'\xff' * full
        if rest:
            bitmap += bytes([(0xFF << (8 - rest)) & 0xFF])
        return bitmap.ljust(self.bitmap_size, b'\0')

    def chunks(self, block_data):
        """The whole file as an iterator of bytes-like chunks."""
        yield self.head()
        full_bitmap = self._bitmap(0)
        last = self.entries - 1
        for index, data in zip(self.block_order, block_data, strict=True):
            yield full_bitmap if index != last else self._bitmap(index)
            yield data
            if len(data) < BLOCK_SIZE:
                yield bytes(BLOCK_SIZE - len(data))
        yield self.footer.pack()


class FixedWriter:
    """A fixed VHD: the disk's bytes, then the footer."""

    def __init__(self, virtual_size, unique_id=None, timestamp=None):
        _check_size(virtual_size)
        self.virtual_size = virtual_size
        self.footer = _new_footer(virtual_size, fmt.DISK_FIXED,
                                  fmt.NO_DATA_OFFSET, unique_id, timestamp)
        self.size = virtual_size + fmt.FOOTER_SIZE

    def chunks(self, block_order, block_data):
        """``block_order`` must be increasing (raw layout)."""
        yield from raw_chunks(self.virtual_size, block_order, block_data)
        yield self.footer.pack()


def raw_chunks(virtual_size, block_order, block_data):
    """The raw disk (zeros filled in) from content in increasing order."""
    position = 0
    zeros = bytes(BLOCK_SIZE)
    for index, data in zip(block_order, block_data, strict=True):
        start = index * BLOCK_SIZE
        if start < position:
            raise ValueError('raw output needs blocks in increasing order')
        while position < start:
            step = min(BLOCK_SIZE, start - position)
            yield zeros if step == BLOCK_SIZE else zeros[:step]
            position += step
        length = min(BLOCK_SIZE, virtual_size - start)
        yield data[:length] if len(data) > length else data
        if len(data) < length:
            yield zeros[:length - len(data)]
        position = start + length
    while position < virtual_size:
        step = min(BLOCK_SIZE, virtual_size - position)
        yield zeros if step == BLOCK_SIZE else zeros[:step]
        position += step
