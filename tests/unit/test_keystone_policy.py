"""etc/keystone-policy.yaml against every rule Keystone 30 registers today (drift-free: a rule
Keystone adds or changes is checked too). The check runs in Keystone's own virtualenv
(.venv-keystone, made by tools/bootstrap), since Keystone is not installed beside Glance."""

import json
import subprocess
from pathlib import Path

import pytest

from rax_glance.devstack import keystone

ROOT = Path(__file__).resolve().parents[2]
CHECK = Path(__file__).with_name('keystone_policy_check.py')
OVERRIDE = ROOT / 'etc' / 'keystone-policy.yaml'


def _check(policy_file):
    python = keystone.venv_dir() / 'bin' / 'python'
    out = subprocess.run([str(python), str(CHECK), str(policy_file)], capture_output=True,
                         text=True, check=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope='module')
def with_override():
    return _check(OVERRIDE)


def test_project_scoped_admin_gets_nothing_a_member_does_not(with_override):
    assert with_override['rules'] > 150
    assert with_override['admin_beyond_member'] == []


def test_the_cloud_admin_keeps_identity_administration(with_override):
    assert with_override['system_admin_create_user'] is True


def test_keystone_defaults_alone_make_a_customer_admin_a_cloud_admin(tmp_path):
    """The reason for the override (and proof the check can see the problem)."""
    empty = tmp_path / 'empty.yaml'
    empty.write_text('{}\n')
    beyond = _check(empty)['admin_beyond_member']
    for rule in ('identity:create_user', 'identity:create_grant', 'identity:create_project',
                 'identity:update_user', 'identity:create_system_grant_for_user'):
        assert rule in beyond


def test_override_is_shipped_as_a_data_file():
    setup_cfg = (ROOT / 'setup.cfg').read_text()
    assert 'etc/keystone-policy.yaml' in setup_cfg
