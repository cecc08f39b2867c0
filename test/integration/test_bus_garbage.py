# SPDX-License-Identifier: MIT
"""Garbage on the bus, end to end: the simulators spoil the replies of one
meter (noise, a wrong checksum or CRC, a frame cut short, a reply from the
wrong address, the request echoed, a reply after the timeout, a meter that
answers for every address, a refusal, silence), and for each fault:

- nothing published comes from a frame that failed its checks: every value
  is one the simulator logged as sent correctly by that meter;
- the fault is counted in health under its class for that bus (buses[].link):
  exactly the number of faults the simulator says it injected where the
  class can be told apart, at least that many where it cannot;
- the bus resynchronises: the next meter is read at every boundary, early
  in it, as if nothing happened.

The faulty meter is first on its bus, so every fault comes right before the
healthy meter's turn. Energy runs fast on the DL/T 645 meters (3.6 kWh a
second), so two replies of one meter never carry the same total: a value
that came from a spoilt reply could not pass for a good one.
"""

import json
import signal
import time

import pytest

from conftest import by_meter, gateway_config, typed, wait_until
from faults import parse_rfc3339, timed_subscriber  # noqa: F401,F811 (fixture)

PREFIX = 'meterhub/gw-test'
INTERVAL_S = 3
# Long enough that a simulator held up by a busy machine is not a timeout
# (whose late reply would then be counted too); the late replies have their own.
TIMEOUT_MS = 1000
LATE_TIMEOUT_MS = 500
ROUNDS = 4  # readings of every meter while the fault is on

pytestmark = pytest.mark.slow

# --- DL/T 645 ----------------------------------------------------------------

F645, G645, H645 = '000000000001', '000000000002', '000000000003'
PROFILE_645 = {'points': [{'di': '0001FF00'}, {'di': '02010100'}]}


def meter_645(address, kwh, volts, **kw):
    m = {'address': address, 'phases': 1, 'load_kw': 3.6, 'speedup': 3600,
         'import_kwh': kwh, 'voltage_v': volts}
    m.update(kw)
    return m


# name: (the faulty meter's keys, the bus options, the counter, the simulator's
# fault label, how many of that counter each fault adds (None: at least one))
DLT645_FAULTS = {
    # 5 bytes before the reply and 2 after: 7 garbage bytes, and the reply is good.
    'noise': ({'fault': {'noise_before': '00 12 34 56 77', 'noise_after': 'AB CD',
                         'every': 2}}, {}, 'garbage_bytes', 'noise_before', 7),
    'bad_checksum': ({'fault': {'bad_checksum': True, 'every': 2}}, {}, 'checksum_errors',
                     'bad_checksum', 1),
    'truncated': ({'fault': {'truncate': 4, 'every': 2}}, {}, 'garbled', 'truncate', 1),
    'wrong_address': ({'fault': {'wrong_addr': True, 'every': 2}}, {}, 'wrong_address',
                      'wrong_addr', 1),
    'refusal': ({'fault': {'err': 1, 'every': 3}}, {}, 'refusals', 'err', 1),
    'silence': ({'fault': {'silence': True, 'every': 2}}, {}, 'timeouts', 'silence', 1),
    'late': ({'fault': {'delay_ms': 800, 'every': 2}}, {}, 'late_replies', 'delay_ms', 1),
    # Every request comes back from the adapter; counted from the echo log below.
    'echo': ({}, {'echo': True, 'turnaround_ms': 20}, 'echo', None, 1),
    'answer_all': ({'answer_all': True}, {}, 'wrong_address', 'answer_all', 1),
}

# Classes that must not grow when the fault is another: one fault, one class.
EXCLUSIVE = ('checksum_errors', 'garbled', 'wrong_address', 'late_replies', 'refusals')


def dlt645_gateway_bus(device, timeout_ms=TIMEOUT_MS):
    return {'name': 'rs485-645', 'device': device, 'protocol': 'dlt645',
            'timeout': '%dms' % timeout_ms,
            'meters': [{'id': 'm-f', 'address': F645, 'profile': 'p645'},
                       {'id': 'm-g', 'address': G645, 'profile': 'p645'},
                       {'id': 'm-h', 'address': H645, 'profile': 'p645'}]}


