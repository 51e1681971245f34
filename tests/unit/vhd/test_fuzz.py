"""Bounded fuzzing: mutated headers, BATs and tar members.

Whatever the mutation, the engine may only raise the typed errors of
``rax_glance.errors``: no other exception, no hang (pytest-timeout), and
no memory growth (tracemalloc peak).  Seeded, so failures reproduce.
"""

import gzip
import io
import random
import struct
import tarfile
import tracemalloc

import pytest

from rax_glance import errors
from rax_glance import ova
from rax_glance.vhd import content
from rax_glance.vhd import reader
from tests.unit.vhd import builder

MIB = 1 << 20
ROUNDS = 300
PEAK_LIMIT = 48 * MIB

INTERESTING = [0, 1, 0x1FF, 0x200, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE,
               0xFFFFFFFF]


def _seed_images():
    dynamic = builder.Dynamic(5 * MIB)
    dynamic.write(0, b'\x11' * 4096)
    dynamic.write(4 * MIB, b'\x22' * 8192)
    small_blocks = builder.Dynamic(3 * MIB, block_size=512 * 1024)
    small_blocks.write(MIB, b'\x33' * 4096)
    return [dynamic.build(), small_blocks.build(),
            builder.fixed(b'\x44' * 8192 + bytes(MIB))]


def _fix_checksums(data):
    out = bytearray(data)
    for start in (0, len(out) - 512):
        if start >= 0 and out[start:start + 8] == b'conectix':
            struct.pack_into('>I', out, start + 64, builder.vhd_checksum(
                out[start:start + 512], 64))
    if out[512:520] == b'cxsparse':
        struct.pack_into('>I', out, 512 + 36, builder.vhd_checksum(
            out[512:1536], 36))
    return bytes(out)


def mutate(rng, data):
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        region = rng.choice([(0, 2048), (2048, 4096),
                             (len(out) - 512, len(out))])
        at = rng.randrange(max(region[0], 0), max(region[1], 1))
        at = min(at, len(out) - 4) & ~3 if choice < 0.5 else at
        if choice < 0.5:
            struct.pack_into('>I', out, at, rng.choice(INTERESTING))
        elif choice < 0.9:
            out[min(at, len(out) - 1)] = rng.randrange(256)
        elif choice < 0.95:
            del out[rng.randrange(len(out)):]
        else:
            out += bytes(rng.choice([1, 511, 512, 4096]))
    if rng.random() < 0.7:
        out = bytearray(_fix_checksums(out))
    return bytes(out)


def exercise(data):
    """Every way the engine reads a VHD."""
    stream = reader.StreamReader(io.BytesIO(data), len(data))
    for _ in stream.extents():
        pass
    source = content.content_from_stream(io.BytesIO(data), len(data), 'vhd')
    out = content.dynamic_stream(source)
    while out.read(1 << 20):
        pass
    reader.VHDFile(io.BytesIO(data), len(data), name='fuzz')


@pytest.mark.timeout(120)
def test_mutated_vhds_raise_only_typed_errors():
    rng = random.Random(20261128)
    seeds = _seed_images()
    outcomes = {'ok': 0}
    tracemalloc.start()
    try:
        for _ in range(ROUNDS):
            data = mutate(rng, rng.choice(seeds))
            try:
                exercise(data)
                outcomes['ok'] += 1
            except errors.ImageError as exc:
                outcomes[exc.code] = outcomes.get(exc.code, 0) + 1
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < PEAK_LIMIT
    # The mutations reach past the first checks.
    assert len(outcomes) >= 3, outcomes


def _package(members):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode='w', format=tarfile.GNU_FORMAT) as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return raw.getvalue()


@pytest.mark.timeout(120)
def test_mutated_packages_raise_only_typed_errors(tmp_path):
    rng = random.Random(5)
    base = builder.Dynamic(3 * MIB)
    base.write(0, b'\x55' * 4096)
    leaf = builder.Dynamic(3 * MIB, disk_type=4, parent=base)
    leaf.write(MIB, b'\x66' * 4096)
    tar = _package([('./1.vhd', base.build()), ('./0.vhd', leaf.build())])
    header_offsets = [0, 512 + len(base.build())]
    tracemalloc.start()
    try:
        for _ in range(ROUNDS // 3):
            data = bytearray(tar)
            for _ in range(rng.randint(1, 3)):
                start = rng.choice(header_offsets)
                at = start + rng.choice([0, 1, 99, 124, 130, 135, 148, 156,
                                         157, 257, 345, rng.randrange(512)])
                data[at] = rng.randrange(256)
            if rng.random() < 0.7:
                # Fix the tar checksums so the mutation reaches deeper.
                for start in header_offsets:
                    block = data[start:start + 512]
                    block[148:156] = b' ' * 8
                    block[148:156] = b'%06o\0 ' % sum(block)
                    data[start:start + 512] = block
            package = gzip.compress(bytes(data), compresslevel=1)
            if rng.random() < 0.2:
                package = package[:rng.randrange(len(package))]
            for action in (ova.check_package,
                           lambda f: _export(f, tmp_path)):
                try:
                    action(io.BytesIO(package))
                except errors.ImageError:
                    pass
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < PEAK_LIMIT


def _export(fileobj, tmp_path):
    stream = ova.export_stream(fileobj, tmpdir=str(tmp_path))
    while stream.read(1 << 20):
        pass


def test_tar_of_zeros_only_is_refused():
    with pytest.raises(errors.PackageError):
        ova.check_package(io.BytesIO(gzip.compress(bytes(1024))))
