# SPDX-License-Identifier: MIT
"""The serial links under the faults of real lines, end to end: an RS485
adapter that echoes the master's bytes in front of a meter that takes its
time to answer, a register that scaling takes out of range, and two daemons
configured on one line."""

import pytest

from conftest import by_meter, gateway_config, typed, wait_until

METER = '000000000001'

# Two frames a reading: the energy block (total, T1..T4) and the voltage.
DLT645_PROFILE = {'points': [{'di': '0001FF00'}, {'di': '02010100'}]}
DLT645_NAMES = {'energy_import_kwh', 'energy_import_t1_kwh', 'energy_import_t2_kwh',
                'energy_import_t3_kwh', 'energy_import_t4_kwh', 'voltage_a_v'}


def dlt645_bus(device, timeout='1s'):
    return {'name': 'rs485-645', 'device': device, 'baud': 2400, 'parity': 'even',
            'protocol': 'dlt645', 'timeout': timeout,
            'meters': [{'id': 'm-1', 'address': METER, 'profile': 'small-645'}]}


def dlt645_meter(**kw):
    m = {'address': METER, 'phases': 1, 'load_kw': 0, 'voltage_v': 220.7,
         'import_kwh': {'t1': 10.11, 't2': 20.22, 't3': 30.33, 't4': 40.44}}
    m.update(kw)
    return m


def said(sim):
    """Every value the simulated meter sent, merged, from its own log."""
    values = {}
    for f in sim.frames():
        if f.get('dir') == 'tx' and f.get('addr') == METER and f.get('values'):
            values.update(f['values'])
    return values


def run_until(gateway, cfg, sub, prefix, meter, rounds, timeout):
    gw = gateway(cfg).start()
    wait_until(lambda: len(by_meter(sub.readings(prefix)).get(meter, [])) >= rounds, timeout,
               what='%d readings of %s' % (rounds, meter))
    assert gw.stop() == 0
    return by_meter(sub.readings(prefix))[meter]


@pytest.mark.parametrize('turnaround_ms', [150, 400])
def test_dlt645_echoing_adapter_and_slow_meter(broker, dlt645_sim, gateway, subscriber_factory,
                                               tmp_path, turnaround_ms):
    sim = dlt645_sim('echo', {'bus': {'echo': True, 'turnaround_ms': turnaround_ms},
                              'meters': [dlt645_meter()]})
    cfg = gateway_config(tmp_path, broker.port, [dlt645_bus(sim.gateway_end)], interval='2s',
                         profiles={'small-645': DLT645_PROFILE})
    sub = subscriber_factory(broker.port, 'meterhub/gw-test/#')
    readings = run_until(gateway, cfg, sub, 'meterhub/gw-test', 'm-1', 2, 30)

    # The adapter really did echo every request.
    assert any(f.get('dir') == 'echo' for f in sim.frames())
    values = said(sim)
    for r in readings:
        assert r['quality'] == 'good', r
        assert set(r['values']) == DLT645_NAMES, r
        for name, value in r['values'].items():
            assert value == pytest.approx(values[name], abs=1e-9), (name, r, values)
    assert readings[0]['values']['energy_import_t3_kwh'] == 30.33
    assert readings[0]['values']['voltage_a_v'] == 220.7


def test_dlt645_silent_meter_behind_echoing_adapter_is_a_timeout(
        broker, dlt645_sim, gateway, subscriber_factory, tmp_path):
    # The echo of the request is all that comes back: no reply, not a garbled one.
    sim = dlt645_sim('echo', {'bus': {'echo': True, 'turnaround_ms': 150},
                              'meters': [dlt645_meter(fault={'silence': True})]})
    cfg = gateway_config(tmp_path, broker.port, [dlt645_bus(sim.gateway_end, '500ms')],
                         interval='2s', profiles={'small-645': DLT645_PROFILE})
    sub = subscriber_factory(broker.port, 'meterhub/gw-test/#')
    readings = run_until(gateway, cfg, sub, 'meterhub/gw-test', 'm-1', 2, 20)

    assert any(f.get('dir') == 'echo' for f in sim.frames())
    for r in readings:
        assert r['quality'] == 'timeout', r
        assert r['values'] == {}, r


