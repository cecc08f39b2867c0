# SPDX-License-Identifier: MIT
"""The reading path on Modbus RTU, end to end: pty buses, simulated meters,
the real daemon and a real broker."""

import calendar
import collections
import glob
import os
import signal
import subprocess
import time

import pytest

from conftest import (ROOT, assert_fault, by_meter, gateway_config,
                      meterhub_binary, read_meters, typed, wait_until)

# A user profile that exercises every register type and both word orders.
ALL_TYPES = {
    'points': [
        {'name': 'energy_import_kwh', 'table': 'holding', 'address': '0x0000', 'type': 'float32'},
        {'name': 'energy_export_kwh', 'table': 'holding', 'address': '0x0002', 'type': 'float64',
         'word_order': 'little'},
        {'name': 'voltage_a_v', 'table': 'input', 'address': '0x0010', 'type': 'u16', 'scale': 0.1},
        {'name': 'current_a_a', 'table': 'input', 'address': '0x0011', 'type': 's16', 'scale': 0.01},
        {'name': 'power_kw', 'table': 'input', 'address': '0x0012', 'type': 's32', 'scale': 0.001,
         'word_order': 'little'},
        {'name': 'counter_u32', 'table': 'input', 'address': '0x0014', 'type': 'u32'},
        {'name': 'counter_u64', 'table': 'holding', 'address': '0x0020', 'type': 'u64'},
        {'name': 'frequency_hz', 'table': 'holding', 'address': '0x0030', 'type': 'u16',
         'scale': 0.01},
    ],
}
ALL_TYPES_VALUES = {
    'energy_import_kwh': 12345.5,
    'energy_export_kwh': 678.125,
    'voltage_a_v': 230.1,
    'current_a_a': -12.34,
    'power_kw': -2.5,
    'counter_u32': 400000000,
    'counter_u64': 2**40 + 7,
    'frequency_hz': 49.98,
}


def all_types_slave(scale=1.0):
    v = {k: x * scale for k, x in ALL_TYPES_VALUES.items()}
    return {'typed': [
        typed('holding', 0x0000, 'float32', v['energy_import_kwh']),
        typed('holding', 0x0002, 'float64', v['energy_export_kwh'], 'little'),
        typed('input', 0x0010, 'u16', round(v['voltage_a_v'] * 10)),
        typed('input', 0x0011, 's16', round(v['current_a_a'] * 100)),
        typed('input', 0x0012, 's32', round(v['power_kw'] * 1000), 'little'),
        typed('input', 0x0014, 'u32', int(v['counter_u32'])),
        typed('holding', 0x0020, 'u64', int(v['counter_u64'])),
        typed('holding', 0x0030, 'u16', round(v['frequency_hz'] * 100)),
    ]}, v


# CHINT DTSU666: holding float32, values in 0.1 V, 0.001 A, 0.1 W, 0.001, 0.01 Hz.
def dtsu666_slave(import_kwh, export_kwh):
    return {'typed': [
        typed('holding', 0x2006, 'float32', 2301.0),  # 230.1 V
        typed('holding', 0x2008, 'float32', 2295.0),
        typed('holding', 0x200A, 'float32', 2310.0),
        typed('holding', 0x200C, 'float32', 5123.0),  # 5.123 A
        typed('holding', 0x200E, 'float32', 4000.0),
        typed('holding', 0x2010, 'float32', 3000.0),
        typed('holding', 0x2012, 'float32', 35000.0),  # 3.5 kW
        typed('holding', 0x202A, 'float32', 985.0),   # 0.985
        typed('holding', 0x2044, 'float32', 5001.0),  # 50.01 Hz
        typed('holding', 0x101E, 'float32', import_kwh),
        typed('holding', 0x1028, 'float32', export_kwh),
    ]}


DTSU666_EXPECTED = {
    'voltage_a_v': 230.1, 'voltage_b_v': 229.5, 'voltage_c_v': 231.0,
    'current_a_a': 5.123, 'current_b_a': 4.0, 'current_c_a': 3.0,
    'power_kw': 3.5, 'power_factor': 0.985, 'frequency_hz': 50.01,
}


def bus(name, device, meters, timeout='300ms'):
    return {'name': name, 'device': device, 'baud': 9600, 'parity': 'none',
            'protocol': 'modbus', 'timeout': timeout, 'meters': meters}


def epoch(rfc3339):
    """Seconds since the epoch of an RFC 3339 UTC time, with optional fraction."""
    whole, _, frac = rfc3339.rstrip('Z').partition('.')
    return calendar.timegm(time.strptime(whole, '%Y-%m-%dT%H:%M:%S')) + \
        (float('0.' + frac) if frac else 0.0)



