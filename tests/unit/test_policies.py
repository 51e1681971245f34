"""Cloud Images rules through oslo.policy with fake credentials: cheap and broad.

Decisions are checked twice: against the code defaults (rax_glance.policies.get_enforcer) and
against the shipped etc/policy.yaml loaded the way Glance loads it (Glance's own defaults
registered, the file on top), so both the code and the deployed artifact are covered.
"""

import configparser
import re
from pathlib import Path

import pytest
import yaml
from glance import policies as glance_policies
from oslo_config import cfg
from oslo_policy import policy

from rax_glance import policies

ROOT = Path(__file__).resolve().parents[2]
POLICY_FILE = ROOT / 'etc' / 'policy.yaml'
PROTECTIONS_FILE = ROOT / 'etc' / 'property-protections.conf'

P, OTHER = 'project-p', 'project-o'
OPS = 'operators'
ADMINS = ('identity:user-admin', 'admin', 'cloudImages:admin')
CREATOR = 'cloudImages:creator'
OBSERVERS = ('cloudImages:observer', 'observer')
OPERATOR = policies.OPERATOR_ROLE


def _conf(policy_file):
    conf = cfg.ConfigOpts()
    policy.Enforcer(conf)  # registers [oslo_policy]; the Enforcer reads policy_file at init
    conf([])
    conf.set_override('policy_file', policy_file, 'oslo_policy')
    return conf


def _code_enforcer():
    # /dev/null: no file rules, the code defaults alone.
    return policies.get_enforcer(_conf('/dev/null'))


def _glance_like_enforcer():
    enforcer = policy.Enforcer(_conf(str(POLICY_FILE)), use_conf=True, overwrite=False)
    enforcer.register_defaults(glance_policies.list_rules())
    return enforcer


@pytest.fixture(params=['code', 'shipped-file'], scope='module')
def enforcer(request):
    return _code_enforcer() if request.param == 'code' else _glance_like_enforcer()


def _creds(roles, project=P):
    # Glance lower-cases roles before policy sees them; do the same.
    return {'roles': [r.lower() for r in roles], 'project_id': project, 'user_id': 'u'}


def _image(owner=P, visibility='shared', member=None, **props):
    target = {'project_id': owner, 'owner': owner, 'visibility': visibility,
              'member_id': member}
    target.update(props)
    return target


def allowed(enforcer, rule, roles, target, project=P):
    return bool(enforcer.enforce(rule, target, _creds(roles, project)))


def who_may(enforcer, rule, target):
    """The set of single-role personas (plus multi-role ones) allowed `rule` on `target`."""
    personas = {role: [role] for role in ADMINS + (CREATOR,) + OBSERVERS}
    personas['none'] = []
    personas['member+reader'] = ['member', 'reader']
    result = {name for name, roles in personas.items() if allowed(enforcer, rule, roles, target)}
    if allowed(enforcer, rule, [OPERATOR], target, project=OPS):
        result.add('operator')
    return result


EVERY_ADMIN = set(ADMINS) | {'operator'}
CREATORS = EVERY_ADMIN | {CREATOR}
READERS = CREATORS | set(OBSERVERS)
OPERATOR_ONLY = {'operator'}

OWN = _image()
OWN_LIST = {'project_id': P}

