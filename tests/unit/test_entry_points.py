"""Every entry point the bundle declares loads through stevedore/importlib.metadata."""

from importlib import metadata

import pytest
import stevedore

DIST = metadata.distribution('rax-glance')
ENTRY_POINTS = [(ep.group, ep.name) for ep in DIST.entry_points]


def test_bundle_declares_entry_points():
    assert ('console_scripts', 'rax-glance-devstack') in ENTRY_POINTS


@pytest.mark.parametrize('group,name', ENTRY_POINTS)
def test_entry_point_loads(group, name):
    manager = stevedore.DriverManager(namespace=group, name=name, invoke_on_load=False)
    assert manager.driver is not None