def dlt645_sim_config(fault_keys, bus):
    return {'bus': bus, 'meters': [meter_645(F645, 1000.0, 221.1, **fault_keys),
                                   meter_645(G645, 2000.0, 222.2),
                                   meter_645(H645, 3000.0, 223.3)]}


# --- Modbus --------------------------------------------------------------------

PROFILE_MB = {'points': [
    {'name': 'energy_import_kwh', 'table': 'holding', 'address': 0, 'type': 'float32'},
    {'name': 'voltage_a_v', 'table': 'holding', 'address': 2, 'type': 'u16', 'scale': 0.1}]}
# The values each slave holds; no two alike, so a value never passes for another's.
MB_VALUES = {1: (1111.5, 2211), 2: (2222.5, 2222), 3: (3333.5, 2233)}

# name: (the faulty slave's fault, frame gap, the counter, how many each fault adds
# (None: the class cannot be told apart; the classes below together count at least one))
MODBUS_FAULTS = {
    'bad_crc': ({'kind': 'bad_crc', 'every': 2}, None, 'checksum_errors', 1),
    'truncated': ({'kind': 'truncated', 'every': 2}, None, 'garbled', 1),
    'wrong_slave': ({'kind': 'wrong_slave', 'every': 2}, None, 'wrong_address', 1),
    'exception': ({'kind': 'exception', 'code': 4, 'every': 2}, None, 'refusals', 1),
    'silent': ({'kind': 'silent', 'every': 2}, None, 'timeouts', 1),
    # libmodbus checks the slave id before the CRC: a noise byte in front is
    # "another slave" as often as anything else.
    'noise': ({'kind': 'noise', 'after': True, 'every': 2}, None, None, None),
    # The late reply comes in the frame gap, before the next request goes out.
    'late': ({'kind': 'late', 'delay_ms': 800, 'every': 2}, '400ms', 'late_replies', 1),
    'answer_all': ({'kind': 'answer_all'}, None, 'wrong_address', 1),
}
AMBIGUOUS = ('checksum_errors', 'garbled', 'wrong_address', 'late_replies')


def modbus_gateway_bus(device, frame_gap=None, timeout_ms=TIMEOUT_MS):
    bus = {'name': 'rs485-mb', 'device': device, 'protocol': 'modbus',
           'timeout': '%dms' % timeout_ms,
           'meters': [{'id': 'm-%d' % i, 'address': i, 'profile': 'pmb'} for i in (1, 2, 3)]}
    if frame_gap:
        bus['frame_gap'] = frame_gap
    return bus


def modbus_slaves(fault=None):
    slaves = {}
    for i, (kwh, volts) in MB_VALUES.items():
        slaves[str(i)] = {'typed': [typed('holding', 0, 'float32', kwh),
                                    typed('holding', 2, 'u16', volts)]}
    if fault:
        slaves['1']['fault'] = fault
    return slaves


# --- helpers -------------------------------------------------------------------

def readings(sub):
    return [p for _, t, p, _ in sub.timed(PREFIX + '/reading/') if isinstance(p, dict)]


def bus_health(payload, name):
    for b in payload.get('buses', []):
        if b.get('name') == name:
            return b
    pytest.fail('health without bus %s: %r' % (name, payload))


def run_and_quiet(gateway, cfg, sub, meters, quiet):
    """Run the daemon until every meter gave ROUNDS readings under the fault,
    call @quiet() to stop injecting it, and return the first health report
    published once everything the fault caused has been counted, with the
    time the fault stopped."""
    gw = gateway(cfg).start()

    def enough():
        got = by_meter(readings(sub))
        return all(len(got.get(m, [])) >= ROUNDS for m in meters)
    wait_until(enough, ROUNDS * INTERVAL_S + 20, what='%d readings of each of %s' % (
        ROUNDS, meters))
    quiet()
    stopped = time.time()
    # Two boundaries: the exchange in progress has ended and been counted.
    settled = stopped + 2 * INTERVAL_S + 0.5

    def report():
        late = [p for t, topic, p, _ in sub.timed(PREFIX + '/health')
                if t > settled and isinstance(p, dict)]
        return late[0] if late else None
    health = wait_until(report, 10, what='a health report after the fault stopped')
    assert gw.stop() == 0
    return health, stopped