def test_published_values_equal_simulator_registers(broker, modbus_sim, gateway,
                                                    subscriber_factory, tmp_path):
    slaves1, slaves2, expected = {}, {}, {}
    meters1, meters2 = [], []
    for i in range(1, 5):
        s, v = all_types_slave(scale=i)
        slaves1[str(i)] = s
        meters1.append({'id': 'm-a%d' % i, 'address': i, 'profile': 'all-types'})
        expected['m-a%d' % i] = v
        slaves2[str(i + 10)] = dtsu666_slave(1000.25 * i, 10.5 * i)
        meters2.append({'id': 'm-b%d' % i, 'address': i + 10, 'profile': 'chint-dtsu666'})
        expected['m-b%d' % i] = dict(DTSU666_EXPECTED, energy_import_kwh=1000.25 * i,
                                     energy_export_kwh=10.5 * i)
    sim1 = modbus_sim('bus1', slaves1)
    sim2 = modbus_sim('bus2', slaves2)
    cfg = gateway_config(tmp_path, broker.port, [
        bus('rs485-1', sim1.gateway_end, meters1),
        bus('rs485-2', sim2.gateway_end, meters2),
    ], profiles={'all-types': ALL_TYPES})
    sub = subscriber_factory(broker.port, 'meterhub/gw-test/#')
    gw = gateway(cfg).start()

    wait_until(lambda: set(by_meter(sub.readings('meterhub/gw-test'))) >= set(expected), 15,
               what='a reading from every meter')
    for meter, readings in by_meter(sub.readings('meterhub/gw-test')).items():
        r = readings[0]
        assert r['quality'] == 'good', r
        assert r['meter'] == meter
        assert set(r['values']) == set(expected[meter]), r
        for name, value in expected[meter].items():
            assert r['values'][name] == pytest.approx(value, rel=1e-6), (meter, name, r)
    assert gw.stop() == 0


def test_ts_is_the_interval_boundary_and_seq_increases(broker, modbus_sim, gateway,
                                                       subscriber_factory, tmp_path):
    s, _ = all_types_slave()
    sim = modbus_sim('bus1', {'1': s, '2': s})
    cfg = gateway_config(tmp_path, broker.port, [bus('rs485-1', sim.gateway_end, [
        {'id': 'm-1', 'address': 1, 'profile': 'all-types'},
        {'id': 'm-2', 'address': 2, 'profile': 'all-types'}])],
        interval='2s', profiles={'all-types': ALL_TYPES})
    sub = subscriber_factory(broker.port, 'meterhub/gw-test/#')
    gw = gateway(cfg).start()
    wait_until(lambda: len(sub.readings('meterhub/gw-test')) >= 6, 20, what='6 readings')
    readings = sub.readings('meterhub/gw-test')
    seqs = [r['seq'] for r in readings]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
    assert seqs[0] >= 1
    for r in readings:
        # Boundaries of a 2 s interval counted from local midnight: even seconds.
        assert r['ts'].endswith('Z') and len(r['ts']) == 20, r['ts']
        assert int(r['ts'][17:19]) % 2 == 0, r['ts']
        assert epoch(r['read_at']) >= epoch(r['ts'])
    # Both meters share each boundary.
    per_ts = collections.Counter(r['ts'] for r in readings)
    assert max(per_ts.values()) == 2
    assert gw.stop() == 0


def test_silent_meter_costs_one_timeout_and_others_stay_on_time(
        broker, modbus_sim, gateway, subscriber_factory, tmp_path):
    s, _ = all_types_slave()
    slaves = {str(i): s for i in range(1, 6)}
    slaves['3'] = dict(s, fault={'kind': 'silent'})
    sim = modbus_sim('bus1', slaves)
    meters = [{'id': 'm-%d' % i, 'address': i, 'profile': 'all-types'} for i in range(1, 6)]
    cfg = gateway_config(tmp_path, broker.port,
                         [bus('rs485-1', sim.gateway_end, meters, timeout='300ms')],
                         profiles={'all-types': ALL_TYPES})
    sub = subscriber_factory(broker.port, 'meterhub/gw-test/#')
    gw = gateway(cfg).start()

    def three_rounds():
        got = by_meter(sub.readings('meterhub/gw-test'))
        return len(got) == 5 and all(len(v) >= 3 for v in got.values())
    wait_until(three_rounds, 20, what='three rounds of readings')
    assert gw.stop() == 0

    got = by_meter(sub.readings('meterhub/gw-test'))
    for r in got['m-3']:
        assert r['quality'] == 'timeout', r
        assert r['values'] == {}
        assert 'no reply' in r['error']
    boundaries = sorted(set(r['ts'] for r in got['m-3']))
    for meter in ('m-1', 'm-2', 'm-4', 'm-5'):
        assert all(r['quality'] == 'good' for r in got[meter]), got[meter]
        # Every boundary the silent meter was tried at, the others were read too.
        assert set(boundaries) <= set(r['ts'] for r in got[meter]) | {boundaries[-1]}
    # The silent meter was asked once per boundary: one frame, one timeout.
    asked = [q for q in sim.requests() if q['slave'] == 3]
    assert len(asked) <= len(boundaries) + 1, asked
    assert all(not q['answered'] for q in asked)
    # The meter after the silent one is read within one timeout of it.
    for r in got['m-4']:
        assert epoch(r['read_at']) - epoch(r['ts']) < 1.0, r


