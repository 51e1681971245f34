"""The rax-glance-vhd operator CLI contract."""

import io
import json
import os
import shutil
import subprocess
import sys

import pytest

from rax_glance import errors
from rax_glance.cmd import vhd as cli
from rax_glance.vhd import format as fmt
from rax_glance.vhd import reader as vhd_reader
from tests.unit.test_windows import NTFS
from tests.unit.test_windows import disk as windows_disk
from tests.unit.test_windows import mbr
from tests.unit.vhd import builder
from tests.unit.vhd.helpers import stream_read

MIB = 1 << 20
QEMU_IMG = shutil.which('qemu-img')


def make_chain(tmp_path):
    base = builder.Dynamic(6 * MIB)
    base.write(0, b'\x11' * MIB)
    leaf = builder.Dynamic(6 * MIB, disk_type=4, parent=base)
    leaf.write(4096, b'\x22' * 4096)
    paths = []
    for name, disk in (('leaf.vhd', leaf), ('base.vhd', base)):
        (tmp_path / name).write_bytes(disk.build())
        paths.append(str(tmp_path / name))
    expected = bytearray(6 * MIB)
    expected[:MIB] = b'\x11' * MIB
    expected[4096:8192] = b'\x22' * 4096
    return paths, bytes(expected)


@pytest.fixture
def good_vhd(tmp_path):
    disk = builder.Dynamic(6 * MIB)
    disk.write(2 * MIB, b'\x33' * MIB)
    path = tmp_path / 'good.vhd'
    path.write_bytes(disk.build())
    return path


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_check_valid_json(capsys, good_vhd):
    code, out, _ = run(capsys, 'check', '--json', good_vhd)
    assert code == 0
    result = json.loads(out)
    assert result['valid'] is True and result['virtual_size'] == 6 * MIB


def test_check_invalid_json_shape(capsys, good_vhd, tmp_path):
    data = bytearray(good_vhd.read_bytes())
    data[68:84] = bytes(16)
    data[-512 + 68:-512 + 84] = bytes(16)
    for start in (0, len(data) - 512):
        data[start + 64:start + 68] = builder.vhd_checksum(
            data[start:start + 512], 64).to_bytes(4, 'big')
    bad = tmp_path / 'bad.vhd'
    bad.write_bytes(bytes(data))
    code, out, _ = run(capsys, 'check', '--json', bad)
    assert code == 1
    result = json.loads(out)
    assert result['valid'] is False and result['code'] == 614
    assert result['message'] == ('The image cannot be imported. The internal '
                                 'UUID of the VHD is all zeros.')
    code, out, _ = run(capsys, 'check', bad)
    assert code == 1 and '614' in out


def test_check_limits_and_windows(capsys, tmp_path, good_vhd):
    code, out, _ = run(capsys, 'check', '--json', '--max-virtual-size',
                       '0.001', good_vhd)
    assert code == 1 and json.loads(out)['code'] == 413
    win = tmp_path / 'win.vhd'
    win.write_bytes(builder.fixed(windows_disk((0, mbr((0x07, 2048, 99))),
                                               (MIB, NTFS))))
    code, out, _ = run(capsys, 'check', '--json', win)
    assert code == 1 and json.loads(out)['code'] == 901
    code, out, _ = run(capsys, 'check', '--json', '--windows', 'report', win)
    assert code == 0 and json.loads(out)['windows'] is True


def test_check_differencing_and_package(capsys, tmp_path):
    paths, _ = make_chain(tmp_path)
    code, out, _ = run(capsys, 'check', '--json', paths[0])
    assert json.loads(out)['code'] == 721 and code == 1
    code, out, _ = run(capsys, 'check', '--json', '--allow-differencing',
                       paths[0])
    assert code == 0
    package = tmp_path / 'chain.tgz'
    assert run(capsys, 'pack', package, *paths)[0] == 0
    code, out, _ = run(capsys, 'check', '--json', package)
    assert code == 0 and json.loads(out)['members'] == ['0.vhd', '1.vhd']


