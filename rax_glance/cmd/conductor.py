"""rax-glance-conductor: run Cloud Images import and export jobs from the TaskFlow jobboard.

    rax-glance-conductor --config-file /etc/glance/glance-api.conf
    rax-glance-conductor --config-dir /etc/glance

It reads the same configuration as glance-api (`[rax_jobboard]` says which board and how many
jobs at once), sets up Glance's stores and database API as glance-api does, and claims and
runs jobs until SIGTERM or SIGINT: then it claims nothing new, lets the current step of each
running flow finish, hands the flows back to the board (another conductor resumes them) and
exits 0. Run any number of them, on any hosts that reach the board, the database and the
stores.
"""

import contextlib
import os
import signal
import socket
import sys
import threading

from oslo_config import cfg
from oslo_log import log as logging

LOG = logging.getLogger('rax_glance.conductor')


def _setup_glance(conf, argv):
    """Configuration, logging, stores and DB API, the way glance-api's WSGI app does."""
    import glance.async_
    import glance_store
    from glance.common import config as glance_config
    from glance.common import wsgi_app

    from rax_glance.swift import access as swift_access
    from rax_glance.tasks import jobboard

    glance_config.set_config_defaults()
    logging.register_options(conf)
    conf.register_cli_opt(cfg.StrOpt('name', help='This conductor\'s name on the board '
                                                  '(overrides [rax_jobboard] conductor_name).'))
    jobboard.register_opts(conf)
    swift_access.register_opts(conf)
    conf(argv, project='glance', prog='rax-glance-conductor')
    logging.setup(conf, 'glance')
    glance.async_.set_threadpool_model('native')
    reserved = wsgi_app.RESERVED_STORES
    if conf.enabled_backends:
        glance_store.register_store_opts(conf, reserved_stores=reserved)
        glance_store.create_multi_stores(conf, reserved_stores=reserved)
        glance_store.verify_store()
    else:
        glance_store.register_opts(conf)
        glance_store.create_stores(conf)
        glance_store.verify_default_store()


def _fail(message):
    LOG.error(message)
    print('rax-glance-conductor: error: %s' % message, file=sys.stderr)
    return 1


def _safe_url(url):
    """A database URL without its password, for messages."""
    try:
        import sqlalchemy

        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return '<database>'


def main(argv=None):
    conf = cfg.CONF
    try:
        _setup_glance(conf, sys.argv[1:] if argv is None else argv)
    except cfg.Error as exc:
        print('rax-glance-conductor: %s' % exc, file=sys.stderr)
        return 2

    from rax_glance.tasks import conductor as conductor_mod
    from rax_glance.tasks import jobboard
    from rax_glance.tasks import lifecycle

    opts = conf.rax_jobboard
    # Claims are made in this name: unique per process, so no two conductors share one.
    name = '%s@%s' % (conf.name or opts.conductor_name or socket.gethostname(),
                      lifecycle.worker_id())
    try:
        persistence = jobboard.fetch_persistence(conf)
    except Exception as exc:
        LOG.debug('Flow state database unusable', exc_info=True)
        return _fail('cannot use the flow state database (%s): %s'
                     % (_safe_url(jobboard.persistence_url(conf)), exc))
    try:
        board = conductor_mod.ClaimKeepingBoard(jobboard.fetch_board(conf, persistence),
                                                opts.claim_expiry)
        conductor = conductor_mod.make_conductor(conf, board, persistence,
                                                 jobboard.task_repo(conf), name)
        conductor.connect()
    except Exception as exc:
        LOG.debug('Jobboard unusable', exc_info=True)
        return _fail('cannot connect to the %s jobboard at %s: %s'
                     % (opts.board, ', '.join(opts.hosts), exc))
    stopping = threading.Event()

    def _stop(signum, _frame):
        if not stopping.is_set():
            LOG.info('Signal %d: stopping after the current step of each running job',
                     signum)
            stopping.set()
            conductor.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    board.start_keeping()
    # Tasks whose job never reached the board (glance-api died between record and post).
    sweeper = conductor_mod.OrphanSweeper(board, jobboard.task_repo(conf), conf,
                                          grace=opts.orphan_grace_seconds,
                                          period=opts.orphan_grace_seconds / 2.0)
    sweeper.start()
    LOG.info('Conductor %s (worker %s, pid %d) claiming jobs from the %s jobboard %r: %s, '
             'at most %d at once', name, lifecycle.worker_id(), os.getpid(), opts.board,
             opts.board_name, opts.conductor_type,
             opts.max_simultaneous_jobs if opts.conductor_type == 'nonblocking' else 1)
    try:
        conductor.run()
    finally:
        sweeper.stop()
        board.stop_keeping()
        with contextlib.suppress(Exception):
            conductor.close()
        with contextlib.suppress(Exception):
            persistence.close()
    LOG.info('Conductor %s stopped', name)
    return 0


if __name__ == '__main__':
    sys.exit(main())
