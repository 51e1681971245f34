"""etc/policy.yaml and etc/policy.yaml.sample must match what the code generates today."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

CASES = [
    ('oslopolicy-policy-generator', 'etc/oslo-policy-generator/rax-glance.conf',
     'etc/policy.yaml'),
    ('oslopolicy-sample-generator', 'etc/oslo-policy-generator/rax-glance-sample.conf',
     'etc/policy.yaml.sample'),
]


@pytest.mark.parametrize('tool,config,checked_in', CASES)
def test_policy_file_matches_code(tmp_path, tool, config, checked_in):
    out = tmp_path / 'out.yaml'
    # A private entry-point cache: stevedore keys its cache on float32 mtimes, so a cache
    # written within two minutes of a reinstall can hide new entry points.
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / 'cache'))
    subprocess.run([str(BIN / tool), '--config-file', str(ROOT / config),
                    '--output-file', str(out)], check=True, cwd=ROOT, env=env)
    assert out.read_text() == (ROOT / checked_in).read_text(), (
        '%s is stale: run `tox -e genpolicy` (.venv/bin/%s --config-file %s) and commit it'
        % (checked_in, tool, config))
