# SPDX-License-Identifier: MIT
"""The daemon and its service manager (sd_notify), end to end.

This machine's PID 1 may not be systemd (containers, CI), so the test plays
the service manager itself: it binds its own NOTIFY_SOCKET, sets
WATCHDOG_USEC as systemd does for WatchdogSec=, and starts the real daemon
on a pty bus with a simulated Modbus meter and a real broker. It checks that
STATUS= says what the daemon does, READY=1 comes once it serves (and a
reading follows), WATCHDOG=1 keep-alives come from the running loop, stop
while the process is stalled (SIGSTOP) and resume after SIGCONT, and that
STOPPING=1 comes at shutdown.
"""

import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import gateway_config, meterhub_binary, typed, wait_until
from faults import clockshift, start_daemon  # noqa: F401 (fixture)

PREFIX = 'meterhub/gw-test'
PROFILE = {'points': [
    {'name': 'energy_import_kwh', 'table': 'holding', 'address': 0, 'type': 'float32'}]}
# systemd passes WatchdogSec= as WATCHDOG_USEC; the daemon pings every half of it.
WATCHDOG_S = 0.4


def built_with_systemd():
    out = subprocess.run(['ldd', meterhub_binary()], capture_output=True, text=True).stdout
    return 'libsystemd' in out


pytestmark = pytest.mark.skipif(not built_with_systemd(),
                                reason='meterhub built without libsystemd (-Dsystemd=disabled)')


class NotifySocket:
    """A datagram socket in the abstract namespace, as sd_notify(3) expects,
    keeping every message with the monotonic time it arrived."""

    def __init__(self):
        self.name = 'meterhub-test-%d-%d' % (os.getpid(), time.monotonic_ns())
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind('\0' + self.name)
        self.sock.settimeout(0.1)
        self.messages = []  # (monotonic time, {key: value})
        self.lock = threading.Lock()
        self.running = True
        self.thread = threading.Thread(target=self._receive, daemon=True)
        self.thread.start()

    def _receive(self):
        while self.running:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            fields = dict(line.split('=', 1) for line in data.decode().split('\n') if '=' in line)
            with self.lock:
                self.messages.append((time.monotonic(), fields))

    def address(self):
        return '@' + self.name

    def snapshot(self):
        with self.lock:
            return list(self.messages)

    def values(self, key):
        return [f[key] for _, f in self.snapshot() if key in f]

    def keepalives(self, since=0.0, until=float('inf')):
        return [t for t, f in self.snapshot() if f.get('WATCHDOG') == '1' and since <= t < until]

    def close(self):
        self.running = False
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def notify():
    n = NotifySocket()
    yield n
    n.close()


def notify_env(notify, watchdog=True, base=None):
    env = dict(base if base is not None else os.environ)
    env['NOTIFY_SOCKET'] = notify.address()
    env.pop('WATCHDOG_PID', None)
    env.pop('WATCHDOG_USEC', None)
    if watchdog:
        env['WATCHDOG_USEC'] = str(int(WATCHDOG_S * 1e6))
    return env


def one_meter(tmp_path, broker, modbus_sim):
    sim = modbus_sim('bus1', {'1': {'typed': [typed('holding', 0, 'float32', 1234.5)]}})
    return gateway_config(tmp_path, broker.port, [{
        'name': 'rs485-1', 'device': sim.gateway_end, 'protocol': 'modbus', 'timeout': '200ms',
        'meters': [{'id': 'm-1', 'address': 1, 'profile': 'p'}]}],
        interval='1s', profiles={'p': PROFILE})


