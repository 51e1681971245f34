"""VHD on-disk structures: footer, dynamic header, geometry, checksums.

Pure data: parsing never raises for bad field values (the validator in
:mod:`rax_glance.vhd.reader` decides what is a defect); building always
produces a structure with a correct checksum.  Layout reference:
the Microsoft Virtual Hard Disk Image Format Specification 1.0 (rules: ``doc/vhd-defects.md``).
"""

import dataclasses
import struct
import time
import uuid

SECTOR = 512
FOOTER_SIZE = 512
SHORT_FOOTER_SIZE = 511      # pre-2004 Virtual PC images
HEADER_SIZE = 1024
DEFAULT_BLOCK_SIZE = 2 << 20
UNALLOCATED = 0xFFFFFFFF
NO_DATA_OFFSET = 0xFFFFFFFFFFFFFFFF

FOOTER_COOKIE = b'conectix'
HEADER_COOKIE = b'cxsparse'
VERSION = 0x00010000
FEATURE_TEMPORARY = 0x1
FEATURE_RESERVED = 0x2

DISK_FIXED = 2
DISK_DYNAMIC = 3
DISK_DIFFERENCING = 4
DISK_TYPE_NAMES = {DISK_FIXED: 'fixed', DISK_DYNAMIC: 'dynamic',
                   DISK_DIFFERENCING: 'differencing'}

# Seconds between the Unix epoch and the VHD epoch (2000-01-01 UTC).
VHD_EPOCH = 946684800
# The largest disk the format allows (spec: 2040 GiB).
MAX_DISK_SIZE = 2040 << 30
MAX_GEOMETRY = (65535, 16, 255)

_FOOTER = struct.Struct('>8sIIQI4sI4sQQHBBII16sBB')     # 85 bytes
_HEADER = struct.Struct('>8sQQIIII16sI4s512s')          # 576 bytes
_LOCATOR = struct.Struct('>4sIIIQ')                      # 24 bytes


def checksum(data, field_offset):
    """One's complement of the byte sum, the checksum field counted as 0."""
    total = sum(data) - sum(data[field_offset:field_offset + 4])
    return ~total & 0xFFFFFFFF


def vhd_timestamp(unix_time=None):
    """Seconds since 2000-01-01 UTC, as stored in footers and headers."""
    if unix_time is None:
        unix_time = time.time()
    return max(0, int(unix_time) - VHD_EPOCH) & 0xFFFFFFFF