CASES = [
    ('get_images', OWN_LIST, READERS),
    ('get_image', OWN, READERS),
    ('get_image', _image(owner=OTHER, visibility='private'), OPERATOR_ONLY),
    ('get_image', _image(owner=OTHER, visibility='public'), READERS),
    ('get_image', _image(owner=OTHER, visibility='shared', member=P), READERS),
    ('add_image', {'project_id': P, 'owner': P, 'visibility': 'shared'}, CREATORS),
    ('add_image', {'project_id': OTHER, 'owner': OTHER, 'visibility': 'shared'}, OPERATOR_ONLY),
    ('modify_image', OWN, EVERY_ADMIN),
    ('modify_image', _image(owner=OTHER, visibility='public'), OPERATOR_ONLY),
    ('modify_image', _image(owner=OTHER, member=P), OPERATOR_ONLY),
    ('delete_image', OWN, EVERY_ADMIN),
    ('delete_image', _image(owner=OTHER, member=P), OPERATOR_ONLY),
    # Customer data enters only through the import task (VHD checks, no Windows disks).
    ('upload_image', OWN, OPERATOR_ONLY),
    ('upload_image', _image(visibility='private'), OPERATOR_ONLY),
    ('upload_image', _image(owner=OTHER, member=P), OPERATOR_ONLY),
    ('download_image', OWN, EVERY_ADMIN),
    ('download_image', _image(**{'com.rackspace__1__options': '0'}), EVERY_ADMIN),
    ('download_image', _image(**{'com.rackspace__1__options': '1'}), OPERATOR_ONLY),
    ('download_image', _image(**{'com.rackspace__1__options': ''}), OPERATOR_ONLY),
    ('download_image', _image(**{'com.rackspace__1__options': '00'}), OPERATOR_ONLY),
    ('download_image', _image(**{'com.rackspace__1__options': '2'}), OPERATOR_ONLY),
    ('download_image', _image(owner=OTHER, visibility='public'), OPERATOR_ONLY),
    ('download_image', _image(owner=OTHER, member=P), OPERATOR_ONLY),
    ('download_from_store', _image(**{'com.rackspace__1__options': '1'}), OPERATOR_ONLY),
    ('download_from_store', OWN, EVERY_ADMIN),
    ('publicize_image', OWN, OPERATOR_ONLY),
    ('communitize_image', OWN, OPERATOR_ONLY),
    ('deactivate', OWN, OPERATOR_ONLY),
    ('reactivate', OWN, OPERATOR_ONLY),
    ('copy_image', OWN, OPERATOR_ONLY),
    ('set_image_location', OWN, OPERATOR_ONLY),
    ('delete_image_location', OWN, OPERATOR_ONLY),
    ('add_image_location', OWN, OPERATOR_ONLY),
    ('get_image_location', OWN, OPERATOR_ONLY),
    ('fetch_image_location', OWN, OPERATOR_ONLY),
    ('get_members', OWN, READERS),
    ('get_member', _image(owner=OTHER, member=P), READERS),
    ('get_members', _image(owner=OTHER, visibility='private'), OPERATOR_ONLY),
    ('add_member', OWN, CREATORS),
    ('add_member', _image(owner=OTHER, member=P), OPERATOR_ONLY),
    ('delete_member', OWN, EVERY_ADMIN),
    ('modify_member', _image(owner=OTHER, member=P), EVERY_ADMIN),
    ('modify_member', OWN, OPERATOR_ONLY),  # the owner cannot accept on the consumer's behalf
    ('manage_image_cache', {}, OPERATOR_ONLY),
    ('cache_list', {}, OPERATOR_ONLY),
    ('cache_image', OWN, OPERATOR_ONLY),
    ('cache_delete', {}, OPERATOR_ONLY),
    ('list_cached_nodes', OWN, OPERATOR_ONLY),
    ('stores_info_detail', {}, OPERATOR_ONLY),
    ('tasks_api_access', {}, OPERATOR_ONLY),
    ('get_metadef_namespaces', OWN_LIST, READERS),
    ('get_metadef_namespace', {'project_id': OTHER, 'visibility': 'public'}, READERS),
    ('get_metadef_namespace', {'project_id': OTHER, 'visibility': 'private'}, OPERATOR_ONLY),
    ('add_metadef_namespace', OWN_LIST, OPERATOR_ONLY),
    ('modify_metadef_tag', OWN_LIST, OPERATOR_ONLY),
    ('rax_glance:add_task', OWN_LIST, EVERY_ADMIN),
    ('rax_glance:add_task', {'project_id': OTHER}, OPERATOR_ONLY),
    ('rax_glance:get_task', OWN_LIST, READERS),
    ('rax_glance:get_task', {'project_id': OTHER}, OPERATOR_ONLY),
    ('rax_glance:get_tasks', OWN_LIST, READERS),
    ('rax_glance:modify_core_attributes', OWN_LIST, OPERATOR_ONLY),
    ('rax_glance:modify_core_attributes', {'project_id': OTHER}, OPERATOR_ONLY),
    ('rax_glance:property:operator', {}, OPERATOR_ONLY),
    ('rax_glance:property:customer_admin', {}, EVERY_ADMIN),
]


