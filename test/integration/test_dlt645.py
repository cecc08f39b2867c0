# SPDX-License-Identifier: MIT
"""DL/T 645-2007 meters end to end: the real daemon reads simulated meters
(test/sim/dlt645_sim.py, written independently of the codec) on a pty bus
and publishes exactly what the meters said."""

import subprocess

import pytest

from conftest import (assert_fault, by_meter, gateway_config, meterhub_binary, read_meters,
                      wait_until)

SINGLE = 'dlt645-single-phase'
THREE = 'dlt645-three-phase'


def bus(device, meters, timeout='300ms'):
    return {'name': 'rs485-645', 'device': device, 'baud': 2400, 'parity': 'even',
            'protocol': 'dlt645', 'timeout': timeout, 'meters': meters}


def sim_meter(address, phases=3, **kw):
    m = {'address': address, 'phases': phases, 'load_kw': 0, 'import_kwh':
         {'t1': 10.11, 't2': 20.22, 't3': 30.33, 't4': 40.44}, 'export_kwh': 5.55,
         'voltage_v': [229.9, 230.4, 231.0] if phases == 3 else 220.7,
         'power_factor': 0.955, 'frequency_hz': 49.98}
    m.update(kw)
    return m



def sim_values(sim, address):
    """Everything the simulated meter @address said, merged, from its own log."""
    values = {}
    for f in sim.frames():
        if f.get('dir') == 'tx' and f.get('addr') == address and f.get('values'):
            values.update(f['values'])
    return values


def test_values_equal_what_the_meters_said(broker, dlt645_sim, gateway, subscriber_factory,
                                           tmp_path):
    meters = [
        ('m-1', '000000000001', THREE, sim_meter('000000000001')),
        ('m-2', '000000000002', SINGLE, sim_meter('000000000002', phases=1)),
        # Exporting: power, current and power factor are negative (sign-magnitude).
        ('m-3', '112233445566', THREE, sim_meter('112233445566', import_kwh=123456.78,
                                                 power_factor=0.5, load_kw=-3.0)),
        ('m-4', '000000000004', SINGLE, sim_meter('000000000004', phases=1, preamble=0)),
    ]
    sim = dlt645_sim('b645', {'meters': [m[3] for m in meters]})
    cfg = gateway_config(tmp_path, broker.port, [bus(sim.gateway_end, [
        {'id': mid, 'address': addr, 'profile': prof} for mid, addr, prof, _ in meters])])
    sub = subscriber_factory(broker.port, 'meterhub/gw-test/#')
    gw = gateway(cfg).start()
    wait_until(lambda: len(by_meter(sub.readings('meterhub/gw-test'))) == 4, 15,
               what='a reading of every meter')
    assert gw.stop() == 0

    expected_names = {
        THREE: {'energy_import_kwh', 'energy_import_t1_kwh', 'energy_import_t2_kwh',
                'energy_import_t3_kwh', 'energy_import_t4_kwh', 'energy_export_kwh',
                'voltage_a_v', 'voltage_b_v', 'voltage_c_v', 'current_a_a', 'current_b_a',
                'current_c_a', 'power_kw', 'power_a_kw', 'power_b_kw', 'power_c_kw',
                'power_factor', 'frequency_hz'},
        SINGLE: {'energy_import_kwh', 'energy_import_t1_kwh', 'energy_import_t2_kwh',
                 'energy_import_t3_kwh', 'energy_import_t4_kwh', 'energy_export_kwh',
                 'voltage_a_v', 'current_a_a', 'power_kw', 'power_factor', 'frequency_hz'},
    }
    got = by_meter(sub.readings('meterhub/gw-test'))
    for mid, addr, prof, _ in meters:
        said = sim_values(sim, addr)
        for r in got[mid]:
            assert r['quality'] == 'good', r
            assert set(r['values']) == expected_names[prof], (mid, r)
            for name, value in r['values'].items():
                assert value == pytest.approx(said[name], abs=1e-9), (mid, name, r, said)
    # Spot checks against the configuration, independent of the simulator's log.
    m1 = got['m-1'][0]['values']
    assert m1['energy_import_t3_kwh'] == 30.33
    assert m1['energy_import_kwh'] == pytest.approx(101.10)
    assert m1['voltage_b_v'] == 230.4
    assert got['m-3'][0]['values']['energy_import_kwh'] == 123456.78
    assert got['m-3'][0]['values']['power_factor'] == -0.5
    assert got['m-3'][0]['values']['power_kw'] == -3.0
    assert got['m-3'][0]['values']['current_b_a'] < 0
    assert got['m-2'][0]['values']['voltage_a_v'] == 220.7


