"""Fixtures that start a real Swift and a real glance-api with the bundle (session scope).

Nothing here is mocked: the stack is rax_glance.devstack, the same code the README's demo
runs. `RAX_GLANCE_TEST_DB=postgresql` runs the shared stack on PostgreSQL instead of sqlite.
"""

import os

import pytest

from rax_glance.devstack.stack import DevStack
from tests.functional import clients

# 64 MiB instead of 40 GiB, so tests reach the physical size limit (609) with a small file;
# the virtual size limit (413) keeps the documented 40 GB.
TEST_GLANCE_CONFIG = {'rax_tasks': {'max_physical_size_gb': '0.0625'}}
# Token lifetime of the Keystone stack: short, so a task can outlive the token it was made with.
KEYSTONE_TOKEN_SECONDS = 45


# Session stacks that are expensive to start. tools/test runs the functional tests on two
# pytest-xdist workers; the scheduler below sends every module of one group to the same worker,
# so each of these stacks starts once, and other tests go by module (module fixtures start once).
# xdist's own `--dist loadgroup` cannot do this under pytest 9 (it renames node ids through an
# attribute pytest 9 no longer reads), hence the scheduler hook.
SHARED_STACK_MODULES = {
    'keystone_devstack': ('test_keystone_stack', 'test_cloud_image_cli_keystone'),
    'pg_devstack': ('test_tasks_bounds', 'test_tasks_concurrency'),
}
_GROUP_OF_MODULE = {module: fixture for fixture, modules in SHARED_STACK_MODULES.items()
                    for module in modules}


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class SharedStackScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            path = nodeid.split('::', 1)[0]
            return _GROUP_OF_MODULE.get(os.path.splitext(os.path.basename(path))[0], path)

    return SharedStackScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    """A module that uses a shared stack must be listed in SHARED_STACK_MODULES, or under xdist
    it would start a second copy of that stack on the other worker."""
    for item in items:
        module = item.module.__name__.rsplit('.', 1)[-1]
        for fixture, modules in SHARED_STACK_MODULES.items():
            if fixture in item.fixturenames and module not in modules:
                raise pytest.UsageError(
                    f'{item.nodeid} uses {fixture}: add its module to SHARED_STACK_MODULES in '
                    'tests/functional/conftest.py')


def _start(tmp_path_factory, name, db):
    dev = DevStack(tmp_path_factory.mktemp(name))
    try:
        info = dev.up(db=db, glance_config=TEST_GLANCE_CONFIG)
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
def pg_devstack(tmp_path_factory):
    """A second stack on PostgreSQL, for concurrency (sqlite locks under concurrent writes).
    Its cluster lives on the stack's tmpfs dir, which the `postgres` user can reach."""
    dev, info = _start(tmp_path_factory, 'pg-devstack', 'postgresql')
    yield dev, info
    dev.down()


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


@pytest.fixture(scope='session')
def keystone_devstack(tmp_path_factory):
    """A stack with a real Keystone 30 (`--auth keystone`), started once per session:
    (DevStack, description); `description['keystone']` has every persona's credentials."""
    dev = DevStack(tmp_path_factory.mktemp('keystone-devstack'))
    try:
        # Tasks run on the jobboard (one conductor) and tokens live KEYSTONE_TOKEN_SECONDS:
        # a test shows a task outliving its creator's token.
        info = dev.up(auth='keystone', glance_config=TEST_GLANCE_CONFIG, glance_workers=1,
                      conductors=1, token_expiration=KEYSTONE_TOKEN_SECONDS)
    except Exception:
        dev.down()
        raise
    yield dev, info
    dev.down()