def assert_cadence(got, meter, stopped, good=True):
    """@meter was read at every boundary while the fault was on, early in it."""
    rs = sorted((r for r in got[meter] if parse_rfc3339(r['ts']) < stopped),
                key=lambda r: r['ts'])
    assert len(rs) >= ROUNDS - 1, (meter, rs)
    times = [parse_rfc3339(r['ts']) for r in rs]
    steps = [b - a for a, b in zip(times, times[1:])]
    assert all(s == INTERVAL_S for s in steps), \
        '%s missed boundaries: %r' % (meter, [r['ts'] for r in rs])
    for r in rs:
        if good:
            assert r['quality'] == 'good', r
        # Read within its boundary, well before the next one.
        assert parse_rfc3339(r['read_at']) - parse_rfc3339(r['ts']) < INTERVAL_S * 0.75, r


# --- DL/T 645 ----------------------------------------------------------------

def good_values_645(sim):
    """{address: {name: [values]}} the simulated meters sent in replies that were
    not spoilt, each the only reply to a request addressed to that meter."""
    out = {}
    for f in sim.frames():
        if f.get('dir') == 'tx' and f.get('addr') and f.get('values') and not f.get('fault'):
            for name, v in f['values'].items():
                out.setdefault(f['addr'], {}).setdefault(name, []).append(v)
    return out


def faults_645(sim, address, label):
    return [f for f in sim.frames() if f.get('dir') == 'tx' and f.get('addr') == address
            and label in (f.get('fault') or '')]


def echoed_requests(sim):
    """How many requests the simulated adapter echoed: every one begins FE FE FE FE 68."""
    return ''.join(f['hex'] for f in sim.frames() if f.get('dir') == 'echo').count('FEFEFEFE68')


@pytest.mark.parametrize('fault', sorted(DLT645_FAULTS))
def test_dlt645_garbage_is_counted_never_published(broker, dlt645_sim, gateway,
                                                    timed_subscriber, tmp_path, fault):
    keys, bus_opts, counter, label, per_fault = DLT645_FAULTS[fault]
    sim = dlt645_sim('b645', dlt645_sim_config(keys, bus_opts))
    timeout_ms = LATE_TIMEOUT_MS if fault == 'late' else TIMEOUT_MS
    cfg = gateway_config(tmp_path, broker.port, [dlt645_gateway_bus(sim.gateway_end, timeout_ms)],
                         interval='%ds' % INTERVAL_S, profiles={'p645': PROFILE_645},
                         health={'interval': '1s'})
    sub = timed_subscriber(broker.port, PREFIX + '/#')
    health, stopped = run_and_quiet(gateway, cfg, sub, ['m-f', 'm-g', 'm-h'],
                                    lambda: sim.reload(dlt645_sim_config({}, {})))
    link = bus_health(health, 'rs485-645')['link']
    addresses = {'m-f': F645, 'm-g': G645, 'm-h': H645}

    # What was published came from good frames of the meter it is published for.
    good = good_values_645(sim)
    got = by_meter(readings(sub))
    for meter, address in addresses.items():
        for r in got[meter]:
            for name, value in r['values'].items():
                assert any(value == pytest.approx(v, abs=1e-9)
                           for v in good.get(address, {}).get(name, [])), \
                    '%s published %s=%r, which it never sent in a good reply (%s)' % (
                        meter, name, value, r)

    # The fault is counted in its class, as often as the simulator injected it.
    if fault == 'echo':
        injected = echoed_requests(sim)
    else:
        injected = len(faults_645(sim, F645, label))
    assert injected >= 2, 'the simulator injected %d faults' % injected
    assert link[counter] == injected * per_fault, (fault, link, injected)
    for other in EXCLUSIVE:
        if other != counter:
            assert link[other] == 0, (fault, other, link)
    if fault == 'late':
        # Each late reply was first a timeout.
        assert link['timeouts'] == injected, link
    if fault in ('silence', 'late'):
        assert got['m-f'] and all(r['quality'] in ('good', 'timeout') for r in got['m-f'])
    elif fault not in ('refusal',):
        # One spoilt reply is retried, and the retry is good: every reading of it is.
        assert all(r['quality'] == 'good' for r in got['m-f']), got['m-f']
    if fault != 'echo':
        assert link['echo'] == 0, link
    # Requests are counted as they go out: never more than reached the meters.
    assert 0 < link['frames'] <= len([f for f in sim.frames() if f.get('dir') == 'rx']), link

    # The next meters were read at every boundary, early in it.
    assert_cadence(got, 'm-g', stopped)
    assert_cadence(got, 'm-h', stopped)


