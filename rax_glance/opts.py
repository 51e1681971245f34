"""Every oslo.config option of the bundle, for `oslo-config-generator` (entry point
`oslo.config.opts: rax_glance`) and for the generated `etc/rax-glance.conf.sample`.

Each module that defines options exposes `list_opts()` returning [(group, [opts])]; add it to
`_MODULES` below so the sample (and its drift test) picks it up.
"""

import importlib

# Modules with a list_opts(); order is the order of sections in the sample.
_MODULES = [
    'rax_glance.swift.access',
    'rax_glance.store.swiftdlo',
    'rax_glance.tasks.options',
    'rax_glance.tasks.jobboard',
    'rax_glance.api.options',
]


def list_opts():
    result = []
    for name in _MODULES:
        result.extend(importlib.import_module(name).list_opts())
    return result
