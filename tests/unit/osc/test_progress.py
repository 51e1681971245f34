"""The `--wait` loop and the progress line of the OpenStackClient plugin (fakes only)."""

import io

import pytest

from rax_cloudimages_osc import progress

MiB = 1024 * 1024


class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


class Tty(io.StringIO):
    def isatty(self):
        return True


def _fetcher(bodies):
    calls = []

    def get_task(task_id):
        calls.append(task_id)
        return bodies[min(len(calls), len(bodies)) - 1]
    return get_task, calls


def test_render_bar_with_progress():
    task = {'type': 'import', 'status': 'processing',
            'progress': {'stage': 'validating', 'bytes_done': 3 * MiB, 'bytes_total': 12 * MiB}}
    line = progress.render(task, 75)
    assert line.startswith('import processing (validating) [')
    assert '#' * 8 + '-' * 22 + ']' in line  # 25% of 30
    assert ' 25% 3.0 MiB/12.0 MiB 1:15' in line


def test_render_bar_is_capped_and_handles_hours():
    task = {'type': 'export', 'status': 'processing',
            'progress': {'stage': 'uploading', 'bytes_done': 20, 'bytes_total': 10}}
    line = progress.render(task, 3 * 3600 + 62)
    assert '[' + '#' * 30 + ']' in line and '100%' in line and '3:01:02' in line


def test_render_spinner_without_progress():
    task = {'type': 'import', 'status': 'pending'}
    assert progress.render(task, 5, tick=0) == 'import pending | 0:05'
    assert progress.render(task, 6, tick=1) == 'import pending / 0:06'


@pytest.mark.parametrize('bad', [
    'half', 7, None, [], {'bytes_done': -1, 'bytes_total': 10},
    {'bytes_done': 'x', 'bytes_total': 10}, {'bytes_done': True, 'bytes_total': 10},
    {'bytes_done': 5, 'bytes_total': 0}, {'stage': ['x'], 'bytes_done': None},
])
def test_render_malformed_progress_falls_back_to_spinner(bad):
    line = progress.render({'type': 'import', 'status': 'processing', 'progress': bad}, 1)
    assert '[' not in line and '%' not in line and line.endswith('0:01'), line


def test_render_unknown_total_shows_bytes_done():
    task = {'type': 'import', 'status': 'processing',
            'progress': {'stage': 'storing', 'bytes_done': 2048}}
    assert progress.render(task, 0) == 'import processing (storing) | 2.0 KiB 0:00'


def test_render_stage_is_one_short_line():
    task = {'type': 'import', 'status': 'processing',
            'progress': {'stage': 'a\r\nb' + 'x' * 200, 'bytes_done': 1, 'bytes_total': 2}}
    line = progress.render(task, 0)
    assert '\n' not in line and '\r' not in line and len(line) < 140


def test_wait_polls_until_success_and_draws_on_a_terminal():
    clock = FakeClock()
    bodies = [{'id': 't', 'type': 'import', 'status': 'pending'},
              {'id': 't', 'type': 'import', 'status': 'processing',
               'progress': {'stage': 'storing', 'bytes_done': 1, 'bytes_total': 2}},
              {'id': 't', 'type': 'import', 'status': 'success', 'result': {'image_id': 'i'}}]
    get_task, calls = _fetcher(bodies)
    out = Tty()
    task = progress.wait(get_task, 't', out=out, interval=2, clock=clock.clock,
                         sleep=clock.sleep)
    assert task['status'] == 'success' and calls == ['t'] * 3
    assert clock.sleeps == [2, 2]
    text = out.getvalue()
    assert 'import pending |' in text and '[' + '#' * 15 + '-' * 15 + ']  50%' in text
    assert text.endswith('\r')  # the line is cleared before the result is printed
    assert text.split('\r')[-2].strip() == ''


def test_wait_returns_failure_bodies_and_draws_nothing_without_terminal():
    clock = FakeClock()
    get_task, calls = _fetcher([{'status': 'processing'},
                                {'status': 'failure', 'message': 'boom'}])
    task = progress.wait(get_task, 't', out=None, interval=1, clock=clock.clock,
                         sleep=clock.sleep)
    assert task == {'status': 'failure', 'message': 'boom'} and len(calls) == 2


def test_wait_times_out_and_clears_the_line():
    clock = FakeClock()
    get_task, calls = _fetcher([{'type': 'export', 'status': 'processing'}])
    out = Tty()
    with pytest.raises(progress.WaitTimeout, match='Timed out after 0:10 waiting for task t '
                                                   r'\(still processing\)'):
        progress.wait(get_task, 't', out=out, interval=5, timeout=10, clock=clock.clock,
                      sleep=clock.sleep)
    assert len(calls) == 3 and out.getvalue().endswith('\r')


def test_wait_propagates_errors_of_the_fetch():
    def get_task(task_id):
        raise RuntimeError('404 Not Found')
    with pytest.raises(RuntimeError):
        progress.wait(get_task, 't', sleep=lambda s: None)


def test_render_strips_terminal_escapes_from_service_fields():
    task = {'type': 'import\x1b]0;owned\x07', 'status': 'processing\x1b[2J',
            'progress': {'stage': '\x1b[31mred\x1b[0m\r\x00x', 'bytes_done': 1,
                         'bytes_total': 2}}
    line = progress.render(task, 0)
    assert '\x1b' not in line and '\x07' not in line and '\r' not in line and '\x00' not in line
    assert line.startswith('import ]0;owned processing [2J ([31mred [0m x) [')