def test_blocks_keep_frames_few(broker, dlt645_sim, gateway, subscriber_factory, tmp_path):
    sim = dlt645_sim('b645', {'meters': [sim_meter('000000000001')]})
    cfg = gateway_config(tmp_path, broker.port, [bus(sim.gateway_end, [
        {'id': 'm-1', 'address': '000000000001', 'profile': THREE}])])
    sub = subscriber_factory(broker.port, 'meterhub/gw-test/#')
    gw = gateway(cfg).start()
    wait_until(lambda: len(sub.readings('meterhub/gw-test')) >= 2, 15, what='2 readings')
    assert gw.stop() == 0
    rounds = len(sub.readings('meterhub/gw-test'))
    rx = [f['di'] for f in sim.frames() if f.get('dir') == 'rx' and f.get('c') == 0x11]
    # 18 values in 7 frames: 4 blocks and 3 single identifiers.
    per_round = ['0001FF00', '00020000', '0201FF00', '0202FF00', '0203FF00', '02060000',
                 '02800002']
    assert sorted(rx) == sorted(per_round * rounds), rx


def test_growing_energy_matches_each_reply(broker, dlt645_sim, gateway, subscriber_factory,
                                           tmp_path):
    sim = dlt645_sim('b645', {'meters': [sim_meter('000000000001', load_kw=5.0,
                                                   speedup=3600)]})
    cfg = gateway_config(tmp_path, broker.port, [bus(sim.gateway_end, [
        {'id': 'm-1', 'address': '000000000001', 'profile': THREE}])])
    sub = subscriber_factory(broker.port, 'meterhub/gw-test/#')
    gw = gateway(cfg).start()
    wait_until(lambda: len(sub.readings('meterhub/gw-test')) >= 3, 15, what='3 readings')
    assert gw.stop() == 0
    totals = [f['values']['energy_import_kwh'] for f in sim.frames()
              if f.get('dir') == 'tx' and f.get('di') == '0001FF00']
    published = [r['values']['energy_import_kwh'] for r in sub.readings('meterhub/gw-test')]
    assert published == totals[:len(published)]
    assert published[-1] > published[0]


@pytest.mark.parametrize('fault,quality,text', [
    ({'silence': True}, 'timeout', 'no reply'),
    ({'delay_ms': 600}, 'timeout', 'no reply'),
    ({'bad_checksum': True}, 'error', 'garbled'),
    ({'wrong_addr': True}, 'error', 'garbled'),
    ({'truncate': 6}, 'error', 'garbled'),
    ({'err': 2}, 'error', 'no requested data'),
    ({'err': 4}, 'error', 'password'),
])
def test_faults_give_the_right_quality_and_never_a_value(broker, dlt645_sim, gateway,
                                                         subscriber_factory, tmp_path,
                                                         fault, quality, text):
    sim = dlt645_sim('b645', {'meters': [
        sim_meter('000000000001', fault=fault), sim_meter('000000000002')]})
    cfg = gateway_config(tmp_path, broker.port, [bus(sim.gateway_end, [
        {'id': 'm-bad', 'address': '000000000001', 'profile': THREE},
        {'id': 'm-good', 'address': '000000000002', 'profile': THREE}])])
    sub = subscriber_factory(broker.port, 'meterhub/gw-test/#')
    got = read_meters(gateway, cfg, sub, ['m-bad', 'm-good'])
    assert_fault(got, 'm-bad', quality, text)
    for r in got['m-good']:
        assert r['quality'] == 'good', r
        assert r['values']['energy_import_t1_kwh'] == 10.11
    if quality == 'timeout':
        # One timeout per boundary: the first frame is the only one the meter is sent.
        asked = [f for f in sim.frames() if f.get('dir') == 'rx' and
                 f.get('addr') == '000000000001']
        assert len(asked) <= len(got['m-bad']) + 1, asked


@pytest.mark.parametrize('fault', [
    {'noise_before': '00FF6816', 'noise_after': 3},
    {'bad_checksum': True, 'every': 2},
])
def test_noise_and_single_garbled_replies_are_survived(broker, dlt645_sim, gateway,
                                                       subscriber_factory, tmp_path, fault):
    sim = dlt645_sim('b645', {'meters': [sim_meter('000000000001', fault=fault)]})
    cfg = gateway_config(tmp_path, broker.port, [bus(sim.gateway_end, [
        {'id': 'm-1', 'address': '000000000001', 'profile': THREE}])])
    sub = subscriber_factory(broker.port, 'meterhub/gw-test/#')
    gw = gateway(cfg).start()
    wait_until(lambda: len(sub.readings('meterhub/gw-test')) >= 2, 15, what='2 readings')
    assert gw.stop() == 0
    for r in sub.readings('meterhub/gw-test'):
        assert r['quality'] == 'good', r
        assert r['values']['energy_import_t2_kwh'] == 20.22


