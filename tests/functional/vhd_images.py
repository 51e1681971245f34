"""Small disk images for the task tests, made by the bundle's VHD writers and checked with
independent tools (the stdlib's tarfile, qemu-img when installed)."""

import gzip
import hashlib
import io
import random
import shutil
import subprocess
import tarfile
import tempfile

from rax_glance.vhd import content as vhd_content

MIB = 1024 * 1024
BLOCK = 2 * MIB


def raw_disk(size=6 * MIB, seed=1):
    """A raw disk with some data blocks, some zero blocks and a partial block."""
    rnd = random.Random(seed)
    data = bytearray(size)
    for start in range(0, size, BLOCK):
        if rnd.random() < 0.6:
            length = rnd.choice((4096, 65536, BLOCK))
            chunk = rnd.randbytes(min(length, size - start))
            data[start:start + len(chunk)] = chunk
    data[:512] = b'\x00' * 446 + rnd.randbytes(64) + b'\x55\xaa'  # an MBR, not NTFS
    return bytes(data)


def dynamic_vhd(raw):
    content = vhd_content.RawFileContent(io.BytesIO(raw), len(raw))
    return vhd_content.dynamic_stream(content).read()


def fixed_vhd(raw):
    content = vhd_content.RawFileContent(io.BytesIO(raw), len(raw))
    return vhd_content.fixed_stream(content).read()


def vhd_to_raw(vhd_bytes):
    """The disk content of a VHD, by qemu-img when present (independent), else the engine."""
    if shutil.which('qemu-img'):
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = tmp + '/in.vhd', tmp + '/out.raw'
            with open(src, 'wb') as fh:
                fh.write(vhd_bytes)
            subprocess.run(['qemu-img', 'convert', '-f', 'vpc', '-O', 'raw', src, dst],
                           check=True)
            with open(dst, 'rb') as fh:
                return fh.read()
    content = vhd_content.content_from_stream(io.BytesIO(vhd_bytes), len(vhd_bytes), 'vhd')
    return vhd_content.raw_stream(content).read()


def package_members(package):
    """{member name: bytes} of a gzipped tar (the stored XenServer package)."""
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(package)), mode='r:') as tar:
        return {m.name.lstrip('./'): tar.extractfile(m).read() for m in tar.getmembers()
                if m.isfile()}


def sha256(data):
    return hashlib.sha256(data).hexdigest()
