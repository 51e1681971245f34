"""The Keystone dev stack's setup commands (no Keystone started)."""

from rax_glance.devstack import keystone


def test_bootstrap_password_starting_with_a_dash_stays_a_value(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(keystone, 'venv_dir', lambda: tmp_path)
    server = keystone.KeystoneServer(tmp_path)
    server.port = 5000
    server.admin_password = '-looks-like-an-option'
    monkeypatch.setattr(server, '_manage', lambda logs, *args: calls.append(args))
    server.setup(tmp_path)
    bootstrap = next(args for args in calls if args[0] == 'bootstrap')
    assert '--bootstrap-password=-looks-like-an-option' in bootstrap
    assert '-looks-like-an-option' not in bootstrap
