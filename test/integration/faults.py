# SPDX-License-Identifier: MIT
"""Field faults for the robustness tests: a serial adapter that is unplugged
and plugged back in under the same name, a wall clock that is wrong at boot
or stepped while the daemon runs, a disk that is full or fills up.

Helpers and fixtures only; the tests are in test_robustness.py. Everything a
test starts goes through conftest's ``procs``, so a failing test leaves
nothing running.
"""

import calendar
import glob
import json
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import (PYTHON, SIM_DIR, Subscriber, check_complete, first_arrivals,  # noqa: F401
                      meterhub_binary, wait_until)


# --- the clock shim --------------------------------------------------------

def shim_path():
    """test/shim's LD_PRELOAD library in the build directory under test."""
    from conftest import build_dir
    found = sorted(glob.glob(os.path.join(build_dir(), 'test', 'shim', '*clockshift*.so*')))
    if not found:
        pytest.fail('clockshift shim not found under %s/test/shim; build first' % build_dir())
    return found[0]


class ClockShift:
    """The offset file the shim reads (at most every 20 ms): a relative offset
    in seconds, or ``abs EPOCH`` to set the clock to EPOCH and let it run."""

    # The shim re-reads the file at most every 20 ms; give it a few periods.
    SETTLE = 0.1

    def __init__(self, tmp_path):
        self.file = tmp_path / 'clockshift'
        self.set(0)

    def _write(self, line):
        # Written whole and renamed, so the shim never reads half a line.
        tmp = self.file.with_suffix('.tmp')
        tmp.write_text(line + '\n')
        os.replace(tmp, self.file)

    def set(self, offset_s):
        self._write(repr(float(offset_s)))

    def set_abs(self, epoch_s):
        self._write('abs %s' % epoch_s)

    def env(self):
        env = dict(os.environ)
        env['LD_PRELOAD'] = shim_path()
        env['CLOCKSHIFT_FILE'] = str(self.file)
        return env


@pytest.fixture
def clockshift(tmp_path):
    return ClockShift(tmp_path)


def start_daemon(gw, env=None):
    """conftest's Gateway.start, with an environment (for the shim)."""
    gw.proc = gw.procs.start([meterhub_binary(), '-c', str(gw.path)], gw.name, env=env)
    return gw


def assert_running(gw):
    """Fails the test at once, with the log's tail, if the daemon has exited."""
    rc = gw.proc.poll()
    if rc is not None:
        pytest.fail('daemon %s exited with %s%s; log tail:\n%s' % (
            gw.name, rc, ' (%s)' % signal.Signals(-rc).name if rc < 0 else '',
            log_tail(gw.proc.log_path)))


def log_tail(path, lines=30):
    try:
        return '\n'.join(path.read_text(errors='replace').splitlines()[-lines:])
    except OSError:
        return '(no log)'


# --- a subscriber that notes when each message arrived ---------------------

class TimedSubscriber(Subscriber):
    """conftest's Subscriber, also keeping the real time each message arrived."""

    def __init__(self, *args, **kw):
        self.arrivals = []
        super().__init__(*args, **kw)

    def _on_message(self, client, userdata, msg):
        now = time.time()
        super()._on_message(client, userdata, msg)
        with self.lock:
            self.arrivals.append(now)

    def timed(self, prefix=''):
        """[(arrival, topic, payload, retained)] under @prefix."""
        with self.lock:
            return [(t,) + m for t, m in zip(self.arrivals, self.messages)
                    if m[0].startswith(prefix)]


@pytest.fixture
def timed_subscriber():
    subs = []

    def make(port, topic, client_id='timed-sub', persistent=False):
        s = TimedSubscriber(port, topic, client_id, persistent)
        subs.append(s)
        return s
    yield make
    for s in subs:
        s.close()


# --- times in payloads -----------------------------------------------------

RFC3339 = re.compile(r'^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$')


def parse_rfc3339(s):
    """Epoch seconds of an RFC 3339 time, or None if @s is not one."""
    m = RFC3339.match(s)
    if not m:
        return None
    y, mo, d, h, mi, sec = (int(x) for x in m.groups()[:6])
    t = calendar.timegm((y, mo, d, h, mi, sec)) + float(m.group(7) or 0)
    if m.group(8) != 'Z':
        sign = 1 if m.group(8)[0] == '+' else -1
        t -= sign * (int(m.group(8)[1:3]) * 3600 + int(m.group(8)[4:6]) * 60)
    return t


