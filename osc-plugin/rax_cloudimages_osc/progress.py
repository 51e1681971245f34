"""`--wait`: poll a task until it ends, drawing its progress on a terminal.

Pure functions and a loop with injectable clock, sleep and output, so they are unit-tested with
fakes. A task body may carry `progress` {"stage": ..., "bytes_done": N, "bytes_total": M}
(the service's extension); with it the line is a bar, without it a spinner and the elapsed
time. Nothing is drawn when the output is not a terminal.
"""

import time

from rax_cloudimages_osc.client import FINAL_STATUSES
from rax_cloudimages_osc.client import one_line

SPINNER = '|/-\\'
BAR_WIDTH = 30


class WaitTimeout(Exception):
    pass


def _size(n):
    value = float(n)
    for unit in ('B', 'KiB', 'MiB', 'GiB', 'TiB'):
        if value < 1024 or unit == 'TiB':
            return ('%d %s' % (value, unit)) if unit == 'B' else ('%.1f %s' % (value, unit))
        value /= 1024
    raise AssertionError('unreachable')


def _elapsed(seconds):
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return ('%d:%02d:%02d' % (hours, minutes, secs)) if hours else ('%d:%02d' % (minutes, secs))


def _int(value):
    """A non-negative int from a field the service (or anyone) filled; None if it is not one."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def progress_of(task):
    """(stage, done, total) from a task body's `progress`, or None when absent or malformed."""
    progress = task.get('progress') if isinstance(task, dict) else None
    if not isinstance(progress, dict):
        return None
    stage = progress.get('stage')
    stage = one_line(stage, 40) if isinstance(stage, str) else ''
    return stage, _int(progress.get('bytes_done')), _int(progress.get('bytes_total'))


def render(task, elapsed, tick=0, width=BAR_WIDTH):
    """One status line (no newline) for a task at `elapsed` seconds."""
    status = one_line(task['status'], 20) if isinstance(task.get('status'), str) else '?'
    kind = one_line(task['type'], 20) if isinstance(task.get('type'), str) else 'task'
    head = '%s %s' % (kind, status)
    progress = progress_of(task)
    if progress:
        stage, done, total = progress
        if stage:
            head += ' (%s)' % stage
        if done is not None and total:
            fraction = min(done, total) / total
            filled = int(round(fraction * width))
            bar = '#' * filled + '-' * (width - filled)
            return '%s [%s] %3d%% %s/%s %s' % (head, bar, int(fraction * 100), _size(done),
                                               _size(total), _elapsed(elapsed))
        if done is not None:
            return '%s %s %s %s' % (head, SPINNER[tick % len(SPINNER)], _size(done),
                                    _elapsed(elapsed))
    return '%s %s %s' % (head, SPINNER[tick % len(SPINNER)], _elapsed(elapsed))


def wait(get_task, task_id, out=None, interval=2.0, timeout=None,
         clock=time.monotonic, sleep=time.sleep):
    """Poll `get_task(task_id)` until the task is success or failure; returns the last body.

    `out` (a terminal stream, or None) gets the progress line, redrawn in place and cleared
    at the end. Raises WaitTimeout after `timeout` seconds (None: wait as long as it takes).
    """
    start = clock()
    tick = 0
    last_len = 0
    try:
        while True:
            task = get_task(task_id)
            if task.get('status') in FINAL_STATUSES:
                return task
            elapsed = clock() - start
            if out is not None:
                line = render(task, elapsed, tick)
                out.write('\r' + line + ' ' * max(0, last_len - len(line)))
                out.flush()
                last_len = len(line)
                tick += 1
            if timeout is not None and elapsed >= timeout:
                raise WaitTimeout('Timed out after %s waiting for task %s (still %s); '
                                  'see `openstack cloud-image task show %s`.'
                                  % (_elapsed(elapsed), task_id, task.get('status'), task_id))
            sleep(interval)
    finally:
        if out is not None and last_len:
            out.write('\r' + ' ' * last_len + '\r')
            out.flush()