def test_echoing_adapter_is_understood(broker, dlt645_sim, gateway, subscriber_factory,
                                       tmp_path):
    sim = dlt645_sim('b645', {'bus': {'echo': True}, 'meters': [sim_meter('000000000001')]})
    cfg = gateway_config(tmp_path, broker.port, [bus(sim.gateway_end, [
        {'id': 'm-1', 'address': '000000000001', 'profile': THREE}])])
    sub = subscriber_factory(broker.port, 'meterhub/gw-test/#')
    gw = gateway(cfg).start()
    wait_until(lambda: len(sub.readings('meterhub/gw-test')) >= 2, 15, what='2 readings')
    assert gw.stop() == 0
    for r in sub.readings('meterhub/gw-test'):
        assert r['quality'] == 'good', r


def test_follow_up_frames_are_joined(broker, dlt645_sim, gateway, subscriber_factory,
                                     tmp_path):
    # The meter sends at most 12 data bytes a frame: a 20-byte energy block needs follow-ups.
    sim = dlt645_sim('b645', {'meters': [sim_meter('000000000001', max_frame_data=12)]})
    cfg = gateway_config(tmp_path, broker.port, [bus(sim.gateway_end, [
        {'id': 'm-1', 'address': '000000000001', 'profile': THREE}])])
    sub = subscriber_factory(broker.port, 'meterhub/gw-test/#')
    gw = gateway(cfg).start()
    wait_until(lambda: len(sub.readings('meterhub/gw-test')) >= 1, 15, what='a reading')
    assert gw.stop() == 0
    r = sub.readings('meterhub/gw-test')[0]
    assert r['quality'] == 'good', r
    assert r['values']['energy_import_t4_kwh'] == 40.44
    assert any(f.get('c') == 0x12 for f in sim.frames() if f.get('dir') == 'rx')


def test_silent_meter_costs_one_timeout_on_a_busy_bus(broker, dlt645_sim, gateway,
                                                      subscriber_factory, tmp_path):
    addrs = ['00000000000%d' % i for i in range(1, 7)]
    meters = [sim_meter(a, phases=1, fault={'silence': True} if a.endswith('3') else None)
              for a in addrs]
    sim = dlt645_sim('b645', {'meters': meters})
    cfg = gateway_config(tmp_path, broker.port, [bus(sim.gateway_end, [
        {'id': 'm-%s' % a[-1], 'address': a, 'profile': SINGLE} for a in addrs],
        timeout='300ms')], interval='2s')
    sub = subscriber_factory(broker.port, 'meterhub/gw-test/#')
    gw = gateway(cfg).start()

    def rounds():
        got = by_meter(sub.readings('meterhub/gw-test'))
        return len(got) == 6 and all(len(v) >= 2 for v in got.values())
    wait_until(rounds, 20, what='two rounds')
    assert gw.stop() == 0
    got = by_meter(sub.readings('meterhub/gw-test'))
    assert all(r['quality'] == 'timeout' for r in got['m-3'])
    for mid in ('m-1', 'm-2', 'm-4', 'm-5', 'm-6'):
        assert all(r['quality'] == 'good' for r in got[mid]), got[mid]
        ts = [r['ts'] for r in got[mid]]
        assert len(ts) == len(set(ts))  # one reading per boundary, none skipped
    timeouts = sum(r['duration_ms'] for r in got['m-3']) / len(got['m-3'])
    assert 300 <= timeouts < 450


def test_discover_prints_the_lone_meters_address(dlt645_sim):
    sim = dlt645_sim('b645', {'meters': [sim_meter('000000000001')]})
    res = subprocess.run([meterhub_binary(), '--discover', sim.gateway_end],
                         capture_output=True, text=True, timeout=10)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == '000000000001'
    rx = [f for f in sim.frames() if f.get('dir') == 'rx']
    assert rx and rx[0]['c'] == 0x13


def test_discover_reports_silence(dlt645_sim):
    sim = dlt645_sim('b645', {'meters': [sim_meter('000000000001', fault={'silence': True})]})
    res = subprocess.run([meterhub_binary(), '--discover', sim.gateway_end],
                         capture_output=True, text=True, timeout=10)
    assert res.returncode == 1
    assert 'exactly one meter' in res.stderr
