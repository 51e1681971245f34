"""Crafted VHD images for tests, written with ``struct`` only.

Deliberately independent of ``rax_glance.vhd``: the code under test never
builds its own fixtures.  Every field can be overridden to craft defects.
"""

import struct
import uuid

SECTOR = 512
BLOCK = 2 << 20
VHD_EPOCH = 946684800


def vhd_checksum(data, at):
    body = bytearray(data)
    body[at:at + 4] = b'\0\0\0\0'
    return ~sum(body) & 0xFFFFFFFF


def spec_chs(size):
    total = min(size // SECTOR, 65535 * 16 * 255)
    if total >= 65535 * 16 * 63:
        spt, heads, cth = 255, 16, total // 255
    else:
        spt = 17
        cth = total // spt
        heads = max((cth + 1023) // 1024, 4)
        if cth >= heads * 1024 or heads > 16:
            spt, heads, cth = 31, 16, total // 31
        if cth >= heads * 1024:
            spt, heads, cth = 63, 16, total // 63
    return cth // heads, heads, spt


def footer(size, disk_type=3, data_offset=512, unique_id=None,
           creator=b'win ', geometry=None, features=2, version=0x10000,
           timestamp=700000000, saved_state=0, hidden=0, cookie=b'conectix',
           checksum=None):
    geometry = geometry or spec_chs(size)
    unique_id = unique_id if unique_id is not None else uuid.uuid4().bytes
    body = bytearray(512)
    struct.pack_into('>8sIIQI4sI4sQQHBBI', body, 0, cookie, features,
                     version, data_offset, timestamp, creator, 0x000A0000,
                     b'Wi2k', size, size, geometry[0], geometry[1],
                     geometry[2], disk_type)
    body[68:84] = unique_id
    body[84] = saved_state
    body[85] = hidden
    struct.pack_into('>I', body, 64,
                     vhd_checksum(body, 64) if checksum is None else checksum)
    return bytes(body)


def dyn_header(entries, block_size=BLOCK, table_offset=1536,
               parent_id=bytes(16), parent_name='', cookie=b'cxsparse',
               version=0x10000, data_offset=0xFFFFFFFFFFFFFFFF,
               checksum=None):
    body = bytearray(1024)
    struct.pack_into('>8sQQIII', body, 0, cookie, data_offset, table_offset,
                     version, entries, block_size)
    body[40:56] = parent_id
    name = parent_name.encode('utf-16-be') if isinstance(
        parent_name, str) else parent_name
    body[64:64 + len(name)] = name
    struct.pack_into('>I', body, 36,
                     vhd_checksum(body, 36) if checksum is None else checksum)
    return bytes(body)


def bitmap_for(sectors, set_sectors):
    bits = bytearray(-(-(sectors // 8) // SECTOR) * SECTOR or SECTOR)
    for s in set_sectors:
        bits[s // 8] |= 0x80 >> (s % 8)
    return bytes(bits)


class Dynamic:
    """A dynamic/differencing VHD assembled from parts, then serialised.

    ``blocks`` maps block index to ``(set_sectors or None for all, data)``;
    blocks are laid out in ``order`` (default: increasing index).
    """

    def __init__(self, size, block_size=BLOCK, disk_type=3, unique_id=None,
                 parent=None):
        self.size = size
        self.block_size = block_size
        self.entries = -(-size // block_size)
        self.footer_kwargs = {'disk_type': disk_type}
        self.unique_id = unique_id or uuid.uuid4().bytes
        self.header_kwargs = {}
        if parent is not None:
            self.header_kwargs['parent_id'] = parent.unique_id
            self.header_kwargs['parent_name'] = 'parent.vhd'
        self.blocks = {}
        self.order = None

    def write(self, offset, data):
        """Store data (sector aligned) setting bitmap bits."""
        assert offset % SECTOR == 0 and len(data) % SECTOR == 0
        pos = 0
        while pos < len(data):
            index, within = divmod(offset + pos, self.block_size)
            take = min(self.block_size - within, len(data) - pos)
            sectors, buf = self.blocks.get(
                index, (set(), bytearray(self.block_size)))
            buf[within:within + take] = data[pos:pos + take]
            sectors.update(range(within // SECTOR, (within + take) // SECTOR))
            self.blocks[index] = (sectors, buf)
            pos += take

    def build(self, trailing=None, bat_override=None, extra_gap=0):
        spb = self.block_size // SECTOR
        bitmap_len = -(-(spb // 8 or 1) // SECTOR) * SECTOR
        bat_len = -(-(self.entries * 4) // SECTOR) * SECTOR
        data_start = 1536 + bat_len + extra_gap
        bat = [0xFFFFFFFF] * self.entries
        order = self.order or sorted(self.blocks)
        body = bytearray()
        for n, index in enumerate(order):
            bat[index] = (data_start + n * (bitmap_len + self.block_size)) \
                // SECTOR
            sectors, buf = self.blocks[index]
            body += bitmap_for(spb, sectors).ljust(bitmap_len, b'\0')[
                :bitmap_len]
            body += buf
        if bat_override:
            for index, value in bat_override.items():
                bat[index] = value
        raw_bat = struct.pack('>%dI' % self.entries, *bat).ljust(
            bat_len, b'\xff')
        kwargs = dict(self.footer_kwargs)
        foot = footer(self.size, unique_id=self.unique_id, **kwargs)
        head = dyn_header(self.entries, self.block_size,
                          **self.header_kwargs)
        out = foot + head + raw_bat + bytes(extra_gap) + bytes(body)
        return out + (foot if trailing is None else trailing)


def fixed(data, **kwargs):
    return bytes(data) + footer(len(data), disk_type=2,
                                data_offset=0xFFFFFFFFFFFFFFFF, **kwargs)


def expected_content(size, writes):
    """Naive model of a disk: apply ``(offset, data)`` writes in order."""
    disk = bytearray(size)
    for offset, data in writes:
        disk[offset:offset + len(data)] = data
    return bytes(disk)
