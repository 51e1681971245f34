"""`rax-glance-manage`: database management of the bundle's own tables.

    rax-glance-manage --config-file /etc/glance/glance-api.conf db_sync
    rax-glance-manage --config-file /etc/glance/glance-api.conf db_version

Run `db_sync` after `glance-manage db_sync`: by default the tables live in Glance's database
(`[database] connection`), or where `[rax_tasks] connection` says.
"""

import sys

from oslo_config import cfg
from oslo_db import options as db_options

from rax_glance.tasks import options
from rax_glance.tasks.db import migration


def _db_sync(conf):
    migration.db_sync(_url(conf))
    print('rax-glance tables are at revision %s' % migration.current_revision(_url(conf)))


def _db_version(conf):
    print(migration.current_revision(_url(conf)) or 'none')


def _url(conf):
    url = conf.rax_tasks.connection or conf.database.connection
    if not url:
        raise SystemExit('rax-glance-manage: no database: set [database] connection (or '
                         '[rax_tasks] connection) in the config file')
    return url


_COMMANDS = {'db_sync': _db_sync, 'db_version': _db_version}


def _add_commands(subparsers):
    for name, func in _COMMANDS.items():
        parser = subparsers.add_parser(name, help=func.__doc__)
        parser.set_defaults(func=func)


def main(argv=None):
    conf = cfg.ConfigOpts()
    db_options.set_defaults(conf)
    options.register(conf)
    conf.register_cli_opt(cfg.SubCommandOpt('command', handler=_add_commands,
                                            help='db_sync or db_version'))
    conf(sys.argv[1:] if argv is None else argv, project='glance', prog='rax-glance-manage')
    conf.command.func(conf)
    return 0


if __name__ == '__main__':
    sys.exit(main())
