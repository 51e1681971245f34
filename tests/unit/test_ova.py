"""The XenServer image package: writer, bounded reader, export."""

import gzip
import io
import os
import subprocess
import tarfile
import zlib

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from rax_glance import errors
from rax_glance import ova
from rax_glance.vhd import content as vhd_content
from rax_glance.vhd import validate
from tests.unit.vhd import builder
from tests.unit.vhd.helpers import stream_read

MIB = 1 << 20


def small_vhd(size=6 * MIB, fill=b'\x11', disk_type=3, parent=None):
    disk = builder.Dynamic(size, disk_type=disk_type, parent=parent)
    disk.write(MIB, fill * 8192)
    return disk


def tar_gz(members, fmt=tarfile.GNU_FORMAT):
    """A gzipped tar made by the standard library: ``(TarInfo, bytes)``."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode='w', format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return gzip.compress(raw.getvalue())


def regular(name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def read_all(package, limits=None):
    out = {}
    for member in ova.iter_members(io.BytesIO(package), limits):
        out[member.name] = member.stream.read()
    return out


# -- writer -----------------------------------------------------------------

def test_pack_single_vhd_unpacks_with_plain_tar(tmp_path):
    data = small_vhd().build()
    info = {}
    package = ova.pack_single_vhd(io.BytesIO(data), len(data), info=info)
    path = tmp_path / 'image.tgz'
    path.write_bytes(package.read())
    assert info['format'] == 'dynamic'
    listing = subprocess.run(['tar', '-tzf', str(path)], check=True,
                             capture_output=True, text=True).stdout.split()
    assert listing == ['./', './0.vhd']
    out = tmp_path / 'out'
    out.mkdir()
    subprocess.run(['tar', '-xzf', str(path), '-C', str(out)], check=True)
    assert (out / '0.vhd').read_bytes() == data


@pytest.mark.parametrize('engine,threads', [('isal', 1), ('isal', 2),
                                            ('isal', 3), ('zlib', 1)])
def test_engines_produce_gzip(engine, threads):
    disk = small_vhd()
    disk.write(3 * MIB, os.urandom(MIB) + (b'some text ' * 120000)[:MIB])
    data = disk.build()
    package = ova.pack_single_vhd(io.BytesIO(data), len(data),
                                  engine=engine, threads=threads).read()
    assert gzip.decompress(package)[1024:1024 + len(data)] == data
    assert read_all(package) == {'0.vhd': data}


def test_pack_reads_small_pieces_and_raises_typed_errors():
    data = bytearray(small_vhd().build())
    data[64] ^= 1                       # footer checksum
    package = ova.pack_single_vhd(io.BytesIO(bytes(data)), len(data))
    with pytest.raises(errors.NotVHDError):
        while package.read(1000):
            pass


def test_pack_refuses_differencing_and_limits():
    base = small_vhd()
    child = small_vhd(disk_type=4, parent=base).build()
    with pytest.raises(errors.HasParentError):
        ova.pack_single_vhd(io.BytesIO(child), len(child)).read()
    data = base.build()
    limits = validate.Limits(max_virtual_size=MIB)
    with pytest.raises(errors.VirtualSizeError):
        ova.pack_single_vhd(io.BytesIO(data), len(data), limits).read()


def test_pack_member_size_beyond_8_gib_header():
    header = ova.tar_header('./0.vhd', 9 << 30, 0)
    info = tarfile.TarInfo.frombuf(header, 'ascii', 'strict')
    assert info.size == 9 << 30


def test_pack_files_chain(tmp_path):
    base = small_vhd()
    child = small_vhd(fill=b'\x22', disk_type=4, parent=base)
    paths = []
    for name, disk in (('leaf.vhd', child), ('base.vhd', base)):
        (tmp_path / name).write_bytes(disk.build())
        paths.append(str(tmp_path / name))
    out = io.BytesIO()
    ova.pack_files(paths, out)
    members = read_all(out.getvalue())
    assert sorted(members) == ['0.vhd', '1.vhd']
    assert members['1.vhd'] == base.build()


# -- bounded reader ---------------------------------------------------------

def test_reads_gnu_tar_packages(tmp_path):
    staging = tmp_path / 'staging'
    staging.mkdir()
    data = small_vhd().build()
    (staging / '0.vhd').write_bytes(data)
    (staging / 'swap.vhd').write_bytes(b'x' * 512)
    path = tmp_path / 'p.tgz'
    subprocess.run(['tar', '-zcf', str(path), '--directory', str(staging),
                    '.'], check=True)
    assert read_all(path.read_bytes()) == {'0.vhd': data}


def test_reads_pax_headers():
    info, data = regular('./0.vhd', small_vhd().build())
    info.pax_headers = {'comment': 'x' * 300}
    package = tar_gz([(info, data)], fmt=tarfile.PAX_FORMAT)
    assert read_all(package) == {'0.vhd': data}


def _link(kind, name='0.vhd'):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = '/etc/passwd'
    return info, None


@pytest.mark.parametrize('member', [
    _link(tarfile.SYMTYPE),
    _link(tarfile.LNKTYPE),
    _link(tarfile.CHRTYPE),
    _link(tarfile.BLKTYPE),
    _link(tarfile.FIFOTYPE),
    regular('/0.vhd', b'x'),
    regular('../0.vhd', b'x'),
    regular('./a/../../0.vhd', b'x'),
    regular('sub/0.vhd', b'x'),
    regular('evil.sh', b'x'),
    regular('00.vhd', b'x'),
    regular('0.VHD', b'x'),
], ids=['symlink', 'hardlink', 'chardev', 'blockdev', 'fifo', 'absolute',
        'dotdot', 'dotdot-deep', 'subdir', 'unexpected', 'leading-zero',
        'uppercase'])
def test_refuses_bad_members(member):
    with pytest.raises(errors.PackageError):
        read_all(tar_gz([member]))


def test_refuses_gaps_duplicates_and_mixed_names():
    vhd = b'v' * 512
    for names in (['0.vhd', '2.vhd'], ['1.vhd'], ['0.vhd', '0.vhd'],
                  ['0.vhd', 'image.vhd'], ['swap.vhd']):
        package = tar_gz([regular(name, vhd) for name in names])
        with pytest.raises(errors.PackageError):
            read_all(package)


def test_member_count_cap():
    package = tar_gz([regular('%d.vhd' % n, b'') for n in range(5)])
    with pytest.raises(errors.PackageError, match='more than 4'):
        read_all(package, ova.PackageLimits(max_members=4))


def test_declared_size_cap_checked_before_reading():
    info = tarfile.TarInfo('0.vhd')
    info.size = 1 << 40
    header = info.tobuf(tarfile.GNU_FORMAT)
    package = gzip.compress(header)         # no data follows at all
    with pytest.raises(errors.PackageError, match='declares'):
        read_all(package)


def test_decompression_bomb_is_cut_short():
    package = tar_gz([regular('0.vhd', bytes(20 * MIB))])
    assert len(package) < 100 * 1024
    limits = ova.PackageLimits(max_total_size=4 * MIB)
    with pytest.raises(errors.PackageError, match='inflates'):
        read_all(package, limits)


@pytest.mark.parametrize('mangle', [
    lambda p: p[:len(p) // 2],                  # truncated gzip
    lambda p: p + b'garbage!',                  # trailing garbage
    lambda p: b'not gzip at all' + p,           # not gzip
    lambda p: b'',                              # empty
    lambda p: gzip.compress(gzip.decompress(p)[:1536]),   # no end marker
    lambda p: gzip.compress(gzip.decompress(p) + b'\x01' * 512),
], ids=['truncated', 'garbage', 'not-gzip', 'empty', 'no-end', 'after-end'])
def test_broken_streams(mangle):
    package = tar_gz([regular('0.vhd', b'v' * 1024)])
    with pytest.raises(errors.PackageError):
        read_all(mangle(package))


def test_concatenated_gzip_members_and_zero_padding():
    raw = gzip.decompress(tar_gz([regular('0.vhd', b'v' * 1024)]))
    package = gzip.compress(raw[:700]) + gzip.compress(raw[700:]) + bytes(64)
    assert read_all(package) == {'0.vhd': b'v' * 1024}


def test_bad_tar_checksum():
    raw = bytearray(gzip.decompress(tar_gz([regular('0.vhd', b'v')])))
    raw[10] ^= 0x40
    with pytest.raises(errors.PackageError, match='checksum'):
        read_all(gzip.compress(bytes(raw)))


def test_unpack_writes_only_checked_names(tmp_path):
    base = small_vhd().build()
    package = tar_gz([regular('./0.vhd', base)])
    paths = ova.unpack(io.BytesIO(package), str(tmp_path))
    assert paths == [str(tmp_path / '0.vhd')]
    assert os.listdir(tmp_path) == ['0.vhd']


# -- export -----------------------------------------------------------------

def _overlay(size, *disks):
    """Naive content of a chain given base first."""
    disk = bytearray(size)
    for d in disks:
        for index, (sectors, buf) in d.blocks.items():
            start = index * d.block_size
            for s in sectors:
                disk[start + s * 512:start + s * 512 + 512] = \
                    buf[s * 512:s * 512 + 512]
    return bytes(disk)


def test_export_single_member_streams_through(tmp_path):
    disk = small_vhd()
    package = tar_gz([regular('./0.vhd', disk.build())])
    stream = ova.export_stream(io.BytesIO(package), tmpdir=str(tmp_path))
    data = stream.read()
    assert len(data) == stream.size
    raw, _ = stream_read(data)
    assert raw == _overlay(disk.size, disk)
    assert os.listdir(tmp_path) == []           # nothing spooled


def test_export_chain_coalesces_and_cleans_up(tmp_path):
    base = small_vhd()
    middle = small_vhd(fill=b'\x22', disk_type=4, parent=base)
    middle.write(4 * MIB, b'\x33' * MIB)
    leaf = small_vhd(fill=b'\x44', disk_type=4, parent=middle)
    leaf.blocks.clear()
    leaf.write(MIB + 4096, b'\x55' * 512)
    # Members in directory order, not chain order.
    package = tar_gz([regular('./2.vhd', base.build()),
                      regular('./0.vhd', leaf.build()),
                      regular('./1.vhd', middle.build())])
    stream = ova.export_stream(io.BytesIO(package), tmpdir=str(tmp_path))
    assert len(os.listdir(tmp_path)) == 1       # the private spool dir
    data = b''.join(stream)
    assert len(data) == stream.size
    raw, _ = stream_read(data)
    assert raw == _overlay(base.size, base, middle, leaf)
    assert os.listdir(tmp_path) == []


def test_export_legacy_names(tmp_path):
    base = small_vhd()
    image = small_vhd(fill=b'\x22', disk_type=4, parent=base)
    package = tar_gz([regular('base.vhd', base.build()),
                      regular('image.vhd', image.build()),
                      regular('swap.vhd', b's' * 512)])
    data = ova.export_stream(io.BytesIO(package), str(tmp_path)).read()
    raw, _ = stream_read(data)
    assert raw == _overlay(base.size, base, image)


def test_export_fixed_member(tmp_path):
    content = os.urandom(MIB) + bytes(3 * MIB)
    package = tar_gz([regular('0.vhd', builder.fixed(content))])
    raw, _ = stream_read(ova.export_stream(io.BytesIO(package),
                                           str(tmp_path)).read())
    assert raw == content


def test_export_standalone_leaf_with_extra_member_fails(tmp_path):
    package = tar_gz([regular('0.vhd', small_vhd().build()),
                      regular('1.vhd', small_vhd().build())])
    stream = ova.export_stream(io.BytesIO(package), str(tmp_path))
    with pytest.raises(errors.PackageError):
        stream.read()


def test_export_broken_chain(tmp_path):
    base = small_vhd()
    leaf = small_vhd(disk_type=4, parent=small_vhd())
    package = tar_gz([regular('0.vhd', leaf.build()),
                      regular('1.vhd', base.build())])
    with pytest.raises(errors.ChainError):
        ova.export_stream(io.BytesIO(package), str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_check_package():
    base = small_vhd()
    leaf = small_vhd(disk_type=4, parent=base)
    package = tar_gz([regular('1.vhd', base.build()),
                      regular('0.vhd', leaf.build())])
    info = ova.check_package(io.BytesIO(package))
    assert info['members'] == ['0.vhd', '1.vhd']
    bad = tar_gz([regular('0.vhd', small_vhd(disk_type=4,
                                             parent=small_vhd()).build()),
                  regular('1.vhd', base.build())])
    with pytest.raises(errors.ChainError):
        ova.check_package(io.BytesIO(bad))


@pytest.mark.parametrize('disk_format', ['raw', 'vhd'])
def test_export_bare_images(tmp_path, disk_format):
    disk = small_vhd()
    expected = _overlay(disk.size, disk)
    data = expected if disk_format == 'raw' else builder.fixed(expected)
    stream = ova.export_image(io.BytesIO(data), len(data), 'bare',
                              disk_format, tmpdir=str(tmp_path))
    out = stream.read()
    assert len(out) == stream.size
    assert stream_read(out)[0] == expected
    assert os.listdir(tmp_path) == []       # the spool file is gone


def test_export_image_refuses_other_formats():
    with pytest.raises(errors.PackageError):
        ova.export_image(io.BytesIO(b''), 0, 'bare', 'qcow2')


def test_random_chunks_are_stored_and_still_valid_gzip():
    random_data = os.urandom(3 * MIB)
    assert ova._incompressible(random_data[:MIB])
    assert not ova._incompressible(bytes(MIB))
    assert not ova._incompressible(b'words and more words ' * 50000)
    disk = small_vhd()
    disk.write(0, random_data)
    data = disk.build()
    package = ova.pack_single_vhd(io.BytesIO(data), len(data),
                                  threads=2).read()
    assert read_all(package) == {'0.vhd': data}
    assert gzip.decompress(package)[1024:1024 + len(data)] == data


@settings(max_examples=25, deadline=None, derandomize=True)
@given(st.lists(st.binary(max_size=3000), min_size=1, max_size=4),
       st.sampled_from([1, 2]), st.integers(1, 70000))
def test_package_round_trip_any_sizes_and_read_sizes(payloads, threads,
                                                     read_size):
    """Members of any size survive pack -> bounded read, whatever the reads."""
    pumps = [('%d.vhd' % n, len(data), ova._file_pump(io.BytesIO(data),
                                                      len(data)))
             for n, data in enumerate(payloads)]
    stream = vhd_content.IterStream(
        ova._package_chunks(pumps, None, None, 0, threads))
    package = b''.join(iter(lambda: stream.read(read_size), b''))
    got = {}
    for member in ova.iter_members(io.BytesIO(package)):
        got[member.name] = b''.join(
            iter(lambda m=member: m.stream.read(read_size), b''))
    assert got == {'%d.vhd' % n: data for n, data in enumerate(payloads)}


def test_parallel_writer_uses_public_isal_api_only(monkeypatch):
    """Issue 13/14: no private ``isal_zlib._ParallelCompress``."""
    monkeypatch.delattr(ova.isal_zlib, '_ParallelCompress', raising=False)
    writer = ova._gzip_writer('isal', None, 2)
    try:
        assert isinstance(writer, ova._ParallelGzip)
    finally:
        writer.close()
    disk = small_vhd()
    disk.write(MIB, os.urandom(MIB) + (b'text and more ' * 200000)[:2 * MIB])
    data = disk.build()
    package = ova.pack_single_vhd(io.BytesIO(data), len(data),
                                  threads=2).read()
    assert read_all(package) == {'0.vhd': data}


def test_package_is_one_gzip_member_for_stream_readers():
    """tarfile's stream mode reads only the first gzip member."""
    disk = small_vhd()
    disk.write(0, (b'a text block ' * 400000)[:3 * MIB] + os.urandom(MIB))
    data = disk.build()
    package = ova.pack_single_vhd(io.BytesIO(data), len(data),
                                  threads=2).read()
    decompressor = zlib.decompressobj(31)
    decompressor.decompress(package)
    assert decompressor.eof and decompressor.unused_data == b''
    with tarfile.open(fileobj=io.BytesIO(package), mode='r|gz') as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar
                   if m.isfile()}
    assert members == {'./0.vhd': data}
