"""Fixtures that start a real Swift and a real glance-api with the bundle (session scope).

Nothing here is mocked: the stack is rax_glance.devstack, the same code the README's demo
runs. `RAX_GLANCE_TEST_DB=postgresql` runs the shared stack on PostgreSQL instead of sqlite.
"""

import os
import shutil
import tempfile

import pytest

from rax_glance.devstack.stack import DevStack
from tests.functional import clients


def _start(tmp_path_factory, name, db):
    dev = DevStack(tmp_path_factory.mktemp(name))
    try:
        info = dev.up(db=db)
    except Exception:
        dev.down()
        raise
    return dev, info


@pytest.fixture(scope='session')
def devstack(tmp_path_factory):
    """The shared stack: (DevStack, description)."""
    dev, info = _start(tmp_path_factory, 'devstack',
                       os.environ.get('RAX_GLANCE_TEST_DB', 'sqlite'))
    yield dev, info
    dev.down()


@pytest.fixture(scope='session')
def pg_devstack():
    """A second stack on PostgreSQL, for concurrency (sqlite locks under concurrent writes)."""
    # Not under pytest's tmp dir: that is private (0700) to us, and when we are root the
    # cluster runs as the `postgres` user, which must reach its data directory.
    state_dir = tempfile.mkdtemp(prefix='rax-glance-pg-devstack-')
    os.chmod(state_dir, 0o755)
    dev = DevStack(state_dir)
    try:
        info = dev.up(db='postgresql')
    except Exception:
        dev.down()
        raise
    yield dev, info
    dev.down()
    shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture(scope='session')
def stack_info(devstack):
    return devstack[1]


@pytest.fixture
def glance_factory(stack_info):
    """glance_factory(project, roles=..., user=...) -> a Glance client with that identity."""
    made = []

    def make(project=None, roles=clients.CUSTOMER_ADMIN_ROLES, user=None):
        client = clients.GlanceClient(stack_info['glance']['endpoint'],
                                      project or clients.new_project(), roles, user)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def swift_factory(stack_info):
    """swift_factory(project) -> swiftclient Connection on that project's account."""
    return lambda project: clients.project_swift(stack_info, project)
