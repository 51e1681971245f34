"""`[rax_tasks]` options: the tasks API, its records and the in-process executor."""

from oslo_config import cfg
from oslo_db import options as db_options

GROUP = 'rax_tasks'

OPTS = [
    cfg.StrOpt('connection', secret=True,
               help='SQLAlchemy URL of the database holding task records. Unset (the '
                    'default): the Glance database of `[database] connection`, in the '
                    'bundle\'s own `rax_` tables. Run `rax-glance-manage db_sync` after '
                    '`glance-manage db_sync`.'),
    cfg.IntOpt('task_time_to_live', default=48, min=1,
               help='Hours a finished task stays visible (`expires_at`); expired task '
                    'records are deleted, the images they made stay.'),
    cfg.StrOpt('executor', default='in-process',
               help='Name of the task executor in the `rax_glance.task_executors` '
                    'namespace. `in-process` runs flows in a thread pool inside each '
                    'glance-api worker process.'),
    cfg.IntOpt('workers', default=4, min=1,
               help='Size of the in-process executor\'s thread pool per glance-api worker '
                    'process: at most this many imports and exports run at once in one '
                    'process; further tasks wait as `pending`.'),
    cfg.IntOpt('lease_seconds', default=60, min=5,
               help='A running task\'s lease: its glance-api worker renews it every third '
                    'of this period. A task whose lease ran out (or whose worker process on '
                    'this host is gone) is taken over: a `pending` one is run again, a '
                    '`processing` one is failed and its partial work removed.'),
    cfg.IntOpt('default_limit', default=25, min=1,
               help='Tasks per page of `GET /v2/tasks` when the request gives no `limit`.'),
    cfg.IntOpt('max_limit', default=1000, min=1,
               help='Largest `limit` honoured by `GET /v2/tasks`.'),
    cfg.StrOpt('work_dir',
               help='Directory for the spool files of exports that must coalesce a chain '
                    'of VHDs or convert a fixed or raw disk (up to the virtual disk size '
                    'per running export). The system temp dir when unset.'),
    cfg.IntOpt('max_request_body_bytes', default=256 * 1024, min=1024,
               help='Largest body of a `POST /v2/tasks` request (a real one is well under '
                    '4 KiB). A larger body (by `Content-Length`, or while a chunked body is '
                    'read) is refused with 413 before more than this many bytes are read; '
                    'nothing is stored. Within the limit, JSON nested deeper than 32 levels '
                    'is a 400.'),
    cfg.IntOpt('max_unfinished_tasks_per_project', default=20, min=0,
               help='Most tasks (`pending` plus `processing`) one project may have at once; '
                    'a further `POST /v2/tasks` answers 429 with a JSON message until one '
                    'of them finishes. 0 means no limit.'),
    cfg.IntOpt('max_tasks_per_project', default=1000, min=0,
               help='Most tasks one project may hold at once, finished ones included until '
                    'they expire (`task_time_to_live`): bounds what one project can store in '
                    'task records (each up to `max_request_body_bytes` of input) even when '
                    'its tasks fail at once. A further `POST /v2/tasks` answers 429 with a '
                    'JSON message. 0 means no limit.'),
    cfg.IntOpt('max_package_inflate_ratio', default=1000, min=0,
               help='An export refuses a stored XenServer package (gzipped tar) that '
                    'inflates to more than this many times the compressed bytes read so far '
                    '(counted as at least 1 MiB). The bundle\'s own packages stay under '
                    'about 300:1 even for all-zero disks; gzip -6/-9 (e.g. hypervisor '
                    'snapshots) reaches about 1030:1 on long runs of zeros at the start of a '
                    'disk. 0 means no bound (the package\'s total size is bounded in any '
                    'case).'),
    cfg.FloatOpt('max_virtual_size_gb', default=40, min=0.001,
                 help='Largest virtual disk size (GiB) an import accepts (code 413; the '
                      'message names this limit).'),
    cfg.FloatOpt('max_physical_size_gb', default=40, min=0.001,
                 help='Largest VHD file size (GiB) an import accepts, not counting the '
                      'VHD\'s own metadata (code 609; the message names this limit).'),
]


def register(conf=None):
    conf = conf or cfg.CONF
    conf.register_opts(OPTS, group=GROUP)
    # Glance registers `[database]` only once its DB layer loads; the default connection of
    # task records is Glance's own, so make sure the option exists (same opts: no conflict).
    conf.register_opts(db_options.database_opts, group='database')
    return conf


def list_opts():
    return [(GROUP, OPTS)]