def time_strings(obj, path='$'):
    """Every string in a JSON value that looks like an RFC 3339 time: [(path, s)]."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += time_strings(v, '%s.%s' % (path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += time_strings(v, '%s[%d]' % (path, i))
    elif isinstance(obj, str) and re.match(r'^\d{4}-\d\d-\d\dT', obj):
        out.append((path, obj))
    return out


def times_before(messages, year=2020):
    """[(topic, path, value)] of every time string before @year in @messages."""
    bad = []
    for m in messages:
        topic, payload = m[-3], m[-2]
        for path, s in time_strings(payload):
            if int(s[:4]) < year:
                bad.append((topic, path, s))
    return bad


# --- seq -------------------------------------------------------------------

def check_seq_unique(messages):
    """No seq was given to two different records."""
    first_arrivals(messages)


# --- a serial adapter with a stable name -----------------------------------

class StablePtyPair:
    """A socat pty pair behind fixed symlinks (<dir>/ttyGW, <dir>/ttyMETER),
    like a USB RS485 adapter under a udev name: it can be unplugged (socat
    stopped, the links go away) and plugged in again under the same names."""

    def __init__(self, procs, directory, name='adapter'):
        self.procs = procs
        self.name = name
        self.gateway_end = str(directory / 'ttyGW')
        self.meter_end = str(directory / 'ttyMETER')
        self.proc = None
        self.plug()

    def plug(self):
        for link in (self.gateway_end, self.meter_end):
            if os.path.lexists(link):
                os.unlink(link)
        self.proc = self.procs.start(
            ['socat', '-d', '-d', 'pty,raw,echo=0,link=%s' % self.gateway_end,
             'pty,raw,echo=0,link=%s' % self.meter_end], self.name)
        wait_until(lambda: os.path.exists(self.gateway_end) and os.path.exists(self.meter_end),
                   10, what='socat links %s, %s' % (self.gateway_end, self.meter_end))

    def unplug(self):
        self.proc.terminate()
        self.proc.wait(10)
        for link in (self.gateway_end, self.meter_end):
            if os.path.lexists(link):
                os.unlink(link)


class StableModbusSim:
    """test/sim/modbus_sim.py on a StablePtyPair's meter end; restartable."""

    def __init__(self, procs, tmp_path, pty, slaves, name='sim'):
        self.procs = procs
        self.pty = pty
        self.name = name
        self.config = tmp_path / (name + '-sim.json')
        self.log = tmp_path / (name + '-requests.jsonl')
        self.proc = None
        self.start(slaves)

    def start(self, slaves):
        self.config.write_text(json.dumps({'slaves': slaves}))
        self.proc = self.procs.start(
            [PYTHON, os.path.join(SIM_DIR, 'modbus_sim.py'), '--port', self.pty.meter_end,
             '--baud', '9600', '--parity', 'N', '--config', str(self.config),
             '--log', str(self.log)], self.name, stdout=subprocess.PIPE)
        line = self.proc.stdout.readline().decode()
        if 'READY' not in line:
            pytest.fail('modbus simulator did not start: %s' % self.proc.log_path.read_text())

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


# --- a small disk ----------------------------------------------------------

@pytest.fixture
def tmpfs(procs, tmp_path):
    """Mounts a tmpfs of the given size and returns its path; skips the test
    when that is not possible (not root, no mount). Every process is stopped
    before the unmount, which falls back to a lazy one if still busy."""
    mounts = []

    def mount(size, name='disk'):
        if os.geteuid() != 0:
            pytest.skip('mounting a tmpfs needs root')
        mnt = tmp_path / name
        mnt.mkdir()
        res = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=%s' % size, 'tmpfs', str(mnt)],
                             capture_output=True, text=True)
        if res.returncode != 0:
            pytest.skip('cannot mount a tmpfs: %s' % res.stderr.strip())
        mounts.append(mnt)
        return mnt
    yield mount
    procs.cleanup()
    for mnt in mounts:
        if subprocess.run(['umount', str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(['umount', '-l', str(mnt)], capture_output=True)


def fill_disk(mnt, name='fill'):
    """Fills the file system at @mnt to the last byte, as a runaway log would."""
    subprocess.run(['dd', 'if=/dev/zero', 'of=%s' % (mnt / name), 'bs=1M'],
                   capture_output=True)  # ends with ENOSPC, by design
    st = os.statvfs(mnt)
    free = st.f_bavail * st.f_frsize
    assert free < 64 * 1024, 'the disk is not full: %d bytes free' % free
    return free