def test_ready_status_watchdog_and_stopping(broker, modbus_sim, gateway, subscriber_factory,
                                            notify, tmp_path):
    cfg = one_meter(tmp_path, broker, modbus_sim)
    sub = subscriber_factory(broker.port, PREFIX + '/#')
    gw = start_daemon(gateway(cfg), notify_env(notify))

    wait_until(lambda: notify.values('READY'), 10, what='READY=1')
    statuses = notify.values('STATUS')
    assert any(s.startswith('opening the store at ') for s in statuses), statuses
    # READY comes after the store is open, and the status says what runs.
    msgs = notify.snapshot()
    ready_at = next(i for i, (_, f) in enumerate(msgs) if f.get('READY') == '1')
    store_at = next(i for i, (_, f) in enumerate(msgs)
                    if f.get('STATUS', '').startswith('opening the store'))
    assert store_at < ready_at, msgs
    wait_until(lambda: 'running: 1 buses, 1 meters' in notify.values('STATUS'), 5,
               what='STATUS=running')
    wait_until(lambda: sub.readings(PREFIX), 10, what='a reading after READY')
    assert sub.readings(PREFIX)[0]['quality'] == 'good', sub.readings(PREFIX)[0]

    # Keep-alives at half the watchdog interval, from the loop.
    start = time.monotonic()
    time.sleep(2.0)
    got = notify.keepalives(start, start + 2.0)
    assert 6 <= len(got) <= 12, 'expected a WATCHDOG=1 every %.1f s, got %d in 2 s' % (
        WATCHDOG_S / 2, len(got))
    assert max(b - a for a, b in zip(got, got[1:])) < WATCHDOG_S, got

    assert gw.stop() == 0
    assert notify.values('STOPPING') == ['1'], notify.snapshot()[-3:]
    stopping_at = max(t for t, f in notify.snapshot() if 'STOPPING' in f)
    assert not notify.keepalives(stopping_at + 0.01), 'keep-alives after STOPPING=1'


def test_a_stalled_loop_stops_the_keepalives(broker, modbus_sim, gateway, notify, tmp_path):
    """SIGSTOP stalls the whole process, the loop included, as a hang would:
    no keep-alive may arrive then, or systemd could not restart a hung daemon."""
    cfg = one_meter(tmp_path, broker, modbus_sim)
    gw = start_daemon(gateway(cfg), notify_env(notify))
    wait_until(lambda: len(notify.keepalives()) >= 3, 10, what='keep-alives')

    gw.proc.send_signal(signal.SIGSTOP)
    stalled = time.monotonic()
    time.sleep(3 * WATCHDOG_S)
    # One datagram may have been in flight when the signal landed.
    late = notify.keepalives(stalled + 0.05)
    assert not late, '%d keep-alives from a stopped process' % len(late)

    gw.proc.send_signal(signal.SIGCONT)
    resumed = time.monotonic()
    wait_until(lambda: len(notify.keepalives(resumed)) >= 2, 2 * WATCHDOG_S + 1,
               what='keep-alives after SIGCONT')
    assert gw.stop() == 0


def test_no_watchdog_asked_no_keepalives(broker, modbus_sim, gateway, notify, tmp_path):
    """Without WatchdogSec= (no WATCHDOG_USEC) the daemon sends READY but no keep-alives."""
    cfg = one_meter(tmp_path, broker, modbus_sim)
    gw = start_daemon(gateway(cfg), notify_env(notify, watchdog=False))
    wait_until(lambda: notify.values('READY'), 10, what='READY=1')
    time.sleep(1.0)
    assert not notify.keepalives(), notify.snapshot()
    assert gw.stop() == 0


def test_status_says_it_waits_for_the_clock(broker, modbus_sim, gateway, notify, clockshift,
                                            tmp_path):
    """A board without RTC boots in 1970: `systemctl status` must say why nothing is read,
    and say it runs once the clock is set."""
    cfg = one_meter(tmp_path, broker, modbus_sim)
    clockshift.set_abs(86402)  # 1970-01-02T00:00:02Z
    gw = start_daemon(gateway(cfg), notify_env(notify, base=clockshift.env()))
    wait_until(lambda: notify.values('READY'), 10, what='READY=1')
    wait_until(lambda: [s for s in notify.values('STATUS')
                        if s.startswith('waiting for the wall clock to be set')], 5,
               what='STATUS=waiting for the wall clock')
    time.sleep(1.0)
    assert not [s for s in notify.values('STATUS') if s.startswith('running')], \
        notify.values('STATUS')
    seen = len(notify.values('STATUS'))
    clockshift.set(0)
    wait_until(lambda: 'running: 1 buses, 1 meters' in notify.values('STATUS')[seen:], 5,
               what='STATUS=running once the clock is set')
    assert gw.stop() == 0
