# SPDX-License-Identifier: MIT
"""Robustness: the faults a concentrator meets in the field. An RS485 adapter
unplugged and plugged back, a board that boots in 1970 without an RTC, NTP
stepping the clock an hour either way, a second daemon started by mistake, a
disk that is full or fills up, power cuts (SIGKILL) at any moment.

The wall clock is moved with test/shim's LD_PRELOAD library (CLOCK_REALTIME
only; the monotonic clock is never touched, as in a real clock step)."""

import random
import re
import subprocess
import time

import pytest

from conftest import PYTHON, gateway_config, meterhub_binary, typed, wait_until
from faults import (ClockShift, StableModbusSim, StablePtyPair, assert_running, check_complete,
                    check_seq_unique, fill_disk, log_tail, parse_rfc3339, start_daemon,
                    times_before)
from faults import clockshift, timed_subscriber, tmpfs  # noqa: F401,F811 (fixtures)

PREFIX = 'meterhub/gw-test'
BUS = 'rs485-1'

PROFILE = {'points': [
    {'name': 'energy_import_kwh', 'table': 'holding', 'address': 0, 'type': 'float32'},
    {'name': 'voltage_a_v', 'table': 'holding', 'address': 2, 'type': 'u16', 'scale': 0.1}]}


def slave(kwh=1234.5, volts_raw=2301):
    return {'typed': [typed('holding', 0, 'float32', kwh),
                      typed('holding', 2, 'u16', volts_raw)]}


def slaves(n, **kw):
    return {str(i): slave(**kw) for i in range(1, n + 1)}


def modbus_config(tmp_path, port, device, n_meters, **extra):
    return gateway_config(tmp_path, port, [{
        'name': BUS, 'device': device, 'protocol': 'modbus', 'timeout': '200ms',
        'meters': [{'id': 'm-%d' % i, 'address': i, 'profile': 'p'}
                   for i in range(1, n_meters + 1)]}],
        interval='1s', profiles={'p': PROFILE}, **extra)


def on_sim(tmp_path, port, modbus_sim, n_meters=2, **extra):
    sim = modbus_sim('bus1', slaves(n_meters))
    return modbus_config(tmp_path, port, sim.gateway_end, n_meters, **extra)


def readings(sub):
    """[(arrival, payload)] of every reading."""
    return [(t, p) for t, _, p, _ in sub.timed(PREFIX + '/reading/')]


def events(sub, type_):
    return [p for _, t, p, _ in sub.timed(PREFIX + '/event') if isinstance(p, dict) and
            p.get('type') == type_]


def healths(sub):
    """[(arrival, payload)] of every health report."""
    return [(t, p) for t, _, p, _ in sub.timed(PREFIX + '/health') if isinstance(p, dict)]


def bus_health(h):
    for b in h.get('buses', []):
        if b.get('name') == BUS:
            return b
    pytest.fail('health without bus %s: %r' % (BUS, h))


def per_meter(items):
    out = {}
    for t, p in items:
        out.setdefault(p['meter'], []).append((t, p))
    return out


def good_rounds(sub, meters, rounds, since=0.0, check=None):
    got = per_meter([(t, p) for t, p in readings(sub) if t >= since and p['quality'] == 'good'
                     and (check is None or check(p))])
    return all(len(got.get(m, [])) >= rounds for m in meters)


def read_time(p):
    """When the meter was read: read_at, else the boundary."""
    return parse_rfc3339(p.get('read_at') or p['ts'])