def test_batching_reads_a_meter_in_few_frames(broker, modbus_sim, gateway,
                                              subscriber_factory, tmp_path):
    slave = dtsu666_slave(5.0, 1.0)
    # A real meter answers for the unused registers between its energy totals.
    slave['holding'] = {str(a): 0 for a in range(0x1020, 0x1028)}
    sim = modbus_sim('bus1', {'1': slave})
    cfg = gateway_config(tmp_path, broker.port, [bus('rs485-1', sim.gateway_end, [
        {'id': 'm-1', 'address': 1, 'profile': 'chint-dtsu666'}])])
    sub = subscriber_factory(broker.port, 'meterhub/gw-test/#')
    gw = gateway(cfg).start()
    wait_until(lambda: len(sub.readings('meterhub/gw-test')) >= 2, 15, what='2 readings')
    assert gw.stop() == 0
    rounds = len(sub.readings('meterhub/gw-test'))
    reqs = [(q['fc'], q['address'], q['count']) for q in sim.requests() if q['slave'] == 1]
    # 11 points, 4 frames: 0x101E-0x1029 (both energy totals, 8 unused registers
    # between them, within the default gap of 8), 0x2006-0x2013 (voltages,
    # currents, power), 0x202A (power factor) and 0x2044 (frequency).
    assert reqs == [(3, 0x101E, 12), (3, 0x2006, 14), (3, 0x202A, 2), (3, 0x2044, 2)] * rounds
    for r in sub.readings('meterhub/gw-test'):
        assert r['quality'] == 'good'
        assert r['values'] == dict(DTSU666_EXPECTED, energy_import_kwh=5.0,
                                   energy_export_kwh=1.0)


def test_meter_that_refuses_gaps_is_reread_exactly(broker, modbus_sim, gateway,
                                                   subscriber_factory, tmp_path):
    # Registers 0 and 2 exist, 1 does not: a batched read of 0..2 gets exception 02.
    slave = {'holding': {'0': 100, '2': 200}}
    sim = modbus_sim('bus1', {'1': slave})
    profile = {'points': [
        {'name': 'voltage_a_v', 'table': 'holding', 'address': 0, 'type': 'u16'},
        {'name': 'voltage_b_v', 'table': 'holding', 'address': 2, 'type': 'u16'}]}
    cfg = gateway_config(tmp_path, broker.port, [bus('rs485-1', sim.gateway_end, [
        {'id': 'm-1', 'address': 1, 'profile': 'gappy'}])], profiles={'gappy': profile})
    sub = subscriber_factory(broker.port, 'meterhub/gw-test/#')
    gw = gateway(cfg).start()
    wait_until(lambda: len(sub.readings('meterhub/gw-test')) >= 2, 15, what='2 readings')
    assert gw.stop() == 0
    for r in sub.readings('meterhub/gw-test'):
        assert r['quality'] == 'good', r
        assert r['values'] == {'voltage_a_v': 100, 'voltage_b_v': 200}
    reqs = [(q['address'], q['count']) for q in sim.requests()]
    assert reqs[0] == (0, 3)
    assert set(reqs[1:]) == {(0, 1), (2, 1)}


