# SPDX-License-Identifier: MIT
"""The serial links and their codecs under the faults of real lines, end to
end."""

from conftest import by_meter, gateway_config, typed, wait_until


def run_until(gateway, cfg, sub, prefix, meter, rounds, timeout):
    gw = gateway(cfg).start()
    wait_until(lambda: len(by_meter(sub.readings(prefix)).get(meter, [])) >= rounds, timeout,
               what='%d readings of %s' % (rounds, meter))
    assert gw.stop() == 0
    return by_meter(sub.readings(prefix))[meter]


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