def test_clockshift_shim_shifts_only_the_wall_clock(clockshift):
    """Tooling check for the clock faults below: the shim moves CLOCK_REALTIME
    (relative and absolute, changed while the process runs), never CLOCK_MONOTONIC."""
    clockshift.set(-3600)
    out = subprocess.run(['date', '+%s'], env=clockshift.env(), capture_output=True, text=True,
                         check=True).stdout
    assert abs(int(out) - (time.time() - 3600)) <= 2, out
    clockshift.set_abs(86402)
    out = subprocess.run(['date', '+%s'], env=clockshift.env(), capture_output=True, text=True,
                         check=True).stdout
    assert 86402 <= int(out) <= 86404, out
    # One process, offset changed under it: wall moves, monotonic does not.
    script = ('import sys, time\n'
              'print(time.time(), time.monotonic(), flush=True)\n'
              'sys.stdin.readline()\n'
              'time.sleep(0.1)\n'
              'print(time.time(), time.monotonic(), flush=True)\n')
    clockshift.set(0)
    p = subprocess.Popen([PYTHON, '-c', script], env=clockshift.env(),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        wall0, mono0 = map(float, p.stdout.readline().split())
        assert abs(wall0 - time.time()) < 1 and abs(mono0 - time.monotonic()) < 1
        clockshift.set(7200.5)
        p.stdin.write('\n')
        p.stdin.flush()
        wall1, mono1 = map(float, p.stdout.readline().split())
    finally:
        p.kill()
        p.wait()
    assert abs(wall1 - (time.time() + 7200.5)) < 1, (wall0, wall1)
    assert abs(mono1 - time.monotonic()) < 1, (mono0, mono1)


def test_replugged_adapter_is_reopened(broker, procs, gateway, timed_subscriber, tmp_path):
    """Field fault: the USB RS485 adapter is pulled out and plugged back in (or
    re-enumerates after a brown-out) under the same udev name. The daemon must
    notice, report the port closed, and reopen it without a restart."""
    n = 2
    meters = ['m-%d' % i for i in range(1, n + 1)]
    pty = StablePtyPair(procs, tmp_path)
    sim = StableModbusSim(procs, tmp_path, pty, slaves(n))
    cfg = modbus_config(tmp_path, broker.port, pty.gateway_end, n, health={'interval': '1s'})
    sub = timed_subscriber(broker.port, PREFIX + '/#')
    gw = gateway(cfg).start()
    wait_until(lambda: good_rounds(sub, meters, 2), 15, what='good readings before the unplug')

    sim.stop()
    pty.unplug()
    unplugged = time.time()
    time.sleep(3)
    assert_running(gw)
    replugged = time.time()
    pty.plug()
    sim.start(slaves(n, kwh=2345.5, volts_raw=2302))

    def fresh(p):
        return p['values'].get('energy_import_kwh') == 2345.5 and \
            p['values'].get('voltage_a_v') == pytest.approx(230.2)
    wait_until(lambda: (assert_running(gw), good_rounds(sub, meters, 2, replugged, fresh))[1],
               15, what="good readings with the replugged simulator's values "
               '(the daemon did not reopen %s)' % pty.gateway_end)
    time.sleep(2.5)  # two more health reports
    assert_running(gw)

    gone = [p for _, p in readings(sub) if unplugged < read_time(p) < replugged]
    good = [p for p in gone if p['quality'] == 'good']
    assert not good, 'good readings while the adapter was unplugged: %r' % good[:3]
    assert re.search(r'reopen|open again', gw.log(), re.I), \
        'the log does not say the port was reopened:\n' + log_tail(gw.proc.log_path)

    reports = healths(sub)
    assert reports, 'no health report'
    for _, h in reports:
        assert isinstance(bus_health(h).get('port_open'), bool), \
            'health has no boolean buses[].port_open: %r' % bus_health(h)
    before = [h for t, h in reports if t < unplugged]
    during = [h for t, h in reports if unplugged + 1.5 < t < replugged]
    after = [h for t, h in reports if t > replugged + 1]
    assert before and bus_health(before[-1])['port_open'] is True, before[-1:]
    for h in during:
        assert bus_health(h)['port_open'] is False, \
            'health says port_open while the adapter was unplugged: %r' % bus_health(h)
    assert after and bus_health(after[-1])['port_open'] is True, after[-1:]

    # The head-end hears it too, through the store: lost once, back once.
    lost, back = ([*{p['seq']: p for p in events(sub, t)}.values()]
                  for t in ('bus_port_lost', 'bus_port_back'))
    assert len(lost) == 1 and len(back) == 1, (lost, back)
    assert lost[0]['bus'] == back[0]['bus'] == cfg['buses'][0]['name'], (lost, back)
    assert lost[0]['device'] == pty.gateway_end and lost[0]['error'], lost
    assert lost[0]['seq'] < back[0]['seq'], (lost, back)
    assert replugged - unplugged - 1.5 < back[0]['down_s'] < time.time() - unplugged + 1, back
    assert gw.stop() == 0


def test_boot_in_1970_waits_for_the_clock(broker, modbus_sim, gateway, timed_subscriber,
                                          clockshift, tmp_path):
    """Field fault: a concentrator without RTC battery boots with its clock in
    1970 and gets the time from NTP/4G later. Until then nothing may be read
    or published under a 1970 time; once the clock is set, readings flow with
    the right times and the step is reported as a clock_step event."""
    meters = ['m-1', 'm-2']
    cfg = on_sim(tmp_path, broker.port, modbus_sim, health={'interval': '1s'})
    sub = timed_subscriber(broker.port, PREFIX + '/#')
    clockshift.set_abs(86402)  # 1970-01-02T00:00:02Z
    gw = start_daemon(gateway(cfg), clockshift.env())
    time.sleep(4)
    assert_running(gw)
    early = sub.timed()
    assert not [m for m in early if '/reading/' in m[1]], \
        'readings published before the clock was set: %r' % \
        [m[2] for m in early if '/reading/' in m[1]][:2]
    assert not [m for m in early if m[1].endswith('/event')], \
        'events published before the clock was set: %r' % \
        [m[2] for m in early if m[1].endswith('/event')][:2]
    assert not times_before(early), \
        'times before 2020 published before the clock was set: %r' % times_before(early)[:5]
    assert any('clock' in line.lower() and 'wait' in line.lower()
               for line in gw.log().splitlines()), \
        'the log does not say it waits for the clock:\n' + log_tail(gw.proc.log_path)

    stepped = time.time()
    expected_step = stepped - (86402 + 4)  # about; the shim's clock started with the daemon
    clockshift.set(0)
    wait_until(lambda: (assert_running(gw), good_rounds(sub, meters, 1, stepped))[1], 5,
               what='readings within 5 s of the clock being set')
    wait_until(lambda: events(sub, 'clock_step'), 5, what='a clock_step event')
    time.sleep(1.5)
    assert_running(gw)
    ev = events(sub, 'clock_step')[0]
    assert isinstance(ev.get('step_s'), (int, float)) and not isinstance(ev['step_s'], bool), ev
    assert abs(ev['step_s'] - expected_step) < 60, (ev, expected_step)
    assert parse_rfc3339(ev['ts']) is not None and abs(parse_rfc3339(ev['ts']) - stepped) < 5, ev
    for t, p in readings(sub):
        assert abs(parse_rfc3339(p['ts']) - t) <= 2, 'reading ts %s, real time %.1f: %r' % (
            p['ts'], t, p)
    assert not times_before(sub.timed()), \
        'times before 2020 published: %r' % times_before(sub.timed())[:5]
    assert gw.stop() == 0


def run_clock_step(broker, modbus_sim, gateway, timed_subscriber, clockshift, tmp_path, step):
    meters = ['m-1', 'm-2']
    cfg = on_sim(tmp_path, broker.port, modbus_sim)
    sub = timed_subscriber(broker.port, PREFIX + '/#')
    clockshift.set(0)
    gw = start_daemon(gateway(cfg), clockshift.env())
    wait_until(lambda: (assert_running(gw), good_rounds(sub, meters, 2))[1], 15,
               what='good readings before the step')
    stepped = time.time()
    clockshift.set(step)
    time.sleep(ClockShift.SETTLE)

    def shifted(p):
        return abs(parse_rfc3339(p['ts']) - (time.time() + step)) < 5
    deadline = stepped + 5
    while not good_rounds(sub, meters, 2, stepped, shifted) and time.time() < deadline:
        assert_running(gw)
        time.sleep(0.05)
    after = [(t, p) for t, p in readings(sub) if t >= stepped + 1.5]
    assert after, 'reading stalled: no reading in the 5 s after a clock step of %+d s' % step
    # The shim works on the daemon: its read_at moved with the clock.
    assert all(abs(read_time(p) - (t + step)) < 3 for t, p in after), \
        'read_at did not follow the shifted clock (is the shim effective?): %r' % after[:2]
    assert good_rounds(sub, meters, 2, stepped, shifted), \
        'not 2 good readings per meter with ts near real time %+d s within 5 s of the step: ' \
        '%r' % [p for _, p in after][:4]
    time.sleep(max(0.0, 5.5 - (time.time() - stepped)))
    wait_until(lambda: events(sub, 'clock_step'), 5, what='a clock_step event')
    assert_running(gw)
    after = [(t, p) for t, p in readings(sub) if t >= stepped + 1.5]
    for t, p in after:
        assert abs(parse_rfc3339(p['ts']) - (t + step)) <= 2.5, \
            'reading ts %s, expected about real time %+d s (%.1f): %r' % (p['ts'], step,
                                                                           t + step, p)
    for _, p in readings(sub):
        assert abs(read_time(p) - parse_rfc3339(p['ts'])) <= 2, \
            'read_at more than 2 intervals from ts: %r' % p
    ev = events(sub, 'clock_step')
    assert len(ev) == 1, ev
    assert parse_rfc3339(ev[0]['ts']) is not None, ev
    assert abs(ev[0]['step_s'] - step) <= 10, ev
    counts = {m: len([1 for t, p in readings(sub) if p['meter'] == m and
                      stepped <= t <= stepped + 5]) for m in meters}
    assert gw.stop() == 0
    return counts


def test_clock_stepped_back_an_hour(broker, modbus_sim, gateway, timed_subscriber, clockshift,
                                    tmp_path):
    """Field fault: NTP (or the head-end's time sync) steps a fast clock back
    an hour. Reading must go on at once with the new times, not stall for an
    hour waiting for a boundary that already passed, and the step is reported."""
    run_clock_step(broker, modbus_sim, gateway, timed_subscriber, clockshift, tmp_path, -3600)


def test_clock_stepped_forward_an_hour(broker, modbus_sim, gateway, timed_subscriber,
                                       clockshift, tmp_path):
    """Field fault: the clock is stepped forward an hour (a slow RTC corrected).
    The hour of boundaries skipped over must not be read in a burst that
    floods the bus; reading goes on at the new times and the step is reported."""
    counts = run_clock_step(broker, modbus_sim, gateway, timed_subscriber, clockshift, tmp_path,
                            3600)
    assert all(c <= 7 for c in counts.values()), \
        'a burst of catch-up reads after the step (readings per meter in 5 s): %r' % counts


def test_second_daemon_on_the_same_store_refuses_to_start(broker, procs, modbus_sim, gateway,
                                                          timed_subscriber, tmp_path):
    """Field fault: a second meterhub is started by hand (or by a second unit
    file) next to the running one. On the same store it must refuse at once,
    naming the holder; with another store on the same serial port it must
    not touch the port the first one owns."""
    meters = ['m-1', 'm-2']
    cfg = on_sim(tmp_path, broker.port, modbus_sim)
    sub = timed_subscriber(broker.port, PREFIX + '/#')
    a = gateway(cfg, name='meterhub-a').start()
    wait_until(lambda: (assert_running(a), good_rounds(sub, meters, 2))[1], 15,
               what="daemon A's readings")

    b = procs.start([meterhub_binary(), '-c', str(a.path)], 'meterhub-b')
    try:
        rc = b.wait(10)
    except subprocess.TimeoutExpired:
        rc = None
    blog = b.log_path.read_text(errors='replace')
    assert rc == 2, 'second daemon on the same store: exit %r after 10 s (want 2); log:\n%s' % (
        rc, blog[-2000:])
    store = cfg['store']['path']
    assert store in blog, 'the refusal does not name the store %s:\n%s' % (store, blog)
    assert str(a.proc.pid) in blog, "the refusal does not name A's pid %d:\n%s" % (a.proc.pid,
                                                                                 blog)
    assert re.search(r'in use|locked', blog, re.I), blog
    since = time.time()
    wait_until(lambda: (assert_running(a), good_rounds(sub, meters, 2, since))[1], 10,
               what='A to keep publishing')
    check_seq_unique(sub.timed())

    other = dict(cfg, gateway={'id': 'gw-other', 'timezone': 'Asia/Shanghai'},
                 store=dict(cfg['store'], path=str(tmp_path / 'store-other')))
    c = gateway(other, name='meterhub-c').start()
    since = time.time()
    time.sleep(5)
    assert c.proc.poll() is None, 'daemon C (other store, same port) exited with %s:\n%s' % (
        c.proc.returncode, c.log())
    assert_running(a)
    got = per_meter([(t, p) for t, p in readings(sub) if t >= since])
    for m in meters:
        assert len(got.get(m, [])) >= 3, "A's readings stalled while C runs: %r" % got
        bad = [p for _, p in got[m] if p['quality'] != 'good']
        assert not bad, "A's readings disturbed by a second daemon on its port: %r" % bad[:3]
    assert re.search(r'in use|busy|locked', c.log(), re.I), \
        "C's log does not say the port is in use:\n" + log_tail(c.proc.log_path)
    check_seq_unique(sub.timed())
    assert c.stop() == 0
    assert a.stop() == 0


def test_full_disk_at_first_start_exits_cleanly(broker, modbus_sim, gateway, tmpfs, tmp_path):
    """Field fault: the data partition is already full (logs, a core dump)
    when meterhub is first started. It must refuse to run with a clear
    message, not start and die of SIGBUS the first time LMDB touches a page."""
    mnt = tmpfs('16m')
    store = mnt / 'store'
    store.mkdir()  # before the fill: the reservation is what must fail, not the mkdir
    fill_disk(mnt)
    cfg = on_sim(tmp_path, broker.port, modbus_sim, n_meters=1)
    cfg['store'] = {'path': str(store), 'max_bytes': '4MiB'}
    gw = gateway(cfg).start()
    try:
        rc = gw.proc.wait(10)
    except subprocess.TimeoutExpired:
        rc = None
    log = gw.log()
    assert rc == 2, 'on a full disk: exit %r after 10 s (want 2; negative is a signal); log:\n%s' \
        % (rc, log[-2000:])
    assert re.search(r'reserve|space', log, re.I), log
    assert str(store) in log, 'the message does not name %s:\n%s' % (store, log)


def test_disk_filled_while_running_loses_nothing(persistent_broker, modbus_sim, gateway,
                                                 timed_subscriber, tmpfs, tmp_path):
    """Field fault: another process fills the data partition while the broker
    is unreachable. The store's space was reserved when it opened, so every
    reading of the outage is kept and delivered afterwards."""
    broker = persistent_broker
    meters = ['m-%d' % i for i in range(1, 5)]
    mnt = tmpfs('32m')
    cfg = on_sim(tmp_path, broker.port, modbus_sim, n_meters=4, health={'interval': '1s'})
    cfg['store'] = {'path': str(mnt / 'store'), 'max_bytes': '4MiB'}
    sub = timed_subscriber(broker.port, PREFIX + '/#', 'persistent-sub', persistent=True)
    gw = gateway(cfg).start()
    wait_until(lambda: (assert_running(gw), good_rounds(sub, meters, 2))[1], 15,
               what='readings before the outage')
    broker.stop()
    down = time.time()
    fill_disk(mnt)
    time.sleep(8)
    assert_running(gw)
    broker.start()
    up = time.time()
    wait_until(lambda: (assert_running(gw),
                        good_rounds(sub, meters, 1, up,
                                    lambda p: parse_rfc3339(p['ts']) >= up + 1))[1],
               30, what='fresh readings after the outage')
    time.sleep(2)
    log = gw.log()
    failed = [line for line in log.splitlines()
              if re.search(r'commit failed|discarded', line, re.I)]
    msgs = sub.timed()
    check_complete(msgs)
    outage = per_meter([(t, p) for t, p in readings(sub)
                        if down + 1 <= parse_rfc3339(p['ts']) < up])
    for m in meters:
        assert len({p['ts'] for _, p in outage.get(m, [])}) >= int(up - down) - 2, \
            'readings of the outage missing for %s: got only %r; store log: %r' % (
                m, sorted({p['ts'] for _, p in outage.get(m, [])}), failed[:2])
    for ev in events(sub, 'store_dropped'):
        assert ev.get('lost', 0) == 0, 'records lost on a full disk: %r' % ev
    late = timed_subscriber(broker.port, PREFIX + '/health', 'late')
    wait_until(lambda: late.timed(), 5, what='the retained health')
    assert late.timed()[-1][2]['store']['lost'] == 0, late.timed()[-1][2]
    assert not failed, 'the store failed on the full disk: %r' % failed[:5]
    assert gw.stop() == 0


def test_sigkill_at_random_moments_never_corrupts_the_store(broker, modbus_sim, gateway,
                                                            timed_subscriber, tmp_path):
    """Field fault: power cuts (SIGKILL here) at any moment of a busy drain.
    After every one the LMDB store must be intact and the daemon must carry
    on from it without losing or reusing a seq."""
    cfg = on_sim(tmp_path, broker.port, modbus_sim, n_meters=8)
    store = cfg['store']['path']
    sub = timed_subscriber(broker.port, PREFIX + '/#')
    rng = random.Random(8645)
    for i in range(15):
        gw = gateway(cfg, name='meterhub-%d' % i).start()
        time.sleep(rng.uniform(0.3, 2.0))
        gw.proc.kill()
        gw.proc.wait()
        res = subprocess.run(['mdb_stat', '-a', store], capture_output=True, text=True)
        assert res.returncode == 0, 'store corrupt after kill %d: %s%s\n%s' % (
            i + 1, res.stdout, res.stderr, log_tail(gw.proc.log_path))
        assert re.search(r'^Status of outbox$', res.stdout, re.M), \
            'no outbox table after kill %d:\n%s' % (i + 1, res.stdout)
    gw = gateway(cfg, name='meterhub-final').start()
    since = time.time()
    wait_until(lambda: (assert_running(gw),
                        good_rounds(sub, ['m-%d' % i for i in range(1, 9)], 3, since))[1],
               20, what='readings after the last restart')
    time.sleep(1)
    assert gw.stop() == 0
    check_complete(sub.timed())
