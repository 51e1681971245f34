"""Cloud Images policy as code (oslo.policy).

* `list_rules()` (entry point `oslo.policy.policies: rax_glance`): the bundle's defaults, i.e.
  the Cloud Images check strings for Glance's own rule names plus the bundle's rules
  (`rax_glance:*`). `oslopolicy-sample-generator` documents them in etc/policy.yaml.sample.
* `get_enforcer()` (entry point `oslo.policy.enforcer: rax_glance`): an enforcer holding every
  Glance 33 rule with these defaults substituted, for `oslopolicy-policy-generator`, which
  writes the *effective* etc/policy.yaml that operators deploy (Glance registers its own
  defaults in code, so only rules present in the file change its behaviour), and for
  `oslopolicy-validator` / `oslopolicy-checker` against a deployment's glance-api.conf.
* `enforce(context, rule, target)` / `authorize(...)`: run-time checks of the bundle's rules
  with a Glance request context, in the request thread.
"""

import itertools
import threading

from oslo_config import cfg
from oslo_policy import policy

from rax_glance.policies import base
from rax_glance.policies import images
from rax_glance.policies import metadef
from rax_glance.policies import tasks

OPERATOR_ROLE = base.OPERATOR_ROLE
ADD_TASK = tasks.ADD_TASK
GET_TASK = tasks.GET_TASK
GET_TASKS = tasks.GET_TASKS
BUNDLE_PREFIX = 'rax_glance:'


def list_rules():
    return list(itertools.chain(base.list_rules(), tasks.list_rules(), images.list_rules(),
                                metadef.list_rules()))


def bundle_rules():
    """The rules Glance does not know about (it must be told of them at run time)."""
    return [rule for rule in list_rules() if rule.name.startswith(BUNDLE_PREFIX)]


def effective_defaults():
    """Glance 33's rules with the Cloud Images defaults substituted, bundle rules first."""
    from glance import policies as glance_policies

    ours = {rule.name: rule for rule in list_rules()}
    result = bundle_rules()
    for rule in glance_policies.list_rules():
        result.append(ours.get(rule.name, rule))
    unknown = set(ours) - {rule.name for rule in result}
    if unknown:
        # A Glance upgrade renamed or dropped a rule we override: fail loudly, not silently.
        raise RuntimeError('Cloud Images defaults for rules Glance does not define: %s'
                           % ', '.join(sorted(unknown)))
    return result


def get_enforcer(conf=None):
    """An oslo.policy Enforcer with every effective default registered.

    It reads the policy file named by `conf` (cfg.CONF, as parsed by the oslo.policy tools), so
    `oslopolicy-policy-generator --namespace rax_glance --config-file glance-api.conf` prints
    what a deployment really enforces.
    """
    enforcer = policy.Enforcer(conf if conf is not None else cfg.CONF)
    enforcer.register_defaults(effective_defaults())
    return enforcer


_runtime_lock = threading.Lock()
_runtime_enforcer = None


def _build_runtime_enforcer(conf):
    # The defaults are loaded as plain rules, not registered: registering them would make
    # oslo.policy log that the deployed file's rules "are the same as the defaults" and may be
    # removed, which is false for Glance's enforcers reading the same file. With
    # overwrite=False the file is laid over these rules, and re-read when it changes.
    enforcer = policy.Enforcer(conf, use_conf=True, overwrite=False)
    defaults = {rule.name: rule.check_str for rule in effective_defaults()}
    enforcer.set_rules(policy.Rules.from_dict(defaults), overwrite=True, use_conf=True)
    return enforcer


def runtime_enforcer(conf=None):
    """The process-wide enforcer for the bundle's rules, built once.

    It is separate from Glance's enforcers (nothing is registered into Glance's objects, so no
    request thread ever sees a half-registered rule set) but reads the same policy file from
    Glance's configuration, so the deployed file overrides these defaults as it does Glance's.
    """
    global _runtime_enforcer
    if conf is not None:
        return _build_runtime_enforcer(conf)
    with _runtime_lock:
        if _runtime_enforcer is None:
            _runtime_enforcer = _build_runtime_enforcer(cfg.CONF)
        return _runtime_enforcer


def enforce(context, rule, target, enforcer=None):
    """Authorize `rule` for a Glance request context or raise glance's Forbidden.

    `target` is a dict such as {'project_id': task_owner}. Call it in the request thread.
    """
    from glance.common import exception

    enforcer = enforcer or runtime_enforcer()
    return enforcer.enforce(rule, target, context, do_raise=True, exc=exception.Forbidden,
                            action=rule)


def authorize(context, rule, target, enforcer=None):
    """Like `enforce`, but returns True or False."""
    enforcer = enforcer or runtime_enforcer()
    return bool(enforcer.enforce(rule, target, context))


def operator_context(context):
    """A copy of a Glance request context acting as the cloud operator.

    For the bundle's own background work that must write operator-only (protected)
    properties, e.g. `image_type` and `user_id` on an imported image.
    """
    elevated = context.elevated()
    if OPERATOR_ROLE not in elevated.roles:
        elevated.roles.append(OPERATOR_ROLE)
    return elevated