@pytest.mark.parametrize('rule,target,expected', CASES,
                         ids=['%s-%d' % (c[0], i) for i, c in enumerate(CASES)])
def test_who_may(enforcer, rule, target, expected):
    assert who_may(enforcer, rule, target) == expected


@pytest.mark.parametrize('roles', [['admin'], ['identity:user-admin'], ['cloudImages:admin'],
                                   ['admin', 'member', 'reader'], ['service'], []])
def test_customer_roles_never_make_a_context_admin(enforcer, roles):
    assert not allowed(enforcer, 'context_is_admin', roles, {})


def test_operator_is_context_admin(enforcer):
    assert allowed(enforcer, 'context_is_admin', [OPERATOR], {}, project=OPS)


def test_stock_admin_role_is_not_a_service(enforcer):
    assert not allowed(enforcer, 'service_api', ['admin'], {})
    assert allowed(enforcer, 'service_api', ['service'], {})
    assert allowed(enforcer, 'download_image', ['service'],
                   _image(owner=OTHER, **{'com.rackspace__1__options': '1'}), project='nova')


def test_service_token_makes_a_request_a_service_one_and_nothing_more(enforcer):
    # keystonemiddleware sets X-Service-Roles only for a valid service token (Nova's).
    nova = dict(_creds(['cloudImages:creator']), service_roles=['service'])
    licensed_public = _image(owner=OTHER, visibility='public',
                             **{'com.rackspace__1__options': '1'})
    assert enforcer.enforce('download_image', licensed_public, nova)
    assert enforcer.enforce('rax_glance:property:operator', {}, nova)
    assert not enforcer.enforce('context_is_admin', {}, nova)
    assert not enforcer.enforce('modify_image', _image(owner=OTHER), nova)
    assert not enforcer.enforce('publicize_image', OWN, nova)
    customer = dict(_creds(list(ADMINS)), service_roles=['member'])
    assert not enforcer.enforce('download_image', licensed_public, customer)
    assert not enforcer.enforce('rax_glance:property:operator', {}, customer)


@pytest.mark.parametrize('roles', [list(ADMINS), [CREATOR], list(OBSERVERS),
                                   ['admin', 'member', 'reader'], ['member'], []])
def test_customers_cannot_upload_image_data_to_their_own_image(enforcer, roles):
    assert not allowed(enforcer, 'upload_image', roles, OWN)
    # Creating the record stays theirs (the matrix's "create image").
    assert allowed(enforcer, 'add_image', roles, OWN) == bool(
        set(roles) & (set(ADMINS) | {CREATOR}))


def test_services_and_operator_may_upload_image_data(enforcer):
    # Nova uploads a snapshot with the user's token plus a service token, or as a service user.
    nova = dict(_creds(['cloudImages:creator']), service_roles=['service'])
    assert enforcer.enforce('upload_image', OWN, nova)
    assert allowed(enforcer, 'upload_image', ['service'], _image(owner=OTHER), project='nova')
    assert allowed(enforcer, 'upload_image', [OPERATOR], _image(owner=OTHER), project=OPS)
    # A customer-supplied service_roles value other than `service` is nothing.
    customer = dict(_creds(list(ADMINS)), service_roles=['member', 'admin'])
    assert not enforcer.enforce('upload_image', OWN, customer)