@pytest.mark.parametrize('fault,quality,text', [
    ({'kind': 'exception', 'code': 4}, 'error', 'exception 4'),
    ({'kind': 'bad_crc'}, 'error', 'garbled'),
    ({'kind': 'wrong_slave'}, 'error', 'garbled'),
    ({'kind': 'truncated'}, 'error', 'garbled'),
])
def test_faulty_meter_gives_error_never_a_wrong_value(broker, modbus_sim, gateway,
                                                      subscriber_factory, tmp_path,
                                                      fault, quality, text):
    s, _ = all_types_slave()
    sim = modbus_sim('bus1', {'1': dict(s, fault=fault), '2': s})
    cfg = gateway_config(tmp_path, broker.port, [bus('rs485-1', sim.gateway_end, [
        {'id': 'm-bad', 'address': 1, 'profile': 'all-types'},
        {'id': 'm-good', 'address': 2, 'profile': 'all-types'}])],
        profiles={'all-types': ALL_TYPES})
    sub = subscriber_factory(broker.port, 'meterhub/gw-test/#')
    got = read_meters(gateway, cfg, sub, ['m-bad', 'm-good'])
    assert_fault(got, 'm-bad', quality, text)
    for r in got['m-good']:
        assert r['quality'] == 'good', r


def test_noise_on_every_other_reply_is_retried(broker, modbus_sim, gateway,
                                               subscriber_factory, tmp_path):
    s, v = all_types_slave()
    sim = modbus_sim('bus1', {'1': dict(s, fault={'kind': 'bad_crc', 'every': 2})})
    cfg = gateway_config(tmp_path, broker.port, [bus('rs485-1', sim.gateway_end, [
        {'id': 'm-1', 'address': 1, 'profile': 'all-types'}])],
        profiles={'all-types': ALL_TYPES})
    sub = subscriber_factory(broker.port, 'meterhub/gw-test/#')
    gw = gateway(cfg).start()
    wait_until(lambda: len(sub.readings('meterhub/gw-test')) >= 3, 20, what='3 readings')
    assert gw.stop() == 0
    for r in sub.readings('meterhub/gw-test'):
        assert r['quality'] == 'good', r
        assert r['values']['energy_import_kwh'] == pytest.approx(v['energy_import_kwh'])


def test_status_online_retained_and_offline_on_shutdown(broker, modbus_sim, gateway,
                                                       subscriber_factory, tmp_path):
    s, _ = all_types_slave()
    sim = modbus_sim('bus1', {'1': s})
    cfg = gateway_config(tmp_path, broker.port, [bus('rs485-1', sim.gateway_end, [
        {'id': 'm-1', 'address': 1, 'profile': 'all-types'}])],
        profiles={'all-types': ALL_TYPES})
    gw = gateway(cfg).start()
    late = None
    sub = subscriber_factory(broker.port, 'meterhub/gw-test/status')
    wait_until(lambda: any(p.get('state') == 'online' for _, p, _ in sub.snapshot()), 10,
               what='status online')
    # A subscriber that comes later gets the retained status.
    late = subscriber_factory(broker.port, 'meterhub/gw-test/status', 'late-sub')
    wait_until(lambda: late.snapshot(), 10, what='retained status')
    topic, payload, retained = late.snapshot()[0]
    assert retained and payload['state'] == 'online' and payload['version']
    assert payload['started'].endswith('Z')
    assert gw.stop() == 0
    wait_until(lambda: any(p.get('state') == 'offline' for _, p, _ in sub.snapshot()), 10,
               what='status offline')
    log = gw.log()
    assert 'shutting down' in log


def test_sigkill_publishes_offline_last_will(broker, modbus_sim, gateway,
                                             subscriber_factory, tmp_path):
    s, _ = all_types_slave()
    sim = modbus_sim('bus1', {'1': s})
    cfg = gateway_config(tmp_path, broker.port, [bus('rs485-1', sim.gateway_end, [
        {'id': 'm-1', 'address': 1, 'profile': 'all-types'}])],
        profiles={'all-types': ALL_TYPES}, mqtt={
            'uri': 'tcp://127.0.0.1:%d' % broker.port, 'keepalive': 5})
    sub = subscriber_factory(broker.port, 'meterhub/gw-test/status')
    gw = gateway(cfg).start()
    wait_until(lambda: any(p.get('state') == 'online' for _, p, _ in sub.snapshot()), 10,
               what='status online')
    gw.proc.kill()
    gw.proc.wait()
    wait_until(lambda: any(p.get('state') == 'offline' for _, p, _ in sub.snapshot()), 15,
               what='the last will')


def record_seqs(sub):
    """The seq of every record received (any topic), first arrivals in order."""
    seqs = []
    for _, p, _ in sub.snapshot():
        if isinstance(p, dict) and 'seq' in p and p['seq'] not in seqs:
            seqs.append(p['seq'])
    return seqs


