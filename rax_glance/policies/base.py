"""Who is who in Cloud Images: the operator, the customer role groups and shared checks.

Every other rule of the bundle is written in terms of the named rules defined here, so an
operator who renames a role (or adds one) edits one line of the deployed policy file.
"""

from oslo_policy import policy

# The cloud operator. Deliberately not `admin`: in Cloud Images `admin` is a customer role.
OPERATOR_ROLE = 'rax-glance-operator'

# doc/api.md section 1. oslo.policy splits a check on the first colon only, so
# `role:cloudImages:admin` works, and role matching ignores case.
CUSTOMER_ADMIN_ROLES = ('identity:user-admin', 'admin', 'cloudImages:admin')
CUSTOMER_CREATOR_ROLES = ('cloudImages:creator',)
CUSTOMER_OBSERVER_ROLES = ('cloudImages:observer', 'observer')

# The licensing property: present and not '0' means "may not be exported or downloaded".
LICENSE_PROPERTY = 'com.rackspace__1__options'

OPERATOR = 'rule:context_is_admin'
SERVICE = 'rule:service_api'
CUSTOMER_ADMIN = 'rule:rax_glance:customer_admin'
CUSTOMER_CREATOR = 'rule:rax_glance:customer_creator'
CUSTOMER_READER = 'rule:rax_glance:customer_reader'
IMAGE_EXPORTABLE = 'rule:rax_glance:image_exportable'

# Targets: for an image `project_id` is its owner and `member_id` is the caller's project when
# the caller found the image as a member; for lists and creation it is the caller's project.
OWNER = 'project_id:%(project_id)s'
IMAGE_MEMBER = 'project_id:%(member_id)s'
OWNER_OR_MEMBER = '(%s or %s)' % (OWNER, IMAGE_MEMBER)
# Shared images reach the policy only when the database already found the caller to be a
# member (or the owner), exactly as in stock Glance.
VISIBLE_IMAGE = ("(%s or %s or 'public':%%(visibility)s or 'community':%%(visibility)s "
                 "or 'shared':%%(visibility)s)" % (OWNER, IMAGE_MEMBER))


def operator_or(check):
    return '%s or (%s)' % (OPERATOR, check)


def _any_role(roles):
    return ' or '.join('role:%s' % role for role in roles)


# `'0':%(p)s` is true when the property is '0'; `'':%(p).0s` is true when it exists at all
# (the format truncates any value to ''), and false when it is absent (KeyError).
_EXPORTABLE = ("'0':%%(%(p)s)s or not '':%%(%(p)s).0s" % {'p': LICENSE_PROPERTY})

rules = [
    policy.RuleDefault(
        name='context_is_admin', check_str='role:%s' % OPERATOR_ROLE,
        description='The cloud operator: sees and manages every project\'s images. A '
                    'customer\'s `admin` role must never match this rule.'),
    policy.RuleDefault(
        name='default', check_str=OPERATOR,
        description='Rules that are referenced but not defined (and property-protection '
                    'rules missing from this file) fall back to this: operator only.'),
    policy.RuleDefault(
        name='service_api',
        check_str='role:service or service_roles:service or %s' % OPERATOR,
        description='Cloud services and the operator: a service user, or a user\'s request '
                    'that carries a service token (Nova downloading an image to boot it, or '
                    'copying protected properties onto a snapshot). Unlike stock Glance, a '
                    'customer `admin` is not a service.'),
    policy.RuleDefault(
        name='rax_glance:customer_admin', check_str=_any_role(CUSTOMER_ADMIN_ROLES),
        description='Customer-admin roles: everything a customer may do in their project.'),
    policy.RuleDefault(
        name='rax_glance:customer_creator',
        check_str='%s or %s' % (CUSTOMER_ADMIN, _any_role(CUSTOMER_CREATOR_ROLES)),
        description='Roles that may create images and share them (includes customer-admins).'),
    policy.RuleDefault(
        name='rax_glance:customer_reader',
        check_str='%s or %s' % (CUSTOMER_CREATOR, _any_role(CUSTOMER_OBSERVER_ROLES)),
        description='Roles that may read (includes creators and customer-admins).'),
    policy.RuleDefault(
        name='rax_glance:image_exportable', check_str=_EXPORTABLE,
        description='True when the image\'s `%s` is absent or `0`: its licence lets the '
                    'customer take the data out (export or download).' % LICENSE_PROPERTY),
    policy.RuleDefault(
        name='rax_glance:property:operator', check_str=SERVICE,
        description='Property protections (etc/property-protections.conf): writes reserved '
                    'to the operator and cloud services (Nova copies these properties onto '
                    'snapshots).'),
    policy.RuleDefault(
        name='rax_glance:property:customer_creator',
        check_str='%s or %s' % (OPERATOR, CUSTOMER_CREATOR),
        description='Property protections: properties a creator may set when creating an '
                    'image (the checksums openstackclient sends), also the operator.'),
    policy.RuleDefault(
        name='rax_glance:property:customer_admin',
        check_str='%s or %s' % (OPERATOR, CUSTOMER_ADMIN),
        description='Property protections: writes allowed to customer-admins and the '
                    'operator.'),
]


def list_rules():
    return rules
