# SPDX-License-Identifier: MIT
"""Remote trip / restore / keep-power / recall commands end to end, against
the command contract (DESIGN.md "Commands" and its working contract): a
head-end signs a command (cmdsign.py, written from the contract, not from the
C code) and publishes it on <prefix>/cmd; the real daemon verifies it,
journals it, drives a simulated meter on a pty bus and reports every state
on <prefix>/cmd/result. What the meter really received is taken from the
simulators' own logs: a 1CH frame in the DL/T 645 log, a coil write in the
Modbus log.

The whole module is skipped while the daemon's configuration refuses the
`commands` key; once it accepts it, every test here runs.

Readiness: the daemon is taken as listening for commands once the broker's
log shows its subscription to <prefix>/cmd (or, for a session it kept, its
reconnection after one), never after a sleep.
"""

import datetime as dt
import json
import os
import re
import signal
import subprocess
import time
import zoneinfo

import paho.mqtt.client as mqtt
import pytest

import cmdsign
from conftest import (check_complete, first_arrivals, gateway_config, meterhub_binary, typed,
                      wait_until)
from faults import log_tail, parse_rfc3339

PREFIX = 'meterhub/gw-test'
CMD_TOPIC = PREFIX + '/cmd'
RESULT_TOPIC = PREFIX + '/cmd/result'
CLIENT_ID = 'meterhub-gw-test'
TZNAME = 'Asia/Shanghai'  # the gateway's zone, and the simulated meters' clocks
KEY = bytes.fromhex('5f1d3c0a9b8e7f6a5d4c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3a291807f6e')
WRONG_KEY = bytes(32)

TERMINAL = ('succeeded', 'failed', 'rejected', 'expired')
ANY = object()

# The contract's example values, shortened so that the tests stay fast.
COMMANDS = {'max_attempts': 3, 'retry_backoff': '1s', 'max_skew': '300s', 'settle': '300ms',
            'confirm_within': '3s'}

# The simulator's default control password: level 02, password 000000.
CONTROL_645 = {'password_level': 2, 'password': '000000', 'operator': '00000000',
               'close': 'direct'}
POINTS_ONE = [{'di': '00010000'}]  # one frame a read
POINTS_SEVEN = [{'di': d} for d in ('0001FF00', '00020000', '02010100', '02020100', '02030000',
                                    '02060000', '02800002')]  # the single-phase profile's frames
CONTROL_MODBUS = {'trip': {'table': 'coil', 'address': 0, 'value': 1},
                  'restore': {'table': 'coil', 'address': 0, 'value': 0},
                  'relay': {'table': 'discrete', 'address': 0, 'open_when': 1}}

N1_TRIP, N1_CLOSE, N1_KEEP_ON, N1_KEEP_OFF = 0x1A, 0x1C, 0x3A, 0x3B
SW3_READS = ('04000503', '040005FF')  # where a DL/T 645 meter says what its relay does


def addr(i):
    return '%012d' % i


def profiles(points):
    return {
        'dlt645-ctl': {'points': points, 'control': CONTROL_645},
        'dlt645-plain': {'points': points},  # no control section: commands are unsupported
        'modbus-ctl': {'points': [{'name': 'energy_import_kwh', 'table': 'holding',
                                   'address': 0, 'type': 'float32'}],
                       'control': CONTROL_MODBUS},
    }


def modbus_slave(**extra):
    s = {'typed': [typed('holding', 0, 'float32', 1234.5)], 'relay': {'coil': 0, 'discrete': 0}}
    s.update(extra)
    return s


def mqtt_matches(filt, topic):
    f, t = filt.split('/'), topic.split('/')
    for i, part in enumerate(f):
        if part == '#':
            return True
        if i >= len(t) or (part != '+' and part != t[i]):
            return False
    return len(f) == len(t)


# ---- fixtures ----------------------------------------------------------------

