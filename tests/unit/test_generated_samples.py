"""Generated files in etc/ must match what the code generates today."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _generate(tmp_path, tool, config, sample):
    out = tmp_path / Path(sample).name
    subprocess.run([str(BIN / tool), '--config-file', str(ROOT / config),
                    '--output-file', str(out)], check=True, cwd=ROOT)
    return out.read_text()


def test_config_sample_matches_code(tmp_path):
    generated = _generate(tmp_path, 'oslo-config-generator',
                          'etc/oslo-config-generator/rax-glance.conf',
                          'etc/rax-glance.conf.sample')
    checked_in = (ROOT / 'etc/rax-glance.conf.sample').read_text()
    assert generated == checked_in, (
        'etc/rax-glance.conf.sample is stale: run `tox -e genconfig` '
        '(.venv/bin/oslo-config-generator --config-file '
        'etc/oslo-config-generator/rax-glance.conf) and commit the result')
