"""The bundle's own rules for the Cloud Images tasks API (import and export).

The tasks filter checks these in the request thread through `rax_glance.policies.authorize`.
Targets: `project_id` is the task's owner (for a new task or a list, the caller's project).
"""

from oslo_policy import policy

from rax_glance.policies import base

ADD_TASK = 'rax_glance:add_task'
GET_TASK = 'rax_glance:get_task'
GET_TASKS = 'rax_glance:get_tasks'

rules = [
    policy.DocumentedRuleDefault(
        name=ADD_TASK,
        check_str=base.operator_or('%s and %s' % (base.CUSTOMER_ADMIN, base.OWNER)),
        description='Create an import or export task in the caller\'s project '
                    '(customer-admins).',
        scope_types=['project'], operations=[{'method': 'POST', 'path': '/v2/tasks'}]),
    policy.DocumentedRuleDefault(
        name=GET_TASK,
        check_str=base.operator_or('%s and %s' % (base.CUSTOMER_READER, base.OWNER)),
        description='Show a task of the caller\'s project.',
        scope_types=['project'], operations=[{'method': 'GET', 'path': '/v2/tasks/{task_id}'}]),
    policy.DocumentedRuleDefault(
        name=GET_TASKS,
        check_str=base.operator_or('%s and %s' % (base.CUSTOMER_READER, base.OWNER)),
        description='List the tasks of the caller\'s project.',
        scope_types=['project'], operations=[{'method': 'GET', 'path': '/v2/tasks'}]),
]


def list_rules():
    return rules