@pytest.fixture(scope='module')
def command_support(tmp_path_factory):
    """Skips the module while `meterhub --check-config` refuses a minimal
    configuration with a commands section as not supported yet."""
    d = tmp_path_factory.mktemp('cmd-support')
    key = cmdsign.write_key_file(d / 'cmd.key', KEY)
    cfg = gateway_config(d, 1883, [{
        'name': 'rs485-1', 'device': str(d / 'ttyS9'), 'baud': 2400, 'parity': 'even',
        'protocol': 'dlt645', 'meters': [
            {'id': 'm-1', 'address': addr(1), 'profile': 'dlt645-single-phase'}]}],
        commands={'hmac_key_file': str(key)})
    path = d / 'check.yaml'
    path.write_text(json.dumps(cfg, indent=2))
    r = subprocess.run([meterhub_binary(), '--check-config', '-c', str(path)],
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        if re.search(r'\bcommands: .*not supported', r.stderr):
            pytest.skip('daemon has no command support yet')
        pytest.fail('--check-config refuses a minimal commands section (exit %d):\n%s'
                    % (r.returncode, r.stderr))


@pytest.fixture(autouse=True)
def meter_clock_zone(monkeypatch):
    """The simulated meters keep the gateway's local time (Asia/Shanghai), as
    a meter the gateway sets does; the 1CH deadline is checked against it."""
    monkeypatch.setenv('TZ', TZNAME)


class Publisher:
    """The head-end: publishes commands with QoS 1 and waits for the PUBACK."""

    def __init__(self, port):
        self.client = mqtt.Client(client_id='test-headend', clean_session=True)
        self.client.max_inflight_messages_set(100)
        self.client.connect('127.0.0.1', port, keepalive=30)
        self.client.loop_start()
        wait_until(self.client.is_connected, 10, what='the head-end client to connect')

    def publish(self, payload, retain=False, wait=True):
        """Publishes @payload (bytes) on the command topic; returns the time
        just before, on the clock of the simulators' logs."""
        t = time.time()
        info = self.client.publish(CMD_TOPIC, payload, qos=1, retain=retain)
        if wait:
            info.wait_for_publish(10)
            assert info.is_published(), 'the broker did not acknowledge a command'
        return t

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


class Rig:
    """One gateway under test: its buses (simulators), its config, the
    head-end publisher and a subscriber to every result."""

    def __init__(self, procs, tmp_path, broker, dlt645_sim, modbus_sim, gateway,
                 subscriber_factory):
        self.procs, self.tmp, self.broker = procs, tmp_path, broker
        self._dlt645_sim, self._modbus_sim, self._gateway = dlt645_sim, modbus_sim, gateway
        self.key_file = cmdsign.write_key_file(tmp_path / 'cmd.key', KEY)
        self.sub = subscriber_factory(broker.port, RESULT_TOPIC, client_id='test-results')
        self.subscriber_factory = subscriber_factory
        self.pub = Publisher(broker.port)
        self.buses = []
        self.sims = {}
        self.gw = None
        self.may_exit = False
        self.probes = 0

    # -- buses and config ------------------------------------------------------

    def dlt645_bus(self, name, meters, turnaround_ms=0, timeout='300ms'):
        """@meters: [{'id', 'address', 'profile'?, ...simulator meter keys}]."""
        sim = self._dlt645_sim(name, {
            'bus': {'turnaround_ms': turnaround_ms},
            'meters': [{k: v for k, v in m.items() if k not in ('id', 'profile')}
                       for m in meters]})
        self.buses.append({
            'name': name, 'device': sim.gateway_end, 'baud': 2400, 'parity': 'even',
            'protocol': 'dlt645', 'timeout': timeout,
            'meters': [{'id': m['id'], 'address': m['address'],
                        'profile': m.get('profile', 'dlt645-ctl')} for m in meters]})
        self.sims[name] = sim
        return sim

    def modbus_bus(self, name, slaves):
        """@slaves: {meter id: (slave id, simulator slave config)}."""
        sim = self._modbus_sim(name, {str(sid): s for sid, s in slaves.values()})
        self.buses.append({
            'name': name, 'device': sim.gateway_end, 'baud': 9600, 'parity': 'none',
            'protocol': 'modbus', 'timeout': '200ms',
            'meters': [{'id': mid, 'address': sid, 'profile': 'modbus-ctl'}
                       for mid, (sid, _) in slaves.items()]})
        self.sims[name] = sim
        return sim

    def config(self, interval='2s', points=POINTS_ONE, health=None, **commands):
        used = {m['profile'] for b in self.buses for m in b['meters']}
        cmds = dict(COMMANDS, hmac_key_file=str(self.key_file))
        cmds.update(commands)
        cfg = gateway_config(self.tmp, self.broker.port, self.buses, interval=interval,
                             profiles={k: v for k, v in profiles(points).items() if k in used},
                             commands=cmds)
        if health:
            cfg['health'] = {'interval': health}
        cfg['mqtt'].update(client_id=CLIENT_ID, topic_prefix=PREFIX)
        return cfg

    # -- the daemon ------------------------------------------------------------

    def start(self, env=None, **config):
        """Starts the daemon (configured on the first start) and returns once
        it listens for commands."""
        if self.gw is None:
            self.gw = self._gateway(self.config(**config))
        before = len(self.broker.client_events(CLIENT_ID))
        self.gw.proc = self.procs.start([meterhub_binary(), '-c', str(self.gw.path)],
                                        self.gw.name, env=env)
        self.may_exit = False

        def listening():
            self.check_alive()
            events = self.broker.client_events(CLIENT_ID)
            new = events[before:]
            if any(e == 'subscribe' and mqtt_matches(t, CMD_TOPIC) for e, t in new):
                return True
            # A session the broker kept still holds the earlier subscription.
            kept = any(e == 'connect' and not clean for e, clean in new)
            return kept and any(e == 'subscribe' and mqtt_matches(t, CMD_TOPIC)
                                for e, t in events[:before])
        self.wait(listening, 20, 'the daemon to subscribe to %s' % CMD_TOPIC)
        return self.gw

    def stop(self, sig=signal.SIGTERM):
        self.may_exit = True
        return self.gw.stop(sig)

    def kill(self):
        self.may_exit = True
        self.gw.proc.kill()
        return self.gw.proc.wait(10)

    def check_alive(self):
        if self.may_exit or self.gw is None or self.gw.proc is None:
            return
        rc = self.gw.proc.poll()
        if rc is not None:
            pytest.fail('the daemon exited with %s; log tail:\n%s'
                        % (rc, log_tail(self.gw.proc.log_path)))

    def wait(self, predicate, timeout, what):
        """wait_until, failing at once if the daemon died, and saying on a
        timeout which results had arrived and what the daemon logged last.
        @what: a string, or a function giving one when the wait failed."""
        def check():
            self.check_alive()
            return predicate()
        try:
            return wait_until(check, timeout, what=what if isinstance(what, str) else 'the condition below')
        except pytest.fail.Exception as e:
            text = str(e) if isinstance(what, str) else '%s: %s' % (e, what())
            try:
                last = self.results()[-8:]
            except AssertionError as bad:
                last = 'unreadable (%s)' % bad
            pytest.fail('%s\nlast results: %s\ndaemon log tail:\n%s' % (
                text, last, log_tail(self.gw.proc.log_path) if self.gw and self.gw.proc
                else '(not started)'))

    # -- commands and results --------------------------------------------------

    def send(self, cid, meter, action, retain=False, wait=True, **kw):
        """Signs and publishes a command; returns (command, publish time)."""
        cmd = cmdsign.command(KEY, cid, meter, action, **kw)
        return cmd, self.pub.publish(cmdsign.encode(cmd), retain=retain, wait=wait)

    def send_raw(self, payload, retain=False):
        return self.pub.publish(payload, retain=retain)

    def results(self, cid=ANY):
        """Every result so far, once per seq, in seq order (a seq that arrived
        twice must be the same record both times); for id @cid, or all."""
        msgs = self.sub.snapshot(RESULT_TOPIC)
        for _, p, _ in msgs:
            assert isinstance(p, dict) and isinstance(p.get('seq'), int), \
                'a result that is not a JSON object with a seq: %r' % (p,)
        first_arrivals(msgs)
        by_seq = {p['seq']: p for _, p, _ in msgs}
        out = [by_seq[s] for s in sorted(by_seq)]
        return out if cid is ANY else [r for r in out if r.get('id') == cid]

    def states(self, cid):
        return [r['state'] for r in self.results(cid)]

    def terminals(self, cid):
        return [r for r in self.results(cid) if r['state'] in TERMINAL]

    def wait_terminal(self, cid, timeout=30):
        """The one terminal result of @cid, once it arrived."""
        self.wait(lambda: self.terminals(cid), timeout,
                  lambda: 'a terminal result for %s (its results: %s)' % (cid, self.results(cid)))
        t = self.terminals(cid)
        assert len(t) == 1, 'more than one terminal result for %s: %s' % (cid, t)
        return t[0]

    def wait_state(self, cid, state, timeout=30):
        self.wait(lambda: state in self.states(cid), timeout,
                  lambda: 'a %s result for %s (its results: %s)' % (state, cid, self.results(cid)))
        return [r for r in self.results(cid) if r['state'] == state][0]

    def run(self, cid, meter, action, timeout=30, **kw):
        """Sends a command and returns its terminal result."""
        self.send(cid, meter, action, **kw)
        return self.wait_terminal(cid, timeout)

    def probe(self):
        """A signed command for a meter nobody configured: its rejection is
        committed after every result the daemon had decided before it."""
        self.probes += 1
        cid = 'probe-%d' % self.probes
        r = self.run(cid, 'no-such-meter', 'recall')
        assert (r['state'], r['reason']) == ('rejected', 'unknown_meter'), r
        return r

    def close(self):
        self.pub.close()
        # The key never reaches a log line, whatever happened.
        if self.gw is not None and self.gw.proc is not None:
            text = open(self.gw.proc.log_path, errors='replace').read().lower()
            assert KEY.hex() not in text and KEY.hex()[:16] not in text, \
                'the HMAC key appears in the daemon log'


@pytest.fixture
def rig(command_support, procs, tmp_path, broker, dlt645_sim, modbus_sim, gateway,
        subscriber_factory):
    r = Rig(procs, tmp_path, broker, dlt645_sim, modbus_sim, gateway, subscriber_factory)
    yield r
    r.close()


# ---- what the simulators saw -------------------------------------------------

def n1s(sim, address):
    return [f['control']['n1'] for f in sim.control_frames(address)]


def last_status(sim, address):
    """The last status word 3 the meter at @address sent, decoded by the
    simulator (relay_open, relay_cmd_trip, keep_power, ...)."""
    words = [f['values'] for f in sim.frames()
             if f.get('dir') == 'tx' and f.get('addr') == address and f.get('values')
             and 'relay_open' in f['values']]
    assert words, 'meter %s never reported its status word 3' % address
    return words[-1]


def coil_writes(sim, slave):
    return [(w['address'], w['values'][0]) for w in sim.writes(slave, fcs=(5, 15))]


def assert_succeeded(r, relay=ANY, attempts=ANY):
    assert r['state'] == 'succeeded', r
    assert r['reason'] is None, r
    if relay is not ANY:
        assert r['relay'] == relay, r
    if attempts is not ANY:
        assert r['attempts'] == attempts, r


# ---- the signer itself (runs without a daemon) -------------------------------

def test_signer_follows_the_contract():
    key = bytes(range(32))
    # Vectors computed with `openssl dgst -sha256 -mac HMAC`, not with Python.
    assert cmdsign.sign(key, 'c-42', 'm-0001', 'trip', '2026-11-22T03:45:00Z',
                        '2026-11-22T04:45:00Z') == \
        'b058ee68e97640df3ce7a5910df73921f3be3bccb8136f9e5776c33e18b7e520'
    assert cmdsign.sign(key, 'c-42', 'm-0001', 'trip', '2026-11-22T03:45:00Z',
                        '2026-11-22T04:45:00Z', block='681C') == \
        '5145a8d859c15542a1741c0c08ce0d1f29a3205e0cd5d84f0f2d71b6123d1005'
    assert cmdsign.sign(b'0123456789abcdef', 'c-42', 'm-0001', 'trip', '2026-11-22T03:45:00Z',
                        '2026-11-22T04:45:00Z') == \
        'd0fdf3e8cbbbbfb6dc53246a5bce806cb71d7f82e640bd42c72fb0fc590fe062'
    # Key files: 64+ even hex digits (one trailing newline allowed) are hex; else raw.
    assert cmdsign.key_from_file_bytes((key.hex() + '\n').encode()) == key
    assert cmdsign.key_from_file_bytes(key.hex().upper().encode()) == key
    assert cmdsign.key_from_file_bytes(b'0123456789abcdef') == b'0123456789abcdef'
    odd = (key.hex() + 'a').encode()
    assert cmdsign.key_from_file_bytes(odd) == odd
    # Times, and the command around them.
    assert cmdsign.rfc3339(1795319100) == '2026-11-22T03:45:00Z'
    assert cmdsign.rfc3339(1795319100.25, 480, 3) == '2026-11-22T11:45:00.250+08:00'
    cmd = cmdsign.command(key, 'c-42', 'm-0001', 'trip', ts=1795319100, expires=1795322700)
    assert cmd['sig'] == 'b058ee68e97640df3ce7a5910df73921f3be3bccb8136f9e5776c33e18b7e520'
    assert 'sig' not in cmdsign.command(key, 'c-1', 'm-1', 'trip', sig=None)


# ---- DL/T 645: trip, restore, keep power -------------------------------------

def test_trip_restore_and_keep_power(rig):
    sim = rig.dlt645_bus('b645', [
        {'id': 'm-1', 'address': addr(1)},
        {'id': 'm-2', 'address': addr(2), 'keep_power': True}])
    rig.start()

    # The meter whose keep power (保电) was set locally refuses the trip.
    rig.send('c-kept', 'm-2', 'trip')

    r = rig.run('c-trip', 'm-1', 'trip')
    assert rig.states('c-trip') == ['accepted', 'succeeded']
    accepted = rig.results('c-trip')[0]
    assert (accepted['id'], accepted['meter'], accepted['action']) == ('c-trip', 'm-1', 'trip')
    assert_succeeded(r, relay='open', attempts=1)
    assert (r['id'], r['meter'], r['action']) == ('c-trip', 'm-1', 'trip')
    assert r['commanded'] == 'open' and r['keep_power'] is False, r
    assert r['detail'] is None, r
    assert parse_rfc3339(r['ts']) and parse_rfc3339(r['received']), r
    assert parse_rfc3339(r['received']) <= parse_rfc3339(r['ts']) + 1, r
    assert isinstance(r['elapsed_ms'], int) and r['elapsed_ms'] >= 0, r
    ctl = sim.control_frames(addr(1))
    assert [f['control']['n1'] for f in ctl] == [N1_TRIP]
    assert {k: ctl[0]['control'][k] for k in ('level', 'password', 'operator')} == \
        {'level': 2, 'password': '000000', 'operator': '00000000'}
    assert any(f['dir'] == 'tx' and f['addr'] == addr(1) and f['c'] == 0x9C
               for f in sim.frames()), 'the meter refused the trip frame'
    assert last_status(sim, addr(1))['relay_open'] is True

    r = rig.run('c-restore', 'm-1', 'restore')
    assert rig.states('c-restore') == ['accepted', 'succeeded']
    assert_succeeded(r, relay='closed', attempts=1)
    assert r['commanded'] == 'closed', r
    assert n1s(sim, addr(1)) == [N1_TRIP, N1_CLOSE]  # close: direct
    assert last_status(sim, addr(1))['relay_open'] is False

    r = rig.run('c-keep', 'm-1', 'keep_power')
    assert_succeeded(r)
    assert r['keep_power'] is True, r
    assert n1s(sim, addr(1))[-1] == N1_KEEP_ON
    assert last_status(sim, addr(1))['keep_power'] is True

    r = rig.run('c-trip-kept', 'm-1', 'trip')
    assert rig.states('c-trip-kept')[0] == 'accepted'
    assert (r['state'], r['reason']) == ('failed', 'keep_power_on'), r
    assert r['relay'] == 'closed', r
    assert last_status(sim, addr(1))['relay_open'] is False

    r = rig.run('c-unkeep', 'm-1', 'cancel_keep_power')
    assert_succeeded(r)
    assert r['keep_power'] is False, r
    assert n1s(sim, addr(1))[-1] == N1_KEEP_OFF

    r = rig.wait_terminal('c-kept')
    assert (r['state'], r['reason']) == ('failed', 'keep_power_on'), r
    assert r['relay'] == 'closed' and r['keep_power'] is True, r
    assert last_status(sim, addr(2))['relay_open'] is False


def test_stuck_relay_fails_after_max_attempts(rig):
    sim = rig.dlt645_bus('b645', [{'id': 'm-1', 'address': addr(1),
                                   'fault': {'relay_stuck': True}}])
    rig.start(confirm_within='1s')
    r = rig.run('c-stuck', 'm-1', 'trip', timeout=60)
    assert rig.states('c-stuck') == ['accepted', 'retrying', 'retrying', 'failed']
    retrying = [x for x in rig.results('c-stuck') if x['state'] == 'retrying']
    assert [x['attempts'] for x in retrying] == [1, 2], retrying
    assert all(x['reason'] == 'relay_did_not_move' for x in retrying), retrying
    assert (r['reason'], r['attempts']) == ('relay_did_not_move', 3), r
    assert r['relay'] == 'closed' and r['commanded'] == 'open', r
    frames = sim.control_frames(addr(1))
    assert [f['control']['n1'] for f in frames] == [N1_TRIP] * 3
    # retry_backoff 1 s before attempt 2, doubled before attempt 3 (lower bounds).
    gaps = [b['t'] - a['t'] for a, b in zip(frames, frames[1:])]
    print('gaps between the control frames: %s s' % ['%.2f' % g for g in gaps])
    assert gaps[0] >= 1.0 - 0.05 and gaps[1] >= 2.0 - 0.05, gaps


def test_slow_relay_within_confirm_within_succeeds_on_the_first_attempt(rig):
    sim = rig.dlt645_bus('b645', [{'id': 'm-1', 'address': addr(1), 'trip_delay_s': 1.5}])
    rig.start()
    r = rig.run('c-slow', 'm-1', 'trip')
    assert rig.states('c-slow') == ['accepted', 'succeeded']
    assert_succeeded(r, relay='open', attempts=1)
    assert r['elapsed_ms'] >= 1400, r  # the relay moved 1.5 s after the frame
    assert n1s(sim, addr(1)) == [N1_TRIP]
    # The read-backs saw the relay still closed before it opened.
    t_ctl = sim.control_frames(addr(1))[0]['t']
    seen = [f['values']['relay_open'] for f in sim.frames()
            if f.get('dir') == 'tx' and f.get('addr') == addr(1) and f.get('values')
            and 'relay_open' in f['values'] and f['t'] > t_ctl]
    assert False in seen and seen[-1] is True, seen


# ---- rejections ----------------------------------------------------------------

def _payload(cid, meter='m-1', action='trip', **kw):
    return cmdsign.encode(cmdsign.command(KEY, cid, meter, action, **kw))


def _dup_keys():
    cmd = cmdsign.command(KEY, 'c-dup', 'm-1', 'trip')
    text = cmdsign.encode(cmd).decode()
    return text.replace('"id":"c-dup"', '"id":"c-dup","id":"c-dup2"', 1).encode()


def _invalid_utf8():
    cmd = cmdsign.command(KEY, 'c-utf8', 'm-1', 'trip', note='NOTE')
    return cmdsign.encode(cmd).replace(b'NOTE', b'\xff\xfe')


def _deep():
    nested = 1
    for _ in range(7):
        nested = [nested]
    return _payload('c-deep', x=nested)


def _too_large():
    p = _payload('c-big', pad='x' * 5000)
    assert len(p) > 4096
    return p


def _wrong_type():
    cmd = cmdsign.command(KEY, 'c-type', 'm-1', 'trip')
    cmd['id'] = 42
    return cmdsign.encode(cmd)


def _rejection_cases():
    now = time.time()
    return [
        # (name, payload, reason, id in the result: a string, None, or ANY)
        ('bad signature', _payload('c-badsig', sig=cmdsign.sign(
            WRONG_KEY, 'c-badsig', 'm-1', 'trip', cmdsign.rfc3339(now),
            cmdsign.rfc3339(now + 3600)), ts=now, expires=now + 3600),
         'bad_signature', 'c-badsig'),
        ('missing sig', _payload('c-nosig', sig=None), 'bad_signature', 'c-nosig'),
        ('unknown meter', _payload('c-nometer', meter='m-404'), 'unknown_meter', 'c-nometer'),
        ('stale ts', _payload('c-stale', ts=now - 3600, expires=now + 3600), 'stale', 'c-stale'),
        ('future ts', _payload('c-future', ts=now + 3600, expires=now + 7200), 'stale',
         'c-future'),
        ('past expires', _payload('c-expired', ts=now - 10, expires=now - 1), 'expired',
         'c-expired'),
        ('expires == ts', _payload('c-zero', ts=now, expires=now), 'expired', 'c-zero'),
        ('unknown action', _payload('c-action', action='explode'), 'unknown_action', 'c-action'),
        ('profile without control', _payload('c-plain', meter='m-9'), 'unsupported', 'c-plain'),
        ('malformed JSON', b'{"id":"c-json","meter":', 'malformed', None),
        ('not an object', b'["c-array"]', 'malformed', None),
        ('invalid UTF-8', _invalid_utf8(), 'malformed', ANY),
        ('duplicate key', _dup_keys(), 'malformed', ANY),
        ('too deep', _deep(), 'malformed', ANY),
        ('bad id syntax', _payload('c 1'), 'malformed', ANY),
        ('wrong type', _wrong_type(), 'malformed', ANY),
        ('unparseable ts', _payload('c-ts', ts='yesterday'), 'malformed', ANY),
        ('bad hex block', _payload('c-block', block='xyz'), 'malformed', ANY),
        ('5000-byte payload', _too_large(), 'too_large', None),
    ]


def test_rejections_never_reach_the_bus(rig):
    sim = rig.dlt645_bus('b645', [{'id': 'm-1', 'address': addr(1)},
                                  {'id': 'm-9', 'address': addr(9), 'profile': 'dlt645-plain'}])
    rig.start()
    wrong = []
    cases = _rejection_cases()
    for name, payload, reason, cid in cases:
        before = len(rig.results())
        rig.send_raw(payload)
        rig.wait(lambda: len(rig.results()) > before, 20, 'the result of "%s"' % name)
        r = rig.results()[before]
        ok = r['state'] == 'rejected' and r['reason'] == reason and \
            (cid is ANY or r['id'] == cid)
        if not ok:
            wrong.append((name, reason, cid if cid is not ANY else '*', r))
    assert not wrong, 'wrong rejections:\n' + '\n'.join(
        '%s: wanted %s (id %s), got %r' % w for w in wrong)
    # One result each, all rejections: nothing was accepted.
    results = rig.results()
    assert len(results) == len(cases), results
    # The meter still works, and nothing before reached it.
    assert_succeeded(rig.run('c-after', 'm-1', 'recall'))
    assert sim.control_frames() == []


def test_replayed_id_is_rejected_also_after_a_restart(rig):
    sim = rig.dlt645_bus('b645', [{'id': 'm-1', 'address': addr(1)}])
    rig.start()
    cmd, _ = rig.send('c-once', 'm-1', 'trip')
    assert_succeeded(rig.wait_terminal('c-once'), relay='open')
    payload = cmdsign.encode(cmd)

    def replay(what):
        before = len(rig.results('c-once'))
        rig.send_raw(what)
        rig.wait(lambda: len(rig.results('c-once')) > before, 20, 'the replay rejection')
        r = rig.results('c-once')[before:]
        assert [(x['state'], x['reason']) for x in r] == [('rejected', 'replayed')], r

    replay(payload)
    # The same id, freshly signed for another action, is still a replay.
    replay(_payload('c-once', action='restore'))
    assert rig.stop() == 0
    rig.start()
    replay(payload)
    assert_succeeded(rig.run('c-barrier', 'm-1', 'recall'), relay='open')
    assert n1s(sim, addr(1)) == [N1_TRIP]
    # Executed once, reported once, refused three times.
    assert rig.states('c-once') == ['accepted', 'succeeded', 'rejected', 'rejected', 'rejected']


@pytest.mark.parametrize('kind', ['dates', 'times'])
def test_trip_inside_a_protect_window_is_rejected(rig, kind):
    now = time.time()
    if kind == 'dates':
        today = dt.datetime.now(zoneinfo.ZoneInfo(TZNAME)).date()
        window = {'from': (today - dt.timedelta(days=1)).isoformat(),
                  'to': (today + dt.timedelta(days=1)).isoformat()}
    else:
        window = {'from': cmdsign.rfc3339(now - 3600, 480), 'to': cmdsign.rfc3339(now + 3600, 480)}
    sim = rig.dlt645_bus('b645', [{'id': 'm-1', 'address': addr(1)}])
    rig.start(protect_windows=[{'from': '2000-01-01', 'to': '2000-01-02'}, window])
    r = rig.run('c-protected', 'm-1', 'trip')
    assert (r['state'], r['reason']) == ('rejected', 'protect_window'), r
    assert rig.states('c-protected') == ['rejected']
    # Only trips are held back: a restore goes through.
    assert_succeeded(rig.run('c-restore', 'm-1', 'restore'), relay='closed')
    assert N1_TRIP not in n1s(sim, addr(1))


def test_retained_command_is_never_executed(rig):
    sim = rig.dlt645_bus('b645', [{'id': 'm-1', 'address': addr(1)}])
    rig.send('c-retained', 'm-1', 'trip', retain=True)
    rig.start()
    r = rig.wait_terminal('c-retained')
    assert (r['state'], r['reason']) == ('rejected', 'retained'), r
    assert_succeeded(rig.run('c-barrier', 'm-1', 'recall'), relay='closed')
    assert sim.control_frames() == []


def test_signature_is_over_the_strings_as_sent(rig):
    """ts and expires with an offset and fractions, one character escaped in
    the JSON: signed as they are after unescaping, never normalised."""
    rig.dlt645_bus('b645', [{'id': 'm-1', 'address': addr(1)}])
    rig.start()
    now = time.time()
    ts, expires = cmdsign.rfc3339(now, 480, 3), cmdsign.rfc3339(now + 3600, -300, 1)
    cmd = cmdsign.command(KEY, 'c-literal', 'm-1', 'recall', ts=ts, expires=expires)
    text = cmdsign.encode(cmd).decode()
    escaped = ts.replace('T', '\\u0054')
    assert text.count(ts) == 1
    rig.send_raw(text.replace(ts, escaped).encode())
    assert_succeeded(rig.wait_terminal('c-literal'), relay='closed')
    # Signed over the same instant written in UTC: not the string sent.
    cmd = cmdsign.command(KEY, 'c-normalised', 'm-1', 'recall', ts=now, expires=now + 3600)
    cmd['ts'], cmd['expires'] = ts, expires
    rig.send_raw(cmdsign.encode(cmd))
    r = rig.wait_terminal('c-normalised')
    assert (r['state'], r['reason']) == ('rejected', 'bad_signature'), r


# ---- Modbus ------------------------------------------------------------------

def test_modbus_trip_restore_and_slow_relay(rig):
    sim = rig.modbus_bus('bmb', {'mb-1': (1, modbus_slave()),
                                 'mb-2': (2, modbus_slave(relay_delay_ms=1500))})
    rig.start()
    rig.send('c-slow', 'mb-2', 'trip')
    r = rig.run('c-trip', 'mb-1', 'trip')
    assert rig.states('c-trip') == ['accepted', 'succeeded']
    assert_succeeded(r, relay='open', attempts=1)
    assert coil_writes(sim, 1) == [(0, 1)]
    r = rig.run('c-restore', 'mb-1', 'restore')
    assert_succeeded(r, relay='closed', attempts=1)
    assert coil_writes(sim, 1) == [(0, 1), (0, 0)]
    r = rig.run('c-recall', 'mb-1', 'recall')
    assert_succeeded(r, relay='closed')
    r = rig.run('c-keep', 'mb-1', 'keep_power')
    assert (r['state'], r['reason']) == ('rejected', 'unsupported'), r
    assert coil_writes(sim, 1) == [(0, 1), (0, 0)]
    # The relay that takes 1.5 s (within confirm_within) is confirmed on the first attempt.
    r = rig.wait_terminal('c-slow')
    assert rig.states('c-slow') == ['accepted', 'succeeded']
    assert_succeeded(r, relay='open', attempts=1)
    assert coil_writes(sim, 2) == [(0, 1)]


def test_modbus_stuck_relay_fails(rig):
    sim = rig.modbus_bus('bmb', {'mb-1': (1, modbus_slave(fault={'kind': 'stuck_relay'}))})
    rig.start(confirm_within='1s')
    r = rig.run('c-stuck', 'mb-1', 'trip', timeout=60)
    assert rig.states('c-stuck') == ['accepted', 'retrying', 'retrying', 'failed']
    assert (r['reason'], r['attempts'], r['relay']) == ('relay_did_not_move', 3, 'closed'), r
    assert coil_writes(sim, 1) == [(0, 1)] * 3


# ---- recall ------------------------------------------------------------------

def test_recall_reports_the_relay_without_a_control_frame(rig):
    sim = rig.dlt645_bus('b645', [
        {'id': 'm-open', 'address': addr(1), 'relay_open': True},
        {'id': 'm-kept', 'address': addr(2), 'keep_power': True},
        {'id': 'm-plain', 'address': addr(3)}])
    rig.start()
    for mid in ('m-open', 'm-kept', 'm-plain'):
        rig.send('c-' + mid, mid, 'recall')
    want = {'m-open': ('open', 'open', False), 'm-kept': ('closed', 'closed', True),
            'm-plain': ('closed', 'closed', False)}
    for mid, (relay, commanded, kept) in want.items():
        r = rig.wait_terminal('c-' + mid)
        assert rig.states('c-' + mid) == ['accepted', 'succeeded']
        assert_succeeded(r, relay=relay)
        assert (r['commanded'], r['keep_power']) == (commanded, kept), r
    assert sim.control_frames() == []
    for i in (1, 2, 3):
        assert any(f['dir'] == 'rx' and f['c'] == 0x11 and f['addr'] == addr(i)
                   and f['di'] in SW3_READS for f in sim.frames()), 'meter %d not asked' % i


def test_relay_moved_without_a_command_gives_relay_changed(rig):
    """The relay of a meter the gateway can trip is read after each good read:
    a move no command of this gateway made (a local prepayment trip, the
    customer's button, another master) is reported; a commanded one is not."""
    sim = rig.dlt645_bus('b645', [{'id': 'm-1', 'address': addr(1)}])
    msim = rig.modbus_bus('bmod', {'m-2': (2, modbus_slave())})
    events = rig.subscriber_factory(rig.broker.port, PREFIX + '/event', client_id='test-events')
    rig.start(interval='1s')

    def changed():
        got = {p['seq']: p for _, p, _ in events.snapshot(PREFIX + '/event')
               if isinstance(p, dict) and p.get('type') == 'relay_changed'}
        return [got[k] for k in sorted(got)]

    def sw3_reads(since=0):
        return [f for f in sim.frames() if f.get('dir') == 'rx' and f.get('c') == 0x11
                and f.get('di') in SW3_READS and f['t'] > since]

    def relay_reads(since=0):
        return [r for r in msim.requests() if r['fc'] == 2 and r['t'] > since]
    rig.wait(lambda: len(sw3_reads()) >= 2 and len(relay_reads()) >= 2, 20,
             'the relays watched on both buses')

    # Commanded moves: explained, so no event.
    for cid, meter in (('c-1', 'm-1'), ('c-2', 'm-2')):
        assert_succeeded(rig.run(cid, meter, 'trip'), relay='open')
    t = time.time()
    rig.wait(lambda: len(sw3_reads(t)) >= 2 and len(relay_reads(t)) >= 2, 20,
             'the watch reading the tripped relays')
    assert changed() == []

    # The meters close by themselves. (The simulator applies relay_open when
    # the file's value changes: first to what the trip left, then closed.)
    sim.reload({'bus': {'turnaround_ms': 0},
                'meters': [{'address': addr(1), 'relay_open': True}]})
    time.sleep(0.5)  # two separate reloads, not one
    sim.reload({'bus': {'turnaround_ms': 0},
                'meters': [{'address': addr(1), 'relay_open': False}]})
    msim.reload({'2': modbus_slave()})  # coil 0, relay input 0: closed
    rig.wait(lambda: len(changed()) == 2, 20, 'two relay_changed events')
    by_meter = {e['meter']: e for e in changed()}
    e1, e2 = by_meter['m-1'], by_meter['m-2']
    assert (e1['bus'], e1['relay'], e1['was']) == ('b645', 'closed', 'open'), e1
    assert (e1['commanded'], e1['keep_power']) == ('closed', False), e1
    assert (e2['bus'], e2['relay'], e2['was']) == ('bmod', 'closed', 'open'), e2
    assert 'commanded' not in e2, e2
    assert e1['ts'] and e2['ts']
    # Once told, the state is the new baseline: no repeats.
    t = time.time()
    rig.wait(lambda: len(sw3_reads(t)) >= 2 and len(relay_reads(t)) >= 2, 20, 'more watch reads')
    assert len(changed()) == 2, changed()


# ---- power cuts --------------------------------------------------------------

def _assert_once(rig, cid):
    """The command ended once: one terminal record (duplicate deliveries of
    its seq allowed), succeeded, also after everything the daemon committed
    before a later probe."""
    r = rig.wait_terminal(cid, timeout=40)
    rig.probe()
    t = rig.terminals(cid)
    assert len(t) == 1, 'terminal results of %s: %s' % (cid, t)
    assert_succeeded(t[0], relay='open')
    assert 'failed' not in rig.states(cid)
    return r


def test_sigkill_after_accepted_completes_exactly_once(rig):
    # The relay takes a second: the command is still running when the power goes.
    sim = rig.dlt645_bus('b645', [{'id': 'm-1', 'address': addr(1), 'trip_delay_s': 1.0}])
    rig.start()
    rig.send('c-cut', 'm-1', 'trip')
    rig.wait_state('c-cut', 'accepted')
    assert rig.kill() == -signal.SIGKILL
    rig.start()
    _assert_once(rig, 'c-cut')
    assert 1 <= len(sim.control_frames(addr(1))) <= COMMANDS['max_attempts']
    assert last_status(sim, addr(1))['relay_open'] is True


def test_failpoint_before_puback_completes_exactly_once(rig):
    """MH_FAILPOINT=before_puback: the daemon SIGKILLs itself after journaling
    the command and before handing it back to the MQTT library, so the broker
    never got the PUBACK."""
    sim = rig.dlt645_bus('b645', [{'id': 'm-1', 'address': addr(1)}])
    rig.start(env=dict(os.environ, MH_FAILPOINT='before_puback'))
    rig.may_exit = True
    rig.send('c-puback', 'm-1', 'trip')
    rig.wait(lambda: rig.gw.proc.poll() is not None, 20,
             'the daemon to kill itself at the before_puback failpoint')
    assert rig.gw.proc.returncode == -signal.SIGKILL, rig.gw.proc.returncode
    rig.start()
    _assert_once(rig, 'c-puback')
    assert 1 <= len(sim.control_frames(addr(1))) <= COMMANDS['max_attempts']


# ---- load --------------------------------------------------------------------

def sweeps(reads):
    """Read frames cut into sweeps: a sweep ends where a (meter, identifier)
    pair it already read comes again, whatever order the daemon reads in."""
    out, cur, seen = [], [], set()
    for f in reads:
        k = (f['addr'], f['di'])
        if k in seen:
            out.append(cur)
            cur, seen = [], set()
        cur.append(f)
        seen.add(k)
    out.append(cur)
    return out


def test_trip_on_a_busy_bus_goes_before_the_sweep(rig):
    """32 meters, 7 frames each, a 1 s interval: the bus never rests. A trip
    waits for the frame in progress, not for the sweep."""
    n = 32
    sim = rig.dlt645_bus('b645', [{'id': 'm-%d' % i, 'address': addr(i)}
                                  for i in range(1, n + 1)], turnaround_ms=10)
    rig.start(interval='1s', points=POINTS_SEVEN)
    dis = {p['di'] for p in POINTS_SEVEN}
    sweep = n * len(POINTS_SEVEN)

    def reads():
        return [f for f in sim.frames() if f.get('dir') == 'rx' and f.get('c') == 0x11
                and f.get('di') in dis]

    def early_in_a_sweep():
        r = reads()
        if not r or r[-1]['t'] < time.time() - 0.2:
            return False  # no read in progress
        return len(sweeps(r)[-1]) in range(len(POINTS_SEVEN), sweep // 2)
    rig.wait(early_in_a_sweep, 30, 'the bus to be reading, early in a sweep')
    target = addr(17)
    _, t_pub = rig.send('c-busy', 'm-17', 'trip')
    r = rig.wait_terminal('c-busy')
    t_done = time.time()
    assert_succeeded(r, relay='open')
    t_ctl = sim.control_frames(target)[0]['t']
    all_reads = reads()
    between = [f for f in all_reads if t_pub < f['t'] < t_ctl]
    current = [s_ for s_ in sweeps(all_reads) if s_ and s_[0]['t'] <= t_pub][-1]
    after = [f for f in current if f['t'] > t_ctl]
    print('busy bus: publish -> 1CH frame %.0f ms, %d read frames in between (a sweep is %d), '
          '%d frames of that sweep after it; publish -> succeeded seen %.0f ms; elapsed_ms %s'
          % ((t_ctl - t_pub) * 1000, len(between), sweep, len(after), (t_done - t_pub) * 1000,
             r.get('elapsed_ms')))
    assert len(between) < sweep, 'the trip waited for a whole sweep: %d read frames' % len(between)
    assert after, 'the trip waited for the sweep in progress to end (%d read frames in between)' \
        % len(between)


@pytest.mark.slow
def test_burst_of_200_trips_over_two_buses(rig):
    per_bus = 100
    sims = [rig.dlt645_bus('b645-%d' % b, [
        {'id': 'm-%03d' % i, 'address': addr(i)}
        for i in range(1 + b * per_bus, 1 + (b + 1) * per_bus)]) for b in (0, 1)]
    everything = rig.subscriber_factory(rig.broker.port, PREFIX + '/#', client_id='test-all')
    rig.start(interval='1m', confirm_within='10s')
    ids = {'c-%03d' % i: 'm-%03d' % i for i in range(1, 2 * per_bus + 1)}
    for cid, mid in ids.items():
        rig.send(cid, mid, 'trip', wait=False)

    def ended():
        done = {r['id'] for r in rig.results() if r['state'] in TERMINAL}
        return done >= set(ids)
    started = time.monotonic()
    rig.wait(ended, 240, lambda: 'a terminal result for each of the 200 trips (%d so far)' % len(
        {r['id'] for r in rig.results() if r['state'] in TERMINAL}))
    print('200 trips over 2 buses ended in %.1f s' % (time.monotonic() - started))
    bad = []
    for cid in ids:
        t = rig.terminals(cid)
        states = rig.states(cid)
        if len(t) != 1 or t[0]['state'] != 'succeeded' or t[0]['relay'] != 'open' or \
                states[0] != 'accepted':
            bad.append((cid, rig.results(cid)))
    assert not bad, '%d trips did not end as one success: %s' % (len(bad), bad[:5])
    for b, sim in enumerate(sims):
        for i in range(1 + b * per_bus, 1 + (b + 1) * per_bus):
            got = n1s(sim, addr(i))
            assert got and set(got) == {N1_TRIP}, (addr(i), got)
    check_complete(everything.snapshot())


# ---- pass-through, close-permit, alarm, bounds, health ------------------------

def _bcd(n):
    return (n // 10) << 4 | n % 10


def _plain_block(n1, expires):
    """The 0x1C data field a head-end would build (here unencrypted, level 02,
    so the simulated meter can act on it): PA P0-P2 C0-C3 N1 N2 and the
    deadline ss mm hh DD MM YY in the meters' local time; hex, without the
    link's +33H, which the gateway adds like for any data field."""
    t = dt.datetime.fromtimestamp(expires, zoneinfo.ZoneInfo(TZNAME))
    field = bytes([0x02, 0, 0, 0, 0, 0, 0, 0, n1, 0]) + bytes(
        _bcd(v) for v in (t.second, t.minute, t.hour, t.day, t.month, t.year % 100))
    return field.hex().upper()


def test_block_pass_through_close_permit_and_alarm(rig):
    sim = rig.dlt645_bus('b645', [
        {'id': 'm-1', 'address': addr(1)},
        {'id': 'm-2', 'address': addr(2)}])
    rig.buses[0]['meters'][0]['control'] = {'close': 'permit'}
    rig.buses[0]['meters'][1]['control'] = {'esam': True}
    rig.start()

    # A meter with an ESAM takes only the head-end's block ...
    r = rig.run('c-plain', 'm-2', 'trip')
    assert (r['state'], r['reason']) == ('rejected', 'unsupported'), r
    assert not sim.control_frames(addr(2))
    # ... which goes to the meter byte for byte, signed with the command.
    expires = time.time() + 3600
    block = _plain_block(N1_TRIP, expires)
    r = rig.run('c-block', 'm-2', 'trip', block=block, expires=expires)
    assert_succeeded(r, relay='open', attempts=1)
    frames = sim.control_frames(addr(2))
    assert len(frames) == 1
    assert frames[0]['hex'].replace(' ', '').upper().find(
        ''.join('%02X' % ((b + 0x33) & 0xFF) for b in bytes.fromhex(block))) > 0, frames[0]
    # A block whose signature does not cover it is refused.
    cmd = cmdsign.command(KEY, 'c-swapped', 'm-2', 'restore',
                          block=_plain_block(N1_CLOSE, expires), expires=expires)
    cmd['block'] = _plain_block(N1_TRIP, expires)
    rig.send_raw(cmdsign.encode(cmd))
    r = rig.wait_terminal('c-swapped')
    assert (r['state'], r['reason']) == ('rejected', 'bad_signature'), r

    # Close-permit (1BH): the meter stops holding the relay open and the
    # customer closes it; that is success, and the result says the relay is
    # still open.
    assert_succeeded(rig.run('c-trip', 'm-1', 'trip'), relay='open')
    r = rig.run('c-permit', 'm-1', 'restore')
    assert_succeeded(r, relay='open', attempts=1)
    assert r['commanded'] == 'closed', r
    assert n1s(sim, addr(1)) == [N1_TRIP, 0x1B]

    # The pre-trip alarm: bit 7 of status word 3.
    assert_succeeded(rig.run('c-alarm', 'm-1', 'alarm_on'))
    assert last_status(sim, addr(1))['prealarm'] is True
    assert_succeeded(rig.run('c-quiet', 'm-1', 'alarm_off'))
    assert n1s(sim, addr(1))[-2:] == [0x2A, 0x2B]


def test_queue_bound_expiry_while_queued_and_health(rig):
    rig.dlt645_bus('b645', [{'id': 'm-1', 'address': addr(1), 'fault': {'relay_stuck': True}}])
    health = rig.subscriber_factory(rig.broker.port, PREFIX + '/health', client_id='test-health')
    rig.start(queue=2, confirm_within='1s', max_attempts=2, health='1s')

    now = time.time()
    rig.send('c-long', 'm-1', 'trip')                     # runs ~3 s: stuck relay, 2 attempts
    rig.send('c-short', 'm-1', 'trip', ts=now, expires=now + 1.5)   # expires while it waits
    r = rig.run('c-full', 'm-1', 'trip')                  # a third one does not fit
    assert (r['state'], r['reason']) == ('rejected', 'queue_full'), r
    assert rig.wait_terminal('c-long')['state'] == 'failed'
    r = rig.wait_terminal('c-short')
    assert (r['state'], r['reason'], r['attempts']) == ('expired', 'expired', 0), r
    assert rig.states('c-short') == ['accepted', 'expired']

    # Garbage is counted in health by reason.
    for i in range(3):
        rig.send_raw(b'not json %d' % i)
    rig.send('c-forged', 'm-1', 'trip', sig='00' * 32)

    def counted():
        snaps = [p for _, p, _ in health.snapshot(PREFIX + '/health') if isinstance(p, dict)]
        c = snaps[-1].get('commands', {}) if snaps else {}
        rej = c.get('rejected', {})
        return rej.get('malformed') == 3 and rej.get('bad_signature') == 1 and \
            rej.get('queue_full') == 1 and c.get('expired') == 1 and c.get('failed') == 1 and c
    c = rig.wait(counted, 30, 'health to count the commands')
    assert c['accepted'] == 2 and c['active'] == 0, c