def test_records_survive_a_broker_outage(broker, modbus_sim, gateway, subscriber_factory,
                                         tmp_path):
    s, _ = all_types_slave()
    sim = modbus_sim('bus1', {'1': s})
    cfg = gateway_config(tmp_path, broker.port, [bus('rs485-1', sim.gateway_end, [
        {'id': 'm-1', 'address': 1, 'profile': 'all-types'}])],
        profiles={'all-types': ALL_TYPES})
    gw = gateway(cfg).start()
    sub = subscriber_factory(broker.port, 'meterhub/gw-test/reading/#')
    wait_until(lambda: sub.readings('meterhub/gw-test'), 10, what='a first reading')
    sub.close()
    broker.stop()
    time.sleep(4)
    broker.start()
    # Every record takes a seq (readings and the intervals built from them): all topics.
    sub = subscriber_factory(broker.port, 'meterhub/gw-test/#', 'sub-2')
    wait_until(lambda: len(record_seqs(sub)) >= 6, 20, what='the backlog')
    seqs = record_seqs(sub)
    first = seqs[0]
    # The backlog arrives in order, without a gap, from the oldest unacknowledged record.
    assert seqs[:6] == list(range(first, first + 6)), seqs
    assert gw.stop() == 0


def test_bad_config_exits_nonzero_with_position(tmp_path):
    bad = tmp_path / 'bad.yaml'
    bad.write_text('gateway: { id: gw-1, timezone: Asia/Shanghai }\n'
                   'mqtt: { uri: "tcp://127.0.0.1:1" }\n'
                   'schedule: { interval: 15x }\n'
                   'buses: []\n')
    for extra in ([], ['--check-config']):
        res = subprocess.run([meterhub_binary(), '-c', str(bad)] + extra,
                             capture_output=True, text=True, timeout=10)
        assert res.returncode == 1
        assert '%s:3:23: schedule.interval: "15x" is not a duration' % bad in res.stderr
        assert '%s:4:8: buses: expected a list with at least one entry' % bad in res.stderr


def test_bad_config_touches_no_bus(tmp_path, procs, modbus_sim):
    sim = modbus_sim('bus1', {'1': all_types_slave()[0]})
    bad = tmp_path / 'bad.yaml'
    bad.write_text(
        'gateway: { id: gw-1, timezone: Asia/Shanghai }\n'
        'mqtt: { uri: "tcp://127.0.0.1:1" }\n'
        'schedule: { interval: 1s }\n'
        'buses:\n'
        '  - { name: b, device: %s, protocol: modbus,\n'
        '      meters: [ { id: m, address: 1, profile: no-such-profile } ] }\n'
        % sim.gateway_end)
    res = subprocess.run([meterhub_binary(), '-c', str(bad)], capture_output=True, text=True,
                         timeout=10)
    assert res.returncode == 1
    assert 'buses[0].meters[0].profile: no profile named "no-such-profile"' in res.stderr
    time.sleep(0.5)
    assert sim.requests() == []


def test_check_config_accepts_the_shipped_examples():
    examples = glob.glob(os.path.join(ROOT, 'config', 'examples', '*.yaml'))
    assert examples
    for path in examples:
        res = subprocess.run([meterhub_binary(), '--check-config', '-c', path],
                             capture_output=True, text=True, timeout=10)
        assert res.returncode == 0, (path, res.stderr)
        assert 'configuration is valid' in res.stdout


def test_sigint_finishes_cleanly_and_keeps_unsent_records(broker, modbus_sim, gateway,
                                                          subscriber_factory, tmp_path):
    s, _ = all_types_slave()
    sim = modbus_sim('bus1', {'1': s})
    cfg = gateway_config(tmp_path, broker.port, [bus('rs485-1', sim.gateway_end, [
        {'id': 'm-1', 'address': 1, 'profile': 'all-types'}])],
        profiles={'all-types': ALL_TYPES})
    sub = subscriber_factory(broker.port, 'meterhub/gw-test/#')
    gw = gateway(cfg).start()
    wait_until(lambda: len(sub.readings('meterhub/gw-test')) >= 2, 10, what='readings')
    broker.stop(signal.SIGKILL)
    time.sleep(2.5)  # readings stored while the broker is away
    assert gw.stop(signal.SIGINT) == 0
    before = max(record_seqs(sub))
    broker.start()
    sub2 = subscriber_factory(broker.port, 'meterhub/gw-test/#', 'sub-2')
    gateway(cfg, name='meterhub-2').start()
    # What was stored during the outage goes out after the restart, seq continuing.
    wait_until(lambda: before + 1 in record_seqs(sub2), 15, what='the record after %d' % before)
