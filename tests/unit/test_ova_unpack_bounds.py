"""Issue 10 class 7: `unpack` of a refused package leaves nothing behind, and the inflate
ratio is bounded (library, CLI flag and the export's config option)."""

import gzip
import io
import os
import tarfile

import pytest

from rax_glance import errors
from rax_glance import ova
from rax_glance.cmd import vhd as cli
from tests.unit.test_ova import read_all
from tests.unit.test_ova import regular
from tests.unit.test_ova import small_vhd
from tests.unit.test_ova import tar_gz

MIB = 1 << 20


def zero_bomb(size):
    """A package whose `0.vhd` is `size` bytes of zeros (a multiple of 1 MiB), as a
    multi-member gzip stream of about size/1000 bytes, built without inflating it."""
    info = tarfile.TarInfo('0.vhd')
    info.size = size
    header = info.tobuf(format=tarfile.GNU_FORMAT)
    one = gzip.compress(b'\0' * MIB, 9)
    return (gzip.compress(header) + one * (size // MIB)
            + gzip.compress(b'\0' * 1024))


def refused_packages():
    good = small_vhd().build()
    ok = regular('0.vhd', good)
    yield 'unexpected member', tar_gz([ok, regular('evil.sh', b'#!/bin/sh\n')])
    yield 'data after end', gzip.compress(gzip.decompress(tar_gz([ok])) + b'junk')
    yield 'truncated', tar_gz([ok, regular('1.vhd', good)])[:-200]
    yield 'chain gap', tar_gz([ok, regular('2.vhd', good)])
    yield 'duplicate', tar_gz([ok, regular('1.vhd', good), regular('1.vhd', good)])


@pytest.mark.parametrize('what,package', list(refused_packages()),
                         ids=[w for w, _ in refused_packages()])
def test_refused_package_leaves_nothing_behind(tmp_path, what, package):
    (tmp_path / 'keep.txt').write_text('mine')
    with pytest.raises(errors.PackageError):
        ova.unpack(io.BytesIO(package), str(tmp_path))
    assert os.listdir(tmp_path) == ['keep.txt'], what


def test_existing_member_is_never_replaced_and_nothing_added(tmp_path):
    good = small_vhd().build()
    (tmp_path / '1.vhd').write_bytes(b'precious')
    package = tar_gz([regular('0.vhd', good), regular('1.vhd', good)])
    with pytest.raises(errors.PackageError, match='already exists'):
        ova.unpack(io.BytesIO(package), str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ['1.vhd']
    assert (tmp_path / '1.vhd').read_bytes() == b'precious'


def test_good_package_still_unpacks_completely(tmp_path):
    good = small_vhd().build()
    package = tar_gz([regular('0.vhd', good), regular('1.vhd', good)])
    paths = ova.unpack(io.BytesIO(package), str(tmp_path))
    assert paths == [str(tmp_path / '0.vhd'), str(tmp_path / '1.vhd')]
    assert sorted(os.listdir(tmp_path)) == ['0.vhd', '1.vhd']
    assert (tmp_path / '0.vhd').read_bytes() == good


def test_default_ratio_refuses_a_1mib_package_inflating_to_1gib():
    package = zero_bomb(1024 * MIB)
    assert len(package) < 2 * MIB
    with pytest.raises(errors.PackageError, match='times its size'):
        read_all(package)


def test_ratio_is_configurable_and_0_is_unbounded():
    package = zero_bomb(64 * MIB)
    with pytest.raises(errors.PackageError, match='10 times its size'):
        read_all(package, ova.PackageLimits(max_inflate_ratio=10))
    assert len(read_all(package, ova.PackageLimits(max_inflate_ratio=0))['0.vhd']) == 64 * MIB
    assert len(read_all(package)['0.vhd']) == 64 * MIB      # 64:1 is under the default


def test_real_images_pass_the_default_ratio(tmp_path):
    disk = small_vhd(size=64 * MIB)
    package = tar_gz([regular('0.vhd', disk.build())])
    assert ova.unpack(io.BytesIO(package), str(tmp_path)) == [str(tmp_path / '0.vhd')]


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_unpack_ratio_flag_and_nothing_left(capsys, tmp_path):
    package = tmp_path / 'bomb.tgz'
    package.write_bytes(zero_bomb(64 * MIB))
    target = tmp_path / 'out'
    code, out, err = run(capsys, 'unpack', '--max-inflate-ratio', '10', package, target)
    assert code == cli.EXIT_INVALID and '10 times its size' in err and out == ''
    assert not target.exists()          # the directory it made is gone too
    target.mkdir()
    code, _, _ = run(capsys, 'unpack', '--max-inflate-ratio', '10', package, target)
    assert code == cli.EXIT_INVALID and os.listdir(target) == []
    code, out, _ = run(capsys, 'unpack', '--max-inflate-ratio', '0', package, target)
    assert code == 0 and out.split() == [str(target / '0.vhd')]


@pytest.mark.parametrize('value', ['-1', 'x'])
def test_cli_unpack_rejects_bad_ratio(capsys, tmp_path, value):
    with pytest.raises(SystemExit) as exc:
        cli.main(['unpack', '--max-inflate-ratio', value, str(tmp_path / 'p'),
                  str(tmp_path / 'o')])
    assert exc.value.code == 2
    assert not (tmp_path / 'o').exists()


def test_cli_unpack_refused_package_leaves_nothing(capsys, tmp_path):
    package = tmp_path / 'p.tgz'
    package.write_bytes(dict(refused_packages())['unexpected member'])
    target = tmp_path / 'out'
    code, _, err = run(capsys, 'unpack', package, target)
    assert code == cli.EXIT_INVALID and 'unexpected member' in err
    assert not target.exists()


@pytest.mark.parametrize('engine', ova.ENGINES)
def test_bundle_packages_of_an_all_zero_fixed_disk_pass_the_default_ratio(tmp_path, engine):
    """The bundle's own packages (what imports store) stay far below the default."""
    from tests.unit.vhd import builder

    if engine == 'isal' and ova.isal_zlib is None:
        pytest.skip('ISA-L not installed')
    disk = tmp_path / 'zero.vhd'
    disk.write_bytes(builder.fixed(b'\0' * (256 * MIB)))
    package = io.BytesIO()
    ova.pack_files([str(disk)], package, engine=engine)
    ratio = (256 * MIB) / len(package.getvalue())
    assert ratio < ova.DEFAULT_MAX_INFLATE_RATIO
    assert len(read_all(package.getvalue())['0.vhd']) == 256 * MIB + 512
