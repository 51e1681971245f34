"""`openstack cloud-image import|export|clone|task show|task list`.

Adding a task type is a TaskCreateCommand subclass: set `task_type`, add its arguments in
`get_parser`, build the task input in `task_input`, and register it under
`openstack.cloud_images.v2` in pyproject.toml. Waiting, progress, output formats and the exit
status come with the base.
"""

import sys

from osc_lib import exceptions
from osc_lib.cli import format_columns
from osc_lib.command import command

from rax_cloudimages_osc import client as client_mod
from rax_cloudimages_osc import progress

COLUMNS = ('id', 'type', 'status', 'message', 'input', 'result', 'owner', 'created_at',
           'updated_at', 'expires_at')
LIST_COLUMNS = (('id', 'ID'), ('type', 'Type'), ('status', 'Status'),
                ('created_at', 'Created At'), ('message', 'Message'))
_DICT_FIELDS = ('input', 'result', 'progress')


def task_columns(task):
    """(column names, values) of a task body for ShowOne; `progress` only when present."""
    names = list(COLUMNS)
    if task.get('progress') is not None:
        names.insert(3, 'progress')
    values = []
    for name in names:
        value = task.get(name)
        if name in _DICT_FIELDS and isinstance(value, dict):
            value = format_columns.DictColumn(value)
        values.append(value)
    return tuple(names), tuple(values)


def _stderr(cmd):
    return getattr(cmd.app, 'stderr', None) or sys.stderr


def _client(cmd):
    return cmd.app.client_manager.cloud_images


class TaskCreateCommand(command.ShowOne):
    """Base of the commands that create a task, with `--wait`."""

    task_type = None

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument(
            '--wait', action='store_true',
            help='Wait until the task ends and show the finished task (a progress line on a '
                 'terminal). Exit status 1 when it fails.')
        parser.add_argument(
            '--timeout', type=float, metavar='<seconds>', default=None,
            help='With --wait: give up after this many seconds (exit status 1; the task goes '
                 'on). Default: wait as long as it takes.')
        parser.add_argument(
            '--poll-interval', type=float, metavar='<seconds>', default=2.0,
            help='With --wait: seconds between two looks at the task (default 2).')
        return parser

    def task_input(self, parsed_args):
        raise NotImplementedError

    def take_action(self, parsed_args):
        self.failure = None
        if parsed_args.poll_interval <= 0 or (parsed_args.timeout is not None
                                              and parsed_args.timeout <= 0):
            raise exceptions.CommandError('--poll-interval and --timeout must be positive.')
        client = _client(self)
        task = client.create_task(self.task_type, self.task_input(parsed_args))
        if parsed_args.wait:
            err = _stderr(self)
            out = err if hasattr(err, 'isatty') and err.isatty() else None
            try:
                task = progress.wait(client.get_task, task['id'], out=out,
                                     interval=parsed_args.poll_interval,
                                     timeout=parsed_args.timeout)
            except progress.WaitTimeout as exc:
                raise exceptions.CommandError(str(exc)) from None
            if task.get('status') == 'failure':
                self.failure = (client_mod.one_line(task.get('message') or '')
                                or 'The task failed without a message.')
        return task_columns(task)

    def run(self, parsed_args):
        result = super().run(parsed_args)
        if getattr(self, 'failure', None):
            _stderr(self).write('Task failed: %s\n' % self.failure)
            return 1
        return result


class ImportImage(TaskCreateCommand):
    """Import a VHD from your Cloud Files container as a new image."""

    task_type = 'import'

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('source', metavar='<container/object>',
                            help='The VHD in your Cloud Files account, e.g. images/disk.vhd '
                                 '(one object, a DLO or an SLO).')
        parser.add_argument('--name', metavar='<name>', required=True,
                            help='Name of the new image.')
        return parser

    def task_input(self, parsed_args):
        container, _, obj = parsed_args.source.partition('/')
        if not container or not obj:
            raise exceptions.CommandError(
                'The source must be CONTAINER/OBJECT, e.g. images/disk.vhd; got %r.'
                % parsed_args.source)
        return {'import_from': parsed_args.source, 'import_from_format': 'vhd',
                'image_properties': {'name': parsed_args.name}}


class ExportImage(TaskCreateCommand):
    """Export an image into your Cloud Files container as <image id>.vhd."""

    task_type = 'export'

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('image', metavar='<image>', help='Image to export (name or ID).')
        parser.add_argument('container', metavar='<container>',
                            help='Existing container in your Cloud Files account.')
        return parser

    def task_input(self, parsed_args):
        if not parsed_args.container or '/' in parsed_args.container:
            raise exceptions.CommandError('The container is a container name, without "/"; '
                                          'got %r.' % parsed_args.container)
        return {'image_uuid': _client(self).find_image(parsed_args.image),
                'receiving_swift_container': parsed_args.container}


class CloneImage(TaskCreateCommand):
    """Clone an image of yours into another region (same project, same bytes, same properties)."""

    task_type = 'clone'

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('image', metavar='<image>', help='Image to clone (name or ID).')
        parser.add_argument('--region', metavar='<region>', required=True, dest='target_region',
                            help='Region to clone the image into, e.g. DFW.')
        return parser

    def task_input(self, parsed_args):
        region = parsed_args.target_region.strip()
        if not region or any(c.isspace() for c in region):
            raise exceptions.CommandError('--region is a region name such as DFW; got %r.'
                                          % parsed_args.target_region)
        return {'image_uuid': _client(self).find_image(parsed_args.image),
                'target_region': region}


class ShowTask(command.ShowOne):
    """Show a Cloud Images task."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('task', metavar='<task-id>', help='Task ID.')
        return parser

    def take_action(self, parsed_args):
        return task_columns(_client(self).get_task(parsed_args.task))


class ListTasks(command.Lister):
    """List your project's Cloud Images tasks."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('--type', metavar='<type>', choices=('import', 'export'),
                            help='Only tasks of this type (import or export).')
        parser.add_argument('--status', metavar='<status>',
                            choices=('pending', 'processing', 'success', 'failure'),
                            help='Only tasks in this status (pending, processing, success, '
                                 'failure).')
        return parser

    def take_action(self, parsed_args):
        tasks = _client(self).list_tasks(task_type=parsed_args.type,
                                         status=parsed_args.status)
        return ([label for _, label in LIST_COLUMNS],
                [tuple(task.get(key) for key, _ in LIST_COLUMNS) for task in tasks])
