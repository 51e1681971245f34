"""Cloud Images defaults for Glance 33's metadata-definition (metadefs) rules.

Metadefs describe well-known image properties; customers may read the public catalogue (and
their own namespaces), only the operator may change it.
"""

from oslo_policy import policy

from rax_glance.policies import base

_NS = '/v2/metadefs/namespaces/{namespace_name}'
_READ = base.operator_or("%s and (%s or 'public':%%(visibility)s)"
                         % (base.CUSTOMER_READER, base.OWNER))
_WRITE = 'rule:metadef_admin'

# (rule, method, path, what) for every metadef rule Glance 33 enforces.
_READS = [
    ('get_metadef_namespace', 'GET', _NS, 'Show a namespace'),
    ('get_metadef_objects', 'GET', _NS + '/objects', 'List objects'),
    ('get_metadef_object', 'GET', _NS + '/objects/{object_name}', 'Show an object'),
    ('list_metadef_resource_types', 'GET', '/v2/metadefs/resource_types',
     'List resource types'),
    ('get_metadef_resource_type', 'GET', _NS + '/resource_types',
     'List resource type associations'),
    ('get_metadef_properties', 'GET', _NS + '/properties', 'List properties'),
    ('get_metadef_property', 'GET', _NS + '/properties/{property_name}', 'Show a property'),
    ('get_metadef_tags', 'GET', _NS + '/tags', 'List tags'),
    ('get_metadef_tag', 'GET', _NS + '/tags/{tag_name}', 'Show a tag'),
]
_WRITES = [
    ('add_metadef_namespace', 'POST', '/v2/metadefs/namespaces', 'Create a namespace'),
    ('modify_metadef_namespace', 'PUT', _NS, 'Update a namespace'),
    ('delete_metadef_namespace', 'DELETE', _NS, 'Delete a namespace'),
    ('add_metadef_object', 'POST', _NS + '/objects', 'Create an object'),
    ('modify_metadef_object', 'PUT', _NS + '/objects/{object_name}', 'Update an object'),
    ('delete_metadef_object', 'DELETE', _NS + '/objects/{object_name}', 'Delete an object'),
    ('add_metadef_resource_type_association', 'POST', _NS + '/resource_types',
     'Associate a resource type'),
    ('remove_metadef_resource_type_association', 'DELETE', _NS + '/resource_types/{name}',
     'Remove a resource type association'),
    ('add_metadef_property', 'POST', _NS + '/properties', 'Create a property'),
    ('modify_metadef_property', 'PUT', _NS + '/properties/{property_name}',
     'Update a property'),
    ('remove_metadef_property', 'DELETE', _NS + '/properties/{property_name}',
     'Delete a property'),
    ('add_metadef_tag', 'POST', _NS + '/tags/{tag_name}', 'Create a tag'),
    ('add_metadef_tags', 'POST', _NS + '/tags', 'Create tags'),
    ('modify_metadef_tag', 'PUT', _NS + '/tags/{tag_name}', 'Update a tag'),
    ('delete_metadef_tag', 'DELETE', _NS + '/tags/{tag_name}', 'Delete a tag'),
    ('delete_metadef_tags', 'DELETE', _NS + '/tags', 'Delete all tags'),
]

rules = [
    policy.RuleDefault(name='metadef_admin', check_str=base.OPERATOR,
                       description='Who may change metadata definitions: the operator.'),
    policy.RuleDefault(name='metadef_default', check_str=base.OPERATOR,
                       description='Referenced only by Glance\'s deprecated metadef rules; '
                                   'closed.'),
    policy.DocumentedRuleDefault(
        name='get_metadef_namespaces',
        check_str=base.operator_or('%s and %s' % (base.CUSTOMER_READER, base.OWNER)),
        description='List namespaces (the database adds public ones).',
        scope_types=['project'],
        operations=[{'method': 'GET', 'path': '/v2/metadefs/namespaces'}]),
]
rules += [policy.DocumentedRuleDefault(
    name=name, check_str=_READ, scope_types=['project'],
    description='%s of a public namespace or one the caller\'s project owns.' % what,
    operations=[{'method': method, 'path': path}]) for name, method, path, what in _READS]
rules += [policy.DocumentedRuleDefault(
    name=name, check_str=_WRITE, scope_types=['project'],
    description='%s (operator only).' % what,
    operations=[{'method': method, 'path': path}]) for name, method, path, what in _WRITES]


def list_rules():
    return rules