def test_inspect(capsys, good_vhd):
    code, out, _ = run(capsys, 'inspect', '--json', good_vhd)
    info = json.loads(out)
    assert code == 0
    assert info['footer']['disk_type'] == 'dynamic'
    assert info['header']['block_size'] == 2 * MIB
    assert info['bat']['allocated_blocks'] == 1
    code, out, _ = run(capsys, 'inspect', good_vhd)
    assert 'cxsparse' in out


@pytest.mark.parametrize('target', ['raw', 'vhd-dynamic', 'vhd-fixed'])
def test_convert(capsys, tmp_path, good_vhd, target):
    expected, _ = stream_read(good_vhd.read_bytes())
    out = tmp_path / 'out'
    assert run(capsys, 'convert', '--to', target, good_vhd, out)[0] == 0
    if target == 'raw':
        assert out.read_bytes() == expected
    else:
        raw, stream = stream_read(out.read_bytes())
        assert raw == expected
        assert stream.is_fixed == (target == 'vhd-fixed')
        if QEMU_IMG:
            back = tmp_path / 'back.raw'
            subprocess.run([QEMU_IMG, 'convert', '-f', 'vpc', '-O', 'raw',
                            str(out), str(back)], check=True)
            assert back.read_bytes() == expected
    # raw input is detected and converts back
    again = tmp_path / 'again.vhd'
    raw_in = tmp_path / 'in.raw'
    raw_in.write_bytes(expected)
    assert run(capsys, 'convert', '--to', 'vhd-dynamic', raw_in, again)[0] == 0
    assert stream_read(again.read_bytes())[0] == expected


def test_coalesce_pack_unpack(capsys, tmp_path):
    paths, expected = make_chain(tmp_path)
    merged = tmp_path / 'merged.vhd'
    assert run(capsys, 'coalesce', merged, *paths)[0] == 0
    assert stream_read(merged.read_bytes())[0] == expected
    package = tmp_path / 'p.tgz'
    assert run(capsys, 'pack', package, *paths)[0] == 0
    code, out, _ = run(capsys, 'unpack', package, tmp_path / 'x')
    assert code == 0 and out.split() == [str(tmp_path / 'x' / '0.vhd'),
                                         str(tmp_path / 'x' / '1.vhd')]
    converted = tmp_path / 'from-package.raw'
    assert run(capsys, 'convert', '--to', 'raw', package, converted)[0] == 0
    assert converted.read_bytes() == expected


def test_coalesce_broken_chain_exit_1(capsys, tmp_path):
    paths, _ = make_chain(tmp_path)
    code, _, err = run(capsys, 'coalesce', tmp_path / 'o.vhd', paths[0],
                       paths[0])
    assert code == 1 and '112' in err


def test_usage_errors_exit_2(capsys, tmp_path):
    code, _, err = run(capsys, 'check', tmp_path / 'missing.vhd')
    assert code == 2
    with pytest.raises(SystemExit) as info:
        cli.main(['convert', '--to', 'qcow2', 'a', 'b'])
    assert info.value.code == 2


def test_console_script_pipes(tmp_path, good_vhd):
    """``-`` for stdin/stdout, through the installed console script."""
    script = os.path.join(os.path.dirname(sys.executable), 'rax-glance-vhd')
    if not os.path.exists(script):
        pytest.skip('console script not installed (run tools/bootstrap)')
    expected, _ = stream_read(good_vhd.read_bytes())
    with open(good_vhd, 'rb') as stdin:
        proc = subprocess.run(
            'cat | %s convert --to raw - -' % script, shell=True,
            stdin=stdin, capture_output=True, check=True)
    assert proc.stdout == expected
    assert proc.stderr == b''           # no progress bar without a TTY
    proc = subprocess.run([script, 'check', '--json', '-'],
                          input=good_vhd.read_bytes(), capture_output=True)
    assert proc.returncode == 0 and json.loads(proc.stdout)['valid']


def test_progress_bar_only_on_tty():
    class Stream:
        def __init__(self, tty):
            self.tty = tty
            self.text = ''

        def isatty(self):
            return self.tty

        def write(self, text):
            self.text += text

        def flush(self):
            pass

    for tty in (True, False):
        stream = Stream(tty)
        bar = cli.Progress(100, 'x', stream)
        bar.update(50)
        bar.close()
        assert bool(stream.text) is tty