def test_unknown_rules_fall_back_to_operator_only(enforcer):
    # Property-protection rules missing from the file resolve to `default`.
    assert allowed(enforcer, 'no_such_rule', [OPERATOR], {}, project=OPS)
    assert not allowed(enforcer, 'no_such_rule', list(ADMINS), {})


def test_role_names_match_whatever_their_case(enforcer):
    assert allowed(enforcer, 'modify_image', ['CLOUDIMAGES:ADMIN'], OWN)
    assert allowed(enforcer, 'get_image', ['cloudimages:observer'], OWN)


def test_shipped_file_overrides_every_glance_rule_and_parses():
    shipped = yaml.safe_load(POLICY_FILE.read_text())
    assert {r.name for r in glance_policies.list_rules()} <= set(shipped)
    assert {r.name for r in policies.bundle_rules()} <= set(shipped)
    enforcer = _glance_like_enforcer()
    enforcer.load_rules()
    assert enforcer.check_rules()
    for name in shipped:
        assert str(enforcer.rules[name]) != '!' or shipped[name] == '!', name
    # Stock Keystone roles grant nothing; `admin` appears only as a customer-admin role.
    for name, check in shipped.items():
        assert 'role:member' not in check and 'role:reader' not in check, name
        if name != 'rax_glance:customer_admin':
            assert not re.search(r'role:admin\b', check), name


def test_every_glance_rule_has_a_cloud_images_default():
    # A Glance upgrade adding a rule must not let its stock default (role:admin = cloud admin,
    # role:member/reader) through unnoticed.
    missing = {r.name for r in glance_policies.list_rules()} - {
        r.name for r in policies.list_rules()}
    assert not missing


def test_effective_defaults_refuse_overrides_glance_does_not_define(monkeypatch):
    from oslo_policy.policy import RuleDefault

    extra = RuleDefault('get_imagez', 'rule:context_is_admin')
    monkeypatch.setattr(policies.images, 'rules', policies.images.rules + [extra])
    with pytest.raises(RuntimeError, match='get_imagez'):
        policies.effective_defaults()


class _NoAdminCheck:
    def check_is_admin(self, context):
        return False


def _Context(roles, project=P):
    """A real Glance request context (roles lower-cased, as Glance's middleware leaves them)."""
    from glance import context

    return context.RequestContext(roles=[r.lower() for r in roles], project_id=project,
                                  user_id='u', policy_enforcer=_NoAdminCheck())


def test_enforce_and_authorize_helpers_use_the_bundle_rules():
    from glance.common import exception

    enforcer = policies.runtime_enforcer(_glance_conf())
    admin, observer = _Context(['cloudImages:admin']), _Context(['cloudImages:observer'])
    assert policies.enforce(admin, policies.ADD_TASK, {'project_id': P}, enforcer=enforcer)
    with pytest.raises(exception.Forbidden):
        policies.enforce(observer, policies.ADD_TASK, {'project_id': P}, enforcer=enforcer)
    with pytest.raises(exception.Forbidden):
        policies.enforce(admin, policies.GET_TASK, {'project_id': OTHER}, enforcer=enforcer)
    assert policies.authorize(observer, policies.GET_TASKS, {'project_id': P},
                              enforcer=enforcer) is True
    assert policies.authorize(_Context([]), policies.GET_TASKS, {'project_id': P},
                              enforcer=enforcer) is False


def test_operator_context_passes_operator_rules_without_touching_the_original():
    enforcer = policies.runtime_enforcer(_glance_conf())
    ctx = _Context(['cloudImages:admin'])
    op = policies.operator_context(ctx)
    assert policies.authorize(op, 'rax_glance:property:operator', {}, enforcer=enforcer)
    assert not policies.authorize(ctx, 'rax_glance:property:operator', {}, enforcer=enforcer)
    assert policies.OPERATOR_ROLE not in ctx.roles and op.project_id == P


