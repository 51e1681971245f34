"""`pip install .` works from a copy of the tree without git metadata (issue 12 item 5)."""

import configparser
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _tracked_files():
    out = subprocess.run(['git', 'ls-files', '-z'], cwd=ROOT, capture_output=True, check=True)
    return [name for name in out.stdout.decode().split('\0') if name]


def test_wheel_builds_without_git_metadata(tmp_path):
    tree = tmp_path / 'rax-glance'
    for name in _tracked_files():
        src = ROOT / name
        if src.is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, tree / name)
    assert not (tree / '.git').exists()
    env = {k: v for k, v in os.environ.items()
           if k not in ('PBR_VERSION', 'OSLO_PACKAGE_VERSION')}
    # Outside any git repository, so pbr cannot find one above the copy either.
    env['GIT_CEILING_DIRECTORIES'] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--disable-pip-version-check',
         '-q', '-w', str(tmp_path / 'dist'), str(tree)],
        capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / 'setup.cfg')
    version = cfg.get('metadata', 'version')
    wheels = list((tmp_path / 'dist').glob('rax_glance-*.whl'))
    assert [w.name for w in wheels] == ['rax_glance-%s-py3-none-any.whl' % version]
    names = zipfile.ZipFile(wheels[0]).namelist()
    data = [n for n in names if '.data/data/etc/rax-glance/' in n]
    assert {Path(n).name for n in data} >= {'glance-api-paste.ini', 'policy.yaml',
                                           'property-protections.conf',
                                           'keystone-policy.yaml', 'rax-glance.conf.sample'}