def test_closed_pipe_ends_quietly(tmp_path, good_vhd):
    """`... | head` closes the pipe early: no traceback, no error text, SIGPIPE's status."""
    script = os.path.join(os.path.dirname(sys.executable), 'rax-glance-vhd')
    if not os.path.exists(script):
        pytest.skip('console script not installed (run tools/bootstrap)')
    proc = subprocess.run(
        ['bash', '-c', '"$0" convert --to raw "$1" - | head -c 1 >/dev/null; '
                       'echo "${PIPESTATUS[0]}"', script, str(good_vhd)],
        capture_output=True, text=True, check=True)
    assert proc.stderr == ''
    assert proc.stdout.strip() == str(cli.EXIT_BROKEN_PIPE)


# -- issue 14: check and convert read VHD files by position ------------------

def _sparse_fixed(tmp_path, size=8 * MIB):
    """A fixed VHD file whose middle is a hole of the file system."""
    data = bytearray(size)
    data[:4096] = b'\x44' * 4096
    data[size - MIB:size - MIB + 4096] = b'\x55' * 4096
    image = builder.fixed(bytes(data))
    path = tmp_path / 'sparse-fixed.vhd'
    with open(path, 'wb') as f:
        f.write(image[:4096])
        f.seek(size - MIB)
        f.write(image[size - MIB:])
    assert path.read_bytes() == image
    return path, bytes(data)


def test_file_input_reader_skips_holes_and_reads_the_same(tmp_path):
    path, expected = _sparse_fixed(tmp_path)
    size = os.path.getsize(path)
    with open(path, 'rb') as f:
        reader = vhd_reader.StreamReader(f, size, file_input=True)
        seen = bytearray(len(expected))
        offsets = []
        for offset, data in reader.extents():
            seen[offset:offset + len(data)] = data
            offsets.append((offset, len(data)))
        assert bytes(seen) == expected
        # The hole between 4 KiB and 7 MiB was never read.
        assert all(offset + length <= 4096 or offset >= 4096
                   for offset, length in offsets)
        assert sum(length for _, length in offsets) < 3 * MIB
        assert f.tell() == 0          # read by position only
    assert stream_read(path.read_bytes())[0] == expected


def test_file_input_reader_refuses_what_the_stream_refuses(tmp_path):
    path, _ = _sparse_fixed(tmp_path)
    image = bytearray(path.read_bytes())
    image[-512 + 64:-512 + 68] = b'\0\0\0\0'       # footer checksum
    bad = tmp_path / 'bad.vhd'
    bad.write_bytes(image)
    with open(bad, 'rb') as f, pytest.raises(errors.ImageError) as exc:
        vhd_reader.StreamReader(f, len(image), file_input=True).validate()
    with pytest.raises(type(exc.value)):
        stream_read(bytes(image))
    # A file that grew after its size was taken is refused too.
    with open(path, 'rb') as f, pytest.raises(errors.ImageError):
        vhd_reader.StreamReader(f, os.path.getsize(path) - 512,
                                file_input=True).validate()


def test_convert_to_raw_sparse_fixed_and_out_of_order_dynamic(capsys,
                                                              tmp_path):
    path, expected = _sparse_fixed(tmp_path)
    out = tmp_path / 'out.raw'
    assert run(capsys, 'convert', '--to', 'raw', path, out)[0] == 0
    assert out.read_bytes() == expected
    assert os.stat(out).st_blocks * 512 < 2 * MIB      # zeros stay holes
    # More blocks than writes in flight, stored in reverse order, partly
    # set bitmaps: recycled read buffers must not leak into the output.
    disk = builder.Dynamic(24 * MIB)
    for index in range(12):
        disk.write(index * 2 * MIB, bytes([index + 1]) * MIB)
        disk.write(index * 2 * MIB + MIB + 4096, bytes([0xA0 + index]) * 512)
    disk.order = list(reversed(range(12)))
    vhd = tmp_path / 'reversed.vhd'
    vhd.write_bytes(disk.build())
    assert run(capsys, 'convert', '--to', 'raw', vhd, out)[0] == 0
    assert out.read_bytes() == stream_read(vhd.read_bytes())[0]
    if QEMU_IMG:
        back = tmp_path / 'qemu.raw'
        subprocess.run([QEMU_IMG, 'convert', '-f', 'vpc', '-O', 'raw',
                        str(vhd), str(back)], check=True)
        assert back.read_bytes() == out.read_bytes()