def _glance_conf():
    return _conf(str(POLICY_FILE))


def test_deployed_file_overrides_bundle_defaults_at_run_time(tmp_path):
    custom = tmp_path / 'policy.yaml'
    custom.write_text('"rax_glance:add_task": "!"\n"rax_glance:customer_reader": "role:auditor"\n')
    enforcer = policies.runtime_enforcer(_conf(str(custom)))
    admin = _Context(['cloudImages:admin'])
    assert not policies.authorize(admin, policies.ADD_TASK, {'project_id': P}, enforcer=enforcer)
    assert policies.authorize(_Context(['auditor']), policies.GET_TASKS, {'project_id': P},
                              enforcer=enforcer)
    assert not policies.authorize(_Context(['observer']), policies.GET_TASKS,
                                  {'project_id': P}, enforcer=enforcer)
    # Rules the file does not mention keep the code defaults.
    assert policies.authorize(_Context([OPERATOR], OPS), 'context_is_admin', {},
                              enforcer=enforcer)


# Property protections: evaluate the shipped file the way Glance does (first section whose
# regex re.search()es the name wins) and check what each section names.
def _protection_sections():
    parser = configparser.ConfigParser()
    parser.read(PROTECTIONS_FILE)
    return [(re.compile(name), dict(parser[name])) for name in parser.sections()]


def _protection_for(prop):
    for regex, ops in _protection_sections():
        if regex.search(prop):
            return ops
    return None


@pytest.mark.parametrize('prop', [
    'com.rackspace__1__options', 'COM.RACKSPACE__1__options', 'com.rackspace_x',
    'org.openstack__1__os_distro', 'image_type', 'os_type', 'user_id', 'instance_uuid',
    'base_image_ref', 'image_location', 'image_state', 'owner_id', 'vm_mode',
    'xenapi_use_agent', 'instance_type_memory_mb',
    # Nova 34's snapshot and boot properties (issue 10 class 7).
    'block_device_mapping', 'bdm_v2', 'root_device_name', 'mappings', 'cache_in_nova',
    'bittorrent', 'img_block_device_mapping', 'img_bdm_v2', 'img_root_device_name',
    'img_mappings', 'img_cache_in_nova', 'img_bittorrent', 'Block_Device_Mapping', 'BDM_V2',
    'backup_type', 'instance_owner', 'owner_project_name', 'owner_user_name', 'boot_roles'])
def test_protected_properties_are_operator_only_and_readable(prop):
    ops = _protection_for(prop)
    assert ops == {'create': 'rax_glance:property:operator', 'read': '@',
                   'update': 'rax_glance:property:operator',
                   'delete': 'rax_glance:property:operator'}


@pytest.mark.parametrize('prop', ['auto_disk_config', 'my_app', 'image_type_note', 'xos_type',
                                  'my.com.rackspace', 'user_ids', 'os_distro',
                                  'my_mappings', 'bdm_v2_note', 'img_note', 'root_device'])
def test_other_properties_belong_to_customer_admins(prop):
    ops = _protection_for(prop)
    assert ops == {'create': 'rax_glance:property:customer_admin', 'read': '@',
                   'update': 'rax_glance:property:customer_admin',
                   'delete': 'rax_glance:property:customer_admin'}


def test_protection_file_names_only_rules_of_the_policy_file_and_ends_with_catch_all():
    shipped = yaml.safe_load(POLICY_FILE.read_text())
    sections = _protection_sections()
    assert sections[-1][0].pattern == '^.*$'
    for regex, ops in sections:
        assert set(ops) == {'create', 'read', 'update', 'delete'}, regex.pattern
        assert not regex.pattern.startswith('os_glance'), regex.pattern
        for value in ops.values():
            assert value in ('@', '!') or value in shipped, (regex.pattern, value)
