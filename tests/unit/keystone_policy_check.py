"""Run by Keystone's own python (.venv-keystone): which Keystone rules does a project-scoped
`admin` pass that a plain member of the same project does not?

Prints JSON {"rules": N, "admin_beyond_member": [...], "system_admin_create_user": bool}.
Usage: python keystone_policy_check.py POLICY_FILE
"""

import json
import sys

from keystone.common import policies
from oslo_config import cfg
from oslo_policy import policy


def main(policy_file):
    conf = cfg.ConfigOpts()
    conf([], project='keystone')
    enforcer = policy.Enforcer(conf, policy_file=policy_file)
    enforcer.register_defaults(policies.list_rules())
    enforcer.load_rules()

    def creds(roles, system=None):
        return {'roles': roles, 'user_id': 'me', 'project_id': 'own-project',
                'project_domain_id': 'default', 'domain_id': None, 'domain_name': None,
                'system_scope': system, 'is_admin': False, 'is_admin_project': True,
                'token': {}}

    # Targets an attacker would aim at: nothing, another user and project of its own domain,
    # its own project, the operator role.
    other = {'user': {'id': 'victim', 'domain_id': 'default'},
             'project': {'id': 'other-project', 'domain_id': 'default'},
             'domain': {'id': 'default'}, 'group': {'id': 'g', 'domain_id': 'default'},
             'role': {'name': 'rax-glance-operator', 'domain_id': None},
             'credential': {'user_id': 'victim'}, 'trust': {'trustor_user_id': 'victim'},
             'token': {'user_id': 'victim'}}
    own = {'user': {'id': 'victim', 'domain_id': 'default'},
           'project': {'id': 'own-project', 'domain_id': 'default'},
           'domain': {'id': 'default'},
           'role': {'name': 'rax-glance-operator', 'domain_id': None}}
    targets = [{}, {'target': other}, {'target': own}, {'domain_id': 'default'},
               {'user_id': 'victim', 'project_id': 'other-project'}]
    rules = list(policies.list_rules())
    beyond = set()
    for rule in rules:
        for target in targets:
            admin = enforcer.enforce(rule.name, target, creds(['admin', 'member', 'reader']))
            member = enforcer.enforce(rule.name, target, creds(['member', 'reader']))
            if admin and not member:
                beyond.add(rule.name)
    system_admin = enforcer.enforce('identity:create_user', {'target': other},
                                    creds(['admin', 'member', 'reader'], system='all'))
    print(json.dumps({'rules': len(rules), 'admin_beyond_member': sorted(beyond),
                      'system_admin_create_user': bool(system_admin)}))


if __name__ == '__main__':
    main(sys.argv[1])
