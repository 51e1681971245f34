"""Shared helpers for the VHD engine tests."""

import io
import struct

from rax_glance.vhd import content
from rax_glance.vhd import reader
from rax_glance.vhd import validate
from tests.unit.vhd import builder


def stream_read(data, limits=None, leaf=True):
    """Validate ``data`` as a stream; returns (raw content, reader)."""
    stream = reader.StreamReader(io.BytesIO(data), len(data), limits, leaf)
    stream.open()
    size = None
    disk = {}
    for offset, chunk in stream.extents():
        disk[offset] = bytes(chunk)
    size = stream.virtual_size
    raw = bytearray(size)
    for offset, chunk in disk.items():
        raw[offset:offset + len(chunk)] = chunk
    return bytes(raw), stream


def to_raw(data, limits=None):
    source = content.content_from_stream(io.BytesIO(data), len(data), 'vhd',
                                         limits=limits)
    return content.raw_stream(source).read()


def patch(data, offset, value, checksum_at=None, struct_start=0,
          struct_len=512):
    """Overwrite bytes; optionally recompute a footer/header checksum."""
    out = bytearray(data)
    out[offset:offset + len(value)] = value
    if checksum_at is not None:
        part = out[struct_start:struct_start + struct_len]
        value = builder.vhd_checksum(part, checksum_at)
        struct.pack_into('>I', out, struct_start + checksum_at, value)
    return bytes(out)


def patch_footers(data, offset, value):
    """Change a footer field in both copies, checksums fixed."""
    out = patch(data, offset, value, 64, 0, 512)
    end = len(out) - 512
    return patch(out, end + offset, value, 64, end, 512)


def patch_header(data, offset, value, fix_checksum=True):
    return patch(data, 512 + offset, value, 36 if fix_checksum else None,
                 512, 1024)


LENIENT = validate.Limits(allow_differencing=True)
