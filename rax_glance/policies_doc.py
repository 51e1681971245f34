"""Generate the permission matrix of doc/operators-policy.md from the policy code.

    python -m rax_glance.policies_doc                 # print the generated section
    python -m rax_glance.policies_doc --update FILE   # rewrite the section inside FILE
    python -m rax_glance.policies_doc --check FILE    # exit 1 if FILE is stale

Every cell is computed by asking oslo.policy, with the bundle's code defaults, whether a user
holding that role may apply the rule to each kind of image; nothing in the table is typed by
hand. The property-protection table evaluates the rules that etc/property-protections.conf
names the same way.
"""

import argparse
import configparser
import sys
from pathlib import Path

from oslo_config import cfg
from oslo_policy import policy

from rax_glance import policies

BEGIN = '<!-- BEGIN GENERATED: python -m rax_glance.policies_doc --update FILE -->'
END = '<!-- END GENERATED -->'

CALLER, OTHER = 'caller-project', 'other-project'
ROLES = ['identity:user-admin', 'admin', 'cloudImages:admin', 'cloudImages:creator',
         'cloudImages:observer', 'observer', policies.OPERATOR_ROLE, 'service', '(none)']

# (code, meaning, target). For lists and creation Glance passes only the caller's project
# (or the proposed owner), which is what `O` models.
SCOPES = [
    ('O', 'an image (or list, task, namespace) of the caller\'s own project',
     {'project_id': CALLER, 'owner': CALLER, 'visibility': 'shared', 'member_id': None}),
    ('L', 'an image of the caller\'s project whose licence forbids export '
          '(`com.rackspace__1__options` present and not `0`)',
     {'project_id': CALLER, 'owner': CALLER, 'visibility': 'shared', 'member_id': None,
      policies.base.LICENSE_PROPERTY: '1'}),
    ('S', 'an image of another project shared with the caller\'s project',
     {'project_id': OTHER, 'owner': OTHER, 'visibility': 'shared', 'member_id': CALLER}),
    ('P', 'a public image (or namespace) of another project',
     {'project_id': OTHER, 'owner': OTHER, 'visibility': 'public', 'member_id': None}),
    ('X', 'a private image (or task, namespace) of another project',
     {'project_id': OTHER, 'owner': OTHER, 'visibility': 'private', 'member_id': None}),
]


def code_enforcer():
    """An enforcer holding the code defaults only (no policy file is read)."""
    conf = cfg.ConfigOpts()
    policy.Enforcer(conf)  # registers the [oslo_policy] options
    conf([])
    conf.set_override('policy_file', '/dev/null', 'oslo_policy')
    return policies.get_enforcer(conf)


def _creds(role):
    roles = [] if role == '(none)' else [role.lower()]
    project = 'operator-project' if role == policies.OPERATOR_ROLE else CALLER
    return {'roles': roles, 'project_id': project, 'user_id': 'someone'}


def _cell(enforcer, rule, role):
    codes = [code for code, _, target in SCOPES
             if enforcer.enforce(rule, dict(target), _creds(role))]
    return ' '.join(codes) if codes else '-'


def _operations(rule):
    ops = getattr(rule, 'operations', None) or []
    return '<br>'.join('`%s %s`' % (op['method'], op['path']) for op in ops)


def _escape(text):
    return ' '.join(str(text).split()).replace('|', '\\|')


def permission_rows(enforcer):
    rows = []
    for rule in policies.effective_defaults():
        if not getattr(rule, 'operations', None):
            continue
        cells = [_cell(enforcer, rule.name, role) for role in ROLES]
        rows.append('| %s | `%s` | %s | %s |' % (_operations(rule), rule.name,
                                                 ' | '.join(cells), _escape(rule.description)))
    return rows


def protection_rows(enforcer, protections_file):
    parser = configparser.ConfigParser()
    if not parser.read(protections_file):
        raise SystemExit('cannot read %s' % protections_file)
    rows = []
    for section in parser.sections():
        ops = dict(parser[section])
        cells = []
        for op in ('read', 'create', 'update', 'delete'):
            value = ops[op]
            if value in ('@', '!'):
                cells.append('everyone' if value == '@' else 'nobody')
                continue
            who = [role for role in ROLES
                   if enforcer.enforce(value, {}, _creds(role))]
            cells.append('%s (`%s`)' % (', '.join(who) or 'nobody', value))
        rows.append('| `[%s]` | %s |' % (section.replace('|', '\\|'), ' | '.join(cells)))
    return rows


def generate(protections_file):
    enforcer = code_enforcer()
    lines = [BEGIN, '',
             'Who may do what, per role, as computed from `rax_glance.policies` (the code '
             'that generates `etc/policy.yaml`). A cell lists the kinds of target the role '
             'may act on:', '']
    lines += ['* `%s`: %s' % (code, meaning) for code, meaning, _ in SCOPES]
    lines += ['* `-`: nothing (403, or 404 where Glance hides the image)', '',
              'Glance also applies its own checks after the policy (for example only the '
              'owner or the operator may change an image, only `shared` images have members, '
              'deactivated images cannot be downloaded by customers). `service` is a '
              'Keystone service user (Nova); `(none)` is a user without any role.', '',
              '| operation | rule | %s | description |' % ' | '.join(ROLES),
              '|---|---|%s---|' % ('---|' * len(ROLES))]
    lines += permission_rows(enforcer)
    lines += ['', '### Property protections (etc/property-protections.conf)', '',
              'First matching section wins (regular expressions, `re.search`).', '',
              '| property | read | create | update | delete |', '|---|---|---|---|---|']
    lines += protection_rows(enforcer, protections_file)
    lines += ['', '### Named rules', '',
              'The building blocks the rules above refer to; redefine one in the deployed '
              'policy file to change it everywhere (for example to add a role).', '',
              '| rule | default check | description |', '|---|---|---|']
    for rule in policies.effective_defaults():
        if not getattr(rule, 'operations', None):
            lines.append('| `%s` | `%s` | %s |' % (rule.name, _escape(rule.check_str),
                                                  _escape(rule.description)))
    lines += ['', END]
    return '\n'.join(lines) + '\n'


def replace_section(text, section):
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise SystemExit('markers %r ... %r not found' % (BEGIN, END))
    return text[:start] + section.rstrip('\n') + text[end + len(END):]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument('--update', metavar='FILE', help='rewrite the generated section')
    group.add_argument('--check', metavar='FILE', help='exit 1 if the section is stale')
    parser.add_argument('--protections', default=str(Path(__file__).resolve().parents[1]
                                                     / 'etc' / 'property-protections.conf'),
                        help='property protection file (default: the bundle\'s etc/)')
    args = parser.parse_args(argv)
    section = generate(args.protections)
    target = args.update or args.check
    if not target:
        sys.stdout.write(section)
        return 0
    current = Path(target).read_text()
    wanted = replace_section(current, section)
    if args.check:
        if wanted != current:
            sys.stderr.write('%s is stale: run python -m rax_glance.policies_doc --update %s\n'
                             % (target, target))
            return 1
        return 0
    Path(target).write_text(wanted)
    return 0


if __name__ == '__main__':
    sys.exit(main())