# --- Modbus --------------------------------------------------------------------

def modbus_faults(sim, slave, kind):
    if kind == 'answer_all':
        return [r for r in sim.requests() if r.get('intruders')]
    return [r for r in sim.requests() if r['slave'] == slave and r['fault'] == kind]


@pytest.mark.parametrize('fault', sorted(MODBUS_FAULTS))
def test_modbus_garbage_is_counted_never_published(broker, modbus_sim, gateway,
                                                   timed_subscriber, tmp_path, fault):
    spec, frame_gap, counter, per_fault = MODBUS_FAULTS[fault]
    sim = modbus_sim('mb', modbus_slaves(spec))
    # Each answer_all reply costs libmodbus a response timeout (it waits, then
    # flushes): the two victims' tries fit in the interval with the short one.
    timeout_ms = LATE_TIMEOUT_MS if fault in ('late', 'answer_all') else TIMEOUT_MS
    cfg = gateway_config(tmp_path, broker.port,
                         [modbus_gateway_bus(sim.gateway_end, frame_gap, timeout_ms)],
                         interval='%ds' % INTERVAL_S, profiles={'pmb': PROFILE_MB},
                         health={'interval': '1s'})
    sub = timed_subscriber(broker.port, PREFIX + '/#')
    health, stopped = run_and_quiet(gateway, cfg, sub, ['m-1', 'm-2', 'm-3'],
                                    lambda: sim.reload(modbus_slaves()))
    link = bus_health(health, 'rs485-mb')['link']
    assert 'echo' not in link and 'garbage_bytes' not in link, link

    # Each slave's values, or none: never another's, never a spoilt one.
    got = by_meter(readings(sub))
    for i, (kwh, volts) in MB_VALUES.items():
        for r in got['m-%d' % i]:
            want = {'energy_import_kwh': kwh, 'voltage_a_v': volts / 10}
            for name, value in r['values'].items():
                assert value == pytest.approx(want[name]), ('m-%d' % i, r)

    injected = len(modbus_faults(sim, 1, spec['kind']))
    assert injected >= 2, 'the simulator injected %d faults' % injected
    counter_key = 'exceptions' if counter == 'refusals' else counter
    if per_fault is None:
        assert sum(link[k] for k in AMBIGUOUS) >= injected, (fault, link, injected)
    else:
        assert link[counter_key] == injected * per_fault, (fault, link, injected)
        for other in AMBIGUOUS + ('exceptions',):
            if other != counter_key:
                assert link[other] == 0, (fault, other, link)
    if fault == 'late':
        assert link['timeouts'] == injected, link
    assert 0 < link['frames'] <= len(sim.requests()), link

    if fault == 'answer_all':
        # Slave 1 answers first for every slave, so the others' replies are lost
        # behind it: their readings fail, with nothing published, at every boundary.
        assert all(r['quality'] == 'good' for r in got['m-1']), got['m-1']
        for meter in ('m-2', 'm-3'):
            rs = [r for r in got[meter] if parse_rfc3339(r['ts']) < stopped]
            assert rs and all(r['quality'] == 'error' and r['values'] == {} for r in rs), rs
            assert_cadence(got, meter, stopped, good=False)
    else:
        assert_cadence(got, 'm-2', stopped)
        assert_cadence(got, 'm-3', stopped)