def chs_geometry(size):
    """Cylinders, heads, sectors per track for ``size`` bytes (spec algorithm).

    The resulting capacity never exceeds ``size``; disks over about 127 GiB
    get the maximum geometry.
    """
    total = size // SECTOR
    if total > 65535 * 16 * 255:
        total = 65535 * 16 * 255
    if total >= 65535 * 16 * 63:
        spt, heads = 255, 16
        cth = total // spt
    else:
        spt = 17
        cth = total // spt
        heads = max((cth + 1023) // 1024, 4)
        if cth >= heads * 1024 or heads > 16:
            spt, heads = 31, 16
            cth = total // spt
        if cth >= heads * 1024:
            spt, heads = 63, 16
            cth = total // spt
    return cth // heads, heads, spt


def geometry_capacity(geometry):
    cylinders, heads, spt = geometry
    return cylinders * heads * spt * SECTOR


@dataclasses.dataclass
class Footer:
    cookie: bytes = FOOTER_COOKIE
    features: int = FEATURE_RESERVED
    version: int = VERSION
    data_offset: int = NO_DATA_OFFSET
    timestamp: int = 0
    creator_app: bytes = b'win '
    creator_version: int = 0x000A0000
    creator_os: bytes = b'Wi2k'
    original_size: int = 0
    current_size: int = 0
    geometry: tuple = (0, 0, 0)
    disk_type: int = DISK_FIXED
    checksum: int = 0
    unique_id: bytes = bytes(16)
    saved_state: int = 0
    hidden: int = 0
    reserved_nonzero: bool = False
    raw: bytes = b''

    @classmethod
    def parse(cls, data):
        """Parse 512 (or 511) bytes; ``raw`` keeps them padded to 512."""
        data = bytes(data).ljust(FOOTER_SIZE, b'\0')
        (cookie, features, version, data_offset, timestamp, creator_app,
         creator_version, creator_os, original_size, current_size,
         cylinders, heads, spt, disk_type, stored_checksum, unique_id,
         saved_state, hidden) = _FOOTER.unpack_from(data)
        return cls(cookie, features, version, data_offset, timestamp,
                   creator_app, creator_version, creator_os, original_size,
                   current_size, (cylinders, heads, spt), disk_type,
                   stored_checksum, unique_id, saved_state, hidden,
                   any(data[_FOOTER.size:]), data)

    @property
    def computed_checksum(self):
        return checksum(self.raw, 64)

    @property
    def unique_uuid(self):
        return uuid.UUID(bytes=self.unique_id)

    def pack(self):
        """Serialise with a fresh checksum (reserved bytes are zero)."""
        body = bytearray(FOOTER_SIZE)
        _FOOTER.pack_into(
            body, 0, self.cookie, self.features, self.version,
            self.data_offset, self.timestamp, self.creator_app,
            self.creator_version, self.creator_os, self.original_size,
            self.current_size, *self.geometry, self.disk_type, 0,
            self.unique_id, self.saved_state, self.hidden)
        struct.pack_into('>I', body, 64, checksum(body, 64))
        return bytes(body)


@dataclasses.dataclass
class Locator:
    code: bytes
    data_space: int
    data_length: int
    reserved: int
    data_offset: int


@dataclasses.dataclass
class DynamicHeader:
    cookie: bytes = HEADER_COOKIE
    data_offset: int = NO_DATA_OFFSET
    table_offset: int = FOOTER_SIZE + HEADER_SIZE
    version: int = VERSION
    max_table_entries: int = 0
    block_size: int = DEFAULT_BLOCK_SIZE
    checksum: int = 0
    parent_unique_id: bytes = bytes(16)
    parent_timestamp: int = 0
    reserved1: bytes = bytes(4)
    parent_name: bytes = bytes(512)
    locators: tuple = ()
    raw: bytes = b''

    @classmethod
    def parse(cls, data):
        data = bytes(data)
        (cookie, data_offset, table_offset, version, entries, block_size,
         stored_checksum, parent_id, parent_ts, reserved1,
         parent_name) = _HEADER.unpack_from(data)
        locators = tuple(Locator(*_LOCATOR.unpack_from(data, 576 + 24 * i))
                         for i in range(8))
        return cls(cookie, data_offset, table_offset, version, entries,
                   block_size, stored_checksum, parent_id, parent_ts,
                   reserved1, parent_name, locators, data)

    @property
    def computed_checksum(self):
        return checksum(self.raw, 36)

    @property
    def sectors_per_block(self):
        return self.block_size // SECTOR

    @property
    def bitmap_size(self):
        return bitmap_size(self.block_size)

    def decoded_parent_name(self):
        """The parent's name, or ``None`` when it is not valid UTF-16BE."""
        name = self.parent_name
        end = len(name)
        for i in range(0, len(name), 2):
            if name[i:i + 2] == b'\0\0':
                end = i
                break
        try:
            return name[:end].decode('utf-16-be')
        except UnicodeDecodeError:
            return None

    def pack(self):
        body = bytearray(HEADER_SIZE)
        _HEADER.pack_into(
            body, 0, self.cookie, self.data_offset, self.table_offset,
            self.version, self.max_table_entries, self.block_size, 0,
            self.parent_unique_id, self.parent_timestamp, self.reserved1,
            self.parent_name)
        for i, loc in enumerate(self.locators):
            _LOCATOR.pack_into(body, 576 + 24 * i, loc.code, loc.data_space,
                               loc.data_length, loc.reserved,
                               loc.data_offset)
        struct.pack_into('>I', body, 36, checksum(body, 36))
        return bytes(body)


def bitmap_size(block_size):
    """Bytes of the sector bitmap in front of each block, sector padded."""
    bits = block_size // SECTOR
    return -(-((bits + 7) // 8) // SECTOR) * SECTOR


def bat_size(entries):
    """Bytes the BAT takes in the file (padded to a sector)."""
    return -(-(entries * 4) // SECTOR) * SECTOR


def new_unique_id():
    return uuid.uuid4().bytes


_ZEROS = bytes(DEFAULT_BLOCK_SIZE)


def is_zero(data):
    """Whether a bytes-like object holds only zero bytes.

    ``bytes.startswith`` takes any bytes-like prefix and compares with
    memcmp, without copying it (comparing memoryviews goes item by item,
    and slicing to ``bytes`` first costs a copy: 7x slower).
    """
    view = memoryview(data).cast('B')
    zeros = _ZEROS
    step = len(zeros)
    for start in range(0, len(view), step):
        if not zeros.startswith(view[start:start + step]):
            return False
    return True
