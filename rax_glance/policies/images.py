"""Cloud Images defaults for Glance 33's image, member, location, action and cache rules.

Each rule keeps Glance's name (Glance enforces it); the check string is the Cloud Images one.
"""

from oslo_policy import policy

from rax_glance.policies import base


def _rule(name, check_str, description, *operations):
    return policy.DocumentedRuleDefault(
        name=name, check_str=check_str, description=description, scope_types=['project'],
        operations=[{'method': method, 'path': path} for method, path in operations])


_IMAGE = '/v2/images/{image_id}'
_OWN_READER = '%s and %s' % (base.CUSTOMER_READER, base.OWNER)
_OWN_CREATOR = '%s and %s' % (base.CUSTOMER_CREATOR, base.OWNER)
_OWN_ADMIN = '%s and %s' % (base.CUSTOMER_ADMIN, base.OWNER)

rules = [
    # Images.
    _rule('get_images', base.operator_or(_OWN_READER),
          'List images (the database adds public, community and accepted shared images).',
          ('GET', '/v2/images')),
    _rule('get_image', base.operator_or('%s and %s' % (base.CUSTOMER_READER,
                                                       base.VISIBLE_IMAGE)),
          'Show an image the caller owns or may see (public, community, shared with them).',
          ('GET', _IMAGE)),
    _rule('add_image', base.operator_or('%s and project_id:%%(owner)s'
                                        % base.CUSTOMER_CREATOR),
          'Create an image record owned by the caller\'s project. Extra properties are '
          'further limited by the property protections.',
          ('POST', '/v2/images')),
    _rule('modify_image', base.operator_or(_OWN_ADMIN),
          'Update an image (any property, including name), add or delete a tag, stage data '
          'or start an interoperable import.',
          ('PATCH', _IMAGE), ('PUT', _IMAGE + '/tags/{tag_value}'),
          ('DELETE', _IMAGE + '/tags/{tag_value}'), ('PUT', _IMAGE + '/stage'),
          ('POST', _IMAGE + '/import')),
    _rule('delete_image', base.operator_or(_OWN_ADMIN), 'Delete an image.',
          ('DELETE', _IMAGE)),
    _rule('rax_glance:modify_core_attributes', base.OPERATOR,
          'Send an image PATCH (JSON patch) that touches, or an image create that sets, a '
          'core attribute Glance manages and customers may not change (at creation `id` and '
          '`owner` are left to Glance and `add_image`): `owner`, `id`, `status`, '
          '`locations`, checksums, sizes, '
          'timestamps and every other attribute of Glance\'s image schema except `name`, '
          '`visibility`, `protected`, `os_hidden`, `container_format`, `disk_format`, '
          '`min_ram`, `min_disk` and `tags`. Checked by the bundle\'s '
          '`cloudimages-image-patch-guard` paste filter before Glance applies anything (Glance '
          '33 saves an `add` on `/owner` before refusing it); Glance\'s own rules still apply '
          'to callers it lets through.',
          ('PATCH', _IMAGE), ('POST', '/v2/images')),
    _rule('publicize_image', base.OPERATOR, 'Make an image public (operator only).',
          ('PATCH', _IMAGE), ('POST', '/v2/images')),
    _rule('communitize_image', base.OPERATOR,
          'Make an image a community image: it would be visible to every project, so this is '
          'publishing and belongs to the operator.',
          ('PATCH', _IMAGE), ('POST', '/v2/images')),
    # Image data.
    _rule('upload_image', base.SERVICE,
          'Upload data to a queued image (operator and services, such as Nova uploading a '
          'snapshot with a service token). Customers bring data in only through the import '
          'task, which validates the VHD and refuses Windows disks; a direct upload would '
          'skip those checks. Customers still create image records (add_image).',
          ('PUT', _IMAGE + '/file')),
    _rule('download_image', '%s or (%s and %s)' % (base.SERVICE, _OWN_ADMIN,
                                                   base.IMAGE_EXPORTABLE),
          'Download image data. A download is an export over HTTP, so customers get the same '
          'as from an export task: customer-admins, images their project owns, and only when '
          'the licence allows it (`%s` absent or `0`). Public and shared images cannot be '
          'exported, so they cannot be downloaded either. The operator and services '
          '(Nova) may download any image they can see.' % base.LICENSE_PROPERTY,
          ('GET', _IMAGE + '/file')),
    _rule('download_from_store', '%s or (%s and %s)' % (base.SERVICE, _OWN_ADMIN,
                                                        base.IMAGE_EXPORTABLE),
          'Download image data from a chosen store: same as download_image.',
          ('GET', _IMAGE + '/file')),
    # Locations: internal storage URLs, never a customer's business.
    _rule('get_image_location', base.SERVICE,
          'Read the storage locations of an image (operator and services).',
          ('DELETE', '/v2/stores/{store_id}/{image_id}')),
    _rule('set_image_location', base.OPERATOR, 'Set image locations (operator only).',
          ('PATCH', _IMAGE)),
    _rule('delete_image_location', base.OPERATOR,
          'Delete image locations, or an image from one store (operator only).',
          ('PATCH', _IMAGE), ('DELETE', '/v2/stores/{store_id}/{image_id}')),
    _rule('add_image_location', base.SERVICE,
          'Add a location to an image (operator and services).',
          ('POST', _IMAGE + '/locations')),
    _rule('fetch_image_location', base.SERVICE,
          'List the locations of an image (operator and services).',
          ('GET', _IMAGE + '/locations')),
    # Members (sharing).
    _rule('get_members', base.operator_or('%s and %s' % (base.CUSTOMER_READER,
                                                         base.OWNER_OR_MEMBER)),
          'List the members of an image (its owner sees all; a member sees itself).',
          ('GET', _IMAGE + '/members')),
    _rule('get_member', base.operator_or('%s and %s' % (base.CUSTOMER_READER,
                                                        base.OWNER_OR_MEMBER)),
          'Show one member of an image.', ('GET', _IMAGE + '/members/{member_id}')),
    _rule('add_member', base.operator_or(_OWN_CREATOR),
          'Share an image: add a project as a member (pending until it accepts).',
          ('POST', _IMAGE + '/members')),
    _rule('delete_member', base.operator_or(_OWN_ADMIN),
          'Stop sharing an image with a project.',
          ('DELETE', _IMAGE + '/members/{member_id}')),
    _rule('modify_member', base.operator_or('%s and %s' % (base.CUSTOMER_ADMIN,
                                                           base.IMAGE_MEMBER)),
          'Accept or reject an image shared with the caller\'s project (consumer side).',
          ('PUT', _IMAGE + '/members/{member_id}')),
    # Actions and copies: operator only.
    _rule('deactivate', base.OPERATOR, 'Deactivate an image (operator only).',
          ('POST', _IMAGE + '/actions/deactivate')),
    _rule('reactivate', base.OPERATOR, 'Reactivate an image (operator only).',
          ('POST', _IMAGE + '/actions/reactivate')),
    _rule('copy_image', base.OPERATOR, 'Copy an image to other stores (operator only).',
          ('POST', _IMAGE + '/import')),
    # Cache management: operator only.
    policy.RuleDefault(name='manage_image_cache', check_str=base.OPERATOR,
                       description='Manage the image cache (operator only).'),
    _rule('list_cached_nodes', base.OPERATOR, 'List nodes caching an image (operator only).',
          ('GET', '/v2/cache/nodes/{image_id}')),
    _rule('cache_image', base.OPERATOR, 'Queue an image for caching (operator only).',
          ('PUT', '/v2/cache/{image_id}')),
    _rule('cache_list', base.OPERATOR, 'List the cache (operator only).',
          ('GET', '/v2/cache')),
    _rule('cache_delete', base.OPERATOR, 'Delete from the cache (operator only).',
          ('DELETE', '/v2/cache'), ('DELETE', '/v2/cache/{image_id}')),
    _rule('cache_clean', base.OPERATOR, 'Clean the cache (operator only).',
          ('POST', '/v2/cache/clean')),
    _rule('cache_prune', base.OPERATOR, 'Prune the cache (operator only).',
          ('POST', '/v2/cache/prune')),
    # Discovery.
    _rule('stores_info_detail', base.SERVICE,
          'Show store details (operator and services).', ('GET', '/v2/info/stores/detail')),
    # Glance's own tasks API. Cloud Images tasks are served by the bundle (rax_glance:*_task);
    # Glance's legacy rules stay closed to customers.
    _rule('tasks_api_access', base.OPERATOR,
          'Glance\'s own tasks API (operator only; Cloud Images tasks use the '
          'rax_glance:*_task rules).', ('GET', '/v2/tasks'), ('POST', '/v2/tasks')),
    _rule('get_task', base.OPERATOR, 'Glance internal task rule (unused by Glance 33).',
          ('GET', '/v2/tasks/{task_id}')),
    _rule('get_tasks', base.OPERATOR, 'Glance internal task rule (unused by Glance 33).',
          ('GET', '/v2/tasks')),
    _rule('add_task', base.OPERATOR, 'Glance internal task rule (unused by Glance 33).',
          ('POST', '/v2/tasks')),
    _rule('modify_task', base.OPERATOR, 'Glance internal task rule (unused by Glance 33).',
          ('DELETE', '/v2/tasks/{task_id}')),
]


def list_rules():
    return rules