def modbus_bus(device, gw_timeout='300ms'):
    return {'name': 'rs485-mb', 'device': device, 'baud': 9600, 'parity': 'none',
            'protocol': 'modbus', 'timeout': gw_timeout,
            'meters': [{'id': 'm-1', 'address': 1, 'profile': 'scaled'}]}


SCALED = {'points': [
    {'name': 'energy_import_kwh', 'table': 'holding', 'address': '0x0000', 'type': 'float64',
     'scale': 10},
    {'name': 'voltage_a_v', 'table': 'holding', 'address': '0x0010', 'type': 'u16',
     'scale': 0.1},
]}


def test_modbus_value_out_of_range_after_scaling_is_an_error(
        broker, modbus_sim, gateway, subscriber_factory, tmp_path):
    # 1e308 is a fine float64; times the profile's scale of 10 it is infinity.
    sim = modbus_sim('mb', {'1': {'typed': [typed('holding', 0x0000, 'float64', 1e308),
                                            typed('holding', 0x0010, 'u16', 2301)]}})
    cfg = gateway_config(tmp_path, broker.port, [modbus_bus(sim.gateway_end)],
                         profiles={'scaled': SCALED})
    sub = subscriber_factory(broker.port, 'meterhub/gw-test/#')
    readings = run_until(gateway, cfg, sub, 'meterhub/gw-test', 'm-1', 2, 20)

    for r in readings:
        assert r['quality'] == 'error', r
        assert 'energy_import_kwh' not in r['values'], r
        # Whatever else is published is a number: JSON has no infinity.
        assert all(isinstance(v, (int, float)) for v in r['values'].values()), r


@pytest.mark.parametrize('protocol', ['modbus', 'dlt645'])
def test_second_daemon_on_a_line_in_use_stays_off_it(broker, modbus_sim, dlt645_sim, gateway,
                                                     subscriber_factory, tmp_path, protocol):
    if protocol == 'modbus':
        sim = modbus_sim('mb', {'1': {'typed': [typed('holding', 0x0000, 'float64', 12.5),
                                                typed('holding', 0x0010, 'u16', 2301)]}})
        buses, profiles = [modbus_bus(sim.gateway_end)], {'scaled': SCALED}
    else:
        sim = dlt645_sim('b645', {'meters': [dlt645_meter()]})
        buses, profiles = [dlt645_bus(sim.gateway_end)], {'small-645': DLT645_PROFILE}
    first = gateway_config(tmp_path, broker.port, buses, gw_id='gw-a', profiles=profiles)
    second = gateway_config(tmp_path, broker.port, buses, gw_id='gw-b', profiles=profiles,
                            store={'path': str(tmp_path / 'store-b'), 'max_bytes': '16MiB'})
    sub = subscriber_factory(broker.port, 'meterhub/#')
    a = gateway(first, name='meterhub-a').start()
    wait_until(lambda: len(sub.readings('meterhub/gw-a')) >= 1, 15, what='a reading of gw-a')
    b = gateway(second, name='meterhub-b').start()
    wait_until(lambda: len(sub.readings('meterhub/gw-b')) >= 3, 15, what='3 readings of gw-b')
    # While the first daemon has the line, the second never gets to read on it.
    blocked = sub.readings('meterhub/gw-b')
    for r in blocked:
        assert r['quality'] == 'error', r
        assert r['values'] == {}, r
    assert a.stop() == 0
    assert all(r['quality'] == 'good' for r in sub.readings('meterhub/gw-a'))

    # Once the line is free, the second daemon takes it over.
    def good_b():
        return [r for r in sub.readings('meterhub/gw-b') if r['quality'] == 'good']
    wait_until(good_b, 20, what='a good reading of gw-b once gw-a is gone')
    assert b.stop() == 0