def test_modbus_echoing_adapter_is_never_a_reading(broker, modbus_sim, gateway, timed_subscriber,
                                                   tmp_path):
    """libmodbus reads the echo of a request as its reply: to a read request
    it is a frame with a wrong CRC. Nothing is published from it, and the
    checksum errors say what is wrong with the line."""
    sim = modbus_sim('mb', modbus_slaves())
    sim.config.write_text(json.dumps({'echo': True, 'slaves': modbus_slaves()}))
    sim.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: 'config reloaded' in sim.proc.log_path.read_text(), 10,
               what='the simulator to echo')
    # Every try waits out its response timeout (the meter's reply follows the
    # echo): the short one fits both tries of all three meters in the interval.
    cfg = gateway_config(tmp_path, broker.port,
                         [modbus_gateway_bus(sim.gateway_end, timeout_ms=LATE_TIMEOUT_MS // 2)],
                         interval='%ds' % INTERVAL_S, profiles={'pmb': PROFILE_MB},
                         health={'interval': '1s'})
    sub = timed_subscriber(broker.port, PREFIX + '/#')
    health, stopped = run_and_quiet(gateway, cfg, sub, ['m-1', 'm-2', 'm-3'],
                                    lambda: sim.reload(modbus_slaves()))
    link = bus_health(health, 'rs485-mb')['link']
    got = by_meter(readings(sub))
    echoed = [r for r in got['m-1'] + got['m-2'] + got['m-3']
              if parse_rfc3339(r['read_at']) < stopped - 0.5]
    assert len(echoed) >= 3 * ROUNDS - 3, echoed
    for r in echoed:
        assert r['quality'] == 'error' and r['values'] == {}, r
    # Each of those readings took two tries, and each failed: mostly on the
    # echo's CRC (an echo read in pieces is a reply cut short instead).
    failed = sum(link[k] for k in ('checksum_errors', 'garbled', 'wrong_address', 'timeouts'))
    assert failed >= 2 * len(echoed), link
    assert link['checksum_errors'] > failed / 2, link
    # Once the adapter stops echoing, the meters are read again.
    assert [r for r in got['m-1'] if r['quality'] == 'good'], got['m-1']


# --- the meters' side of health ----------------------------------------------

def test_health_meters_online_offline_and_success_rate(broker, modbus_sim, gateway,
                                                       timed_subscriber, tmp_path):
    """A meter that stops answering goes offline after three boundaries and
    comes back online at its first good read; the day's success rate counts
    its failed boundaries; last_good_reading is the newest good read."""
    sim = modbus_sim('mb', modbus_slaves({'kind': 'silent'}))
    cfg = gateway_config(tmp_path, broker.port, [modbus_gateway_bus(sim.gateway_end,
                                                                    timeout_ms=300)],
                         interval='1s', profiles={'pmb': PROFILE_MB}, health={'interval': '1s'})
    sub = timed_subscriber(broker.port, PREFIX + '/#')
    gw = gateway(cfg).start()

    def bus_reports(since=0.0):
        return [(t, bus_health(p, 'rs485-mb')) for t, topic, p, _ in sub.timed(PREFIX + '/health')
                if isinstance(p, dict) and t >= since]

    def offline():
        return [b for _, b in bus_reports() if b.get('meters_offline') == 1]
    wait_until(offline, 15, what='the silent meter to go offline')
    b = offline()[-1]
    assert b['meters_online'] == 2, b
    # Of each boundary, two meters of three were read.
    assert 0.5 < b['read_success_rate_today'] < 0.7, b
    last = parse_rfc3339(b['last_good_reading'])
    assert last is not None and time.time() - last < 5, b
    assert b['link']['timeouts'] >= 3, b
    # Before the third failed boundary it was online.
    first = bus_reports()[0][1]
    assert first['meters_offline'] == 0 and first['meters_online'] == 3, first

    sim.reload(modbus_slaves())
    back = time.time()
    wait_until(lambda: [b for _, b in bus_reports(back) if b['meters_offline'] == 0], 10,
               what='the meter to come back online')
    got = by_meter(readings(sub))
    assert any(r['quality'] == 'good' for r in got['m-1']), got['m-1']
    assert gw.stop() == 0
