"""Helpers for tests of rax_glance.swift against the dev stack's real Swift."""

import os

from oslo_config import cfg

from rax_glance.swift import access
from rax_glance.swift import dlo

KiB = 1024
SEG = 64 * KiB


def service_conf(swift_info, **overrides):
    """A private ConfigOpts with [rax_swift] in service mode for the given Swift."""
    conf = cfg.ConfigOpts()
    access.register_opts(conf)
    conf([], project='rax-glance-tests')
    values = dict(auth_mode='service', auth_url=swift_info['auth_url'], auth_version='1',
                  user=swift_info['service_user'], key=swift_info['service_key'],
                  storage_url_template=swift_info['storage_url_template'], retries=1,
                  retry_backoff=0.1, timeout=20, segment_size=SEG,
                  cleanup_timeout=30)
    values.update(overrides)
    for key, value in values.items():
        conf.set_override(key, value, group='rax_swift')
    return conf


def project_access(swift_info, project, **overrides):
    return access.ProjectSwift.for_project(project, service_conf(swift_info, **overrides))


def names_under(conn, container, obj):
    """Every object named `obj` or starting with `obj-` in the container."""
    _, listing = conn.get_container(container, prefix=obj, full_listing=True)
    return sorted(item['name'] for item in listing
                  if item['name'] == obj or item['name'].startswith(dlo.segment_prefix(obj)))


def chunked(data, sizes=(1000, 70000, 3, 40000)):
    """Yield `data` in uneven chunks (segment boundaries fall inside chunks)."""
    pos = 0
    i = 0
    while pos < len(data):
        step = sizes[i % len(sizes)]
        yield data[pos:pos + step]
        pos += step
        i += 1


def random_bytes(size):
    return os.urandom(size)