def test_convert_to_raw_bad_inputs_exit_1_without_traceback(capsys,
                                                            tmp_path):
    paths, _ = make_chain(tmp_path)
    out = tmp_path / 'out.raw'
    code, _, err = run(capsys, 'convert', '--to', 'raw', paths[0], out)
    assert code == 1 and 'Traceback' not in err
    assert 'parent' in err
    assert not out.exists()             # refused before the output exists
    disk = builder.Dynamic(6 * MIB)
    disk.write(0, b'\x66' * MIB)
    data = disk.build()
    truncated = tmp_path / 'truncated.vhd'
    truncated.write_bytes(data[:-(MIB // 2)])
    code, _, err = run(capsys, 'convert', '--to', 'raw', truncated, out)
    assert code == 1 and 'Traceback' not in err
    code, _, err = run(capsys, 'check', truncated)
    assert code == 1 and 'Traceback' not in err


def test_check_by_position_matches_streamed_check(capsys, tmp_path):
    path, _ = _sparse_fixed(tmp_path)
    code, out, _ = run(capsys, 'check', '--json', path)
    assert code == 0
    by_position = json.loads(out)
    with open(path, 'rb') as f:
        streamed = cli._check_vhd(f, os.path.getsize(path),
                                  cli.validate.Limits(), 'reject')
    assert by_position == dict(valid=True, **streamed)
    # A Windows boot sector after a hole is still found.
    windows = windows_disk((0, mbr((0x83, 2048, 8192))),
                           (2048 * 512, NTFS), size=8 * MIB)
    image = builder.fixed(windows)
    win = tmp_path / 'win.vhd'
    with open(win, 'wb') as f:
        f.write(image[:512])
        f.seek(2048 * 512)
        f.write(image[2048 * 512:])
    code, out, _ = run(capsys, 'check', '--json', win)
    assert code == 1 and json.loads(out)['code'] == 901


def test_is_zero_on_all_shapes():
    assert fmt.is_zero(b'') and fmt.is_zero(bytes(5 * MIB + 3))
    for size in (1, 511, 2 * MIB, 2 * MIB + 1, 5 * MIB):
        for at in (0, size // 2, size - 1):
            data = bytearray(size)
            data[at] = 1
            assert not fmt.is_zero(data)
            assert not fmt.is_zero(memoryview(data))
    assert fmt.is_zero(memoryview(bytes(4 * MIB)).cast('I'))


def test_read_ahead_keeps_order_errors_and_stops_early():
    import threading

    def items(fail_at=None):
        for n in range(50):
            if n == fail_at:
                raise errors.StructureError('broken at %d' % n, n)
            yield n, bytes([n]) * 512

    assert [n for n, _ in cli._read_ahead(items())] == list(range(50))
    seen = []
    with pytest.raises(errors.StructureError, match='broken at 7'):
        for n, _ in cli._read_ahead(items(fail_at=7)):
            seen.append(n)
    assert seen == list(range(7))
    before = threading.active_count()
    reader = cli._read_ahead(items(), depth=2)
    assert next(reader)[0] == 0
    assert threading.active_count() == before + 1
    reader.close()                   # the producer is stopped and joined
    assert threading.active_count() == before


def test_zeros_are_written_to_devices_not_skipped():
    """Only a regular file reads zeros where a hole was skipped."""
    class Device(io.BytesIO):
        def __init__(self):
            super().__init__(b'\xee' * (6 * MIB))   # stale content
            self._null = open(os.devnull, 'wb')

        def fileno(self):
            return self._null.fileno()            # a character device

    from rax_glance.vhd import content as vhd_content
    disk = builder.Dynamic(6 * MIB)
    disk.write(2 * MIB, b'\x33' * MIB)
    data = disk.build()
    expected = stream_read(data)[0]
    source = vhd_content.content_from_stream(io.BytesIO(data), len(data),
                                             'vhd')
    device = Device()
    cli._write(vhd_content.raw_stream(source), device,
               cli.Progress(len(expected), 'convert'))
    device._null.close()
    assert device.getvalue() == expected
