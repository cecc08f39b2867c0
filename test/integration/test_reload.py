# SPDX-License-Identifier: MIT
"""SIGHUP reload (README "Reloading the configuration"): a good file is
taken without a restart, a bad one or one that changes a restart-only key
is refused and the running configuration goes on. Buses whose settings and
meters did not change keep running untouched; the others restart alone,
after the reads they were given, and read what they held back for the
boundary it belongs to. Nothing buffered is lost, whatever the broker does.
"""

import datetime
import json
import signal
import time

from conftest import check_complete, gateway_config, typed, wait_until
from test_events import events
from test_store_forward import PROFILE, slave

PREFIX = 'meterhub/gw-test'

# The re-profiled meter gains a point: its readings show whether the new profile runs.
PROFILE2 = {'points': PROFILE['points'] + [
    {'name': 'current_a_a', 'table': 'holding', 'address': 4, 'type': 'u16', 'scale': 0.01}]}


def richer_slave():
    s = slave()
    s['typed'].append(typed('holding', 4, 'u16', 512))
    return s


def two_buses(tmp_path, port, modbus_sim, **extra):
    bus1 = modbus_sim('bus1', {str(i): richer_slave() for i in (1, 2, 3)})
    bus2 = modbus_sim('bus2', {'11': slave()})
    cfg = gateway_config(tmp_path, port, [
        {'name': 'rs485-1', 'device': bus1.gateway_end, 'protocol': 'modbus', 'timeout': '200ms',
         'meters': [{'id': 'm-1', 'address': 1, 'profile': 'p'},
                    {'id': 'm-2', 'address': 2, 'profile': 'p'}]},
        {'name': 'rs485-2', 'device': bus2.gateway_end, 'protocol': 'modbus', 'timeout': '200ms',
         'meters': [{'id': 'm-11', 'address': 11, 'profile': 'p'}]}],
        profiles={'p': PROFILE, 'p2': PROFILE2}, **extra)
    return cfg, bus1, bus2


def epoch(ts):
    return datetime.datetime.fromisoformat(ts.replace('Z', '+00:00')).timestamp()


def boundaries(readings, meter):
    """The boundaries of @meter's readings, a seq delivered twice (after a
    reconnect) counted once."""
    once = {r['seq']: r for r in readings if r['meter'] == meter}
    return sorted(epoch(r['ts']) for r in once.values())


def assert_every_boundary(readings, meter, start, end):
    """@meter has exactly one reading for every 1 s boundary from @start to @end."""
    got = [t for t in boundaries(readings, meter) if start <= t <= end]
    want = [float(t) for t in range(int(start), int(end) + 1)]
    assert got == want, (meter, sorted(set(want) - set(got)),
                         [t for t in set(got) if got.count(t) > 1])


def test_reload_reprofiles_and_adds_a_meter_while_the_other_bus_runs_on(
        broker, modbus_sim, gateway, subscriber_factory, tmp_path):
    cfg, bus1, bus2 = two_buses(tmp_path, broker.port, modbus_sim)
    sub = subscriber_factory(broker.port, PREFIX + '/#')
    gw = gateway(cfg).start()
    wait_until(lambda: len(sub.readings(PREFIX)) >= 9, 20, what='three rounds of readings')

    cfg['buses'][0]['meters'][0]['profile'] = 'p2'
    cfg['buses'][0]['meters'].append({'id': 'm-3', 'address': 3, 'profile': 'p'})
    gw.path.write_text(json.dumps(cfg, indent=2))
    hup = time.time()
    gw.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: events(sub, 'config_reloaded'), 15, what='a config_reloaded event')
    ev = events(sub, 'config_reloaded')[0]
    assert ev['file'] == str(gw.path), ev
    changes = ev['changes']
    assert changes['buses'] == {'restarted': ['rs485-1']}, changes
    assert changes['meters'] == {'added': ['m-3'], 'changed': ['m-1']}, changes
    assert 'keys' not in changes, changes

    def after(meter):
        return [r for r in sub.readings(PREFIX) if r['meter'] == meter and epoch(r['ts']) > hup + 1]
    wait_until(lambda: len(after('m-3')) >= 3 and len(after('m-1')) >= 3, 20,
               what='readings of the added and the re-profiled meter')
    assert all(r['values']['current_a_a'] == 5.12 for r in after('m-1')), after('m-1')
    assert all(set(r['values']) == {'power_kw', 'voltage_a_v'} for r in after('m-3'))
    end = time.time() - 2
    assert gw.stop() == 0

    got = sub.readings(PREFIX)
    start = min(boundaries(got, 'm-11'))
    # The untouched bus: every boundary once, through the reload.
    assert_every_boundary(got, 'm-11', start, end)
    # The restarted bus lost no boundary of the meters it kept.
    assert_every_boundary(got, 'm-2', start, end)
    assert_every_boundary(got, 'm-1', start, end)
    # Its thread never stopped: its meter was read within its boundary's first second.
    late = [r for r in got if r['meter'] == 'm-11' and epoch(r['read_at']) - epoch(r['ts']) > 0.9]
    assert not late, late
    check_complete(sub.snapshot())


def test_reload_refuses_bad_files_and_restart_keys(broker, modbus_sim, gateway,
                                                   subscriber_factory, tmp_path):
    cfg, _, _ = two_buses(tmp_path, broker.port, modbus_sim)
    sub = subscriber_factory(broker.port, PREFIX + '/#')
    gw = gateway(cfg).start()
    wait_until(lambda: sub.readings(PREFIX), 15, what='a first reading')
    good = gw.path.read_text()

    # A broken file: the errors, each with its position, and nothing changes.
    gw.path.write_text(good.replace('"interval": "1s"', '"interval": "1x"', 1))
    gw.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: events(sub, 'config_rejected'), 15, what='a config_rejected event')
    bad = events(sub, 'config_rejected')[0]
    assert bad['file'] == str(gw.path) and bad['errors'], bad
    assert any(e.startswith('%s:' % gw.path) and 'interval' in e for e in bad['errors']), bad

    # A key only a restart can change: refused by name, with both values.
    moved = json.loads(good)
    moved['store']['path'] = str(tmp_path / 'elsewhere')
    moved['buses'][0]['meters'].pop()
    gw.path.write_text(json.dumps(moved))
    gw.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: len(events(sub, 'config_rejected')) == 2, 15,
               what='a second config_rejected event')
    refused = events(sub, 'config_rejected')[1]
    assert 'restart' in refused['reason'], refused
    assert any(e.startswith('store.path: changed from') for e in refused['errors']), refused
    # The meter that file would have removed is still read.
    n = len([r for r in sub.readings(PREFIX) if r['meter'] == 'm-2'])
    wait_until(lambda: len([r for r in sub.readings(PREFIX) if r['meter'] == 'm-2']) > n + 2,
               15, what='m-2 read on')

    # A good file with live keys only: taken, and the event names them.
    live = json.loads(good)
    live['health'] = {'interval': '2s', 'offline_after': 5}
    gw.path.write_text(json.dumps(live))
    gw.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: events(sub, 'config_reloaded'), 15, what='a config_reloaded event')
    changes = events(sub, 'config_reloaded')[0]['changes']
    assert sorted(changes['keys']) == ['health.interval', 'health.offline_after'], changes
    assert changes['buses'] == {} and changes['meters'] == {}, changes
    assert not (tmp_path / 'elsewhere').exists()
    assert gw.stop() == 0
    check_complete(sub.snapshot())


def test_reload_during_a_broker_outage_loses_nothing(broker, proxy_factory, modbus_sim,
                                                     gateway, subscriber_factory, tmp_path):
    proxy = proxy_factory(broker.port)
    cfg, _, _ = two_buses(tmp_path, proxy.port, modbus_sim)
    sub = subscriber_factory(broker.port, PREFIX + '/#')
    gw = gateway(cfg).start()
    wait_until(lambda: sub.readings(PREFIX), 15, what='readings through the proxy')

    proxy.kill()
    time.sleep(2)  # readings pile up in the store
    # mqtt settings change (a reconnect) and a meter moves to the other bus.
    cfg['mqtt']['keepalive'] = 20
    cfg['buses'][1]['meters'].append(cfg['buses'][0]['meters'].pop())
    gw.path.write_text(json.dumps(cfg, indent=2))
    gw.proc.send_signal(signal.SIGHUP)
    time.sleep(2)
    down_until = time.time()
    proxy.start()
    wait_until(lambda: events(sub, 'config_reloaded'), 30, what='the config_reloaded event')
    changes = events(sub, 'config_reloaded')[0]['changes']
    assert changes['keys'] == ['mqtt.keepalive'], changes
    assert sorted(changes['buses']['restarted']) == ['rs485-1', 'rs485-2'], changes
    wait_until(lambda: any(epoch(r['read_at']) > down_until + 1 for r in sub.readings(PREFIX)),
               30, what='a reading taken after the outage')
    assert gw.stop() == 0
    got = sub.readings(PREFIX)
    # Every boundary of the outage was read and delivered, for each meter it kept.
    start, end = min(boundaries(got, 'm-1')), down_until
    for meter in ('m-1', 'm-2', 'm-11'):
        assert_every_boundary(got, meter, start, end)
    check_complete(sub.snapshot())
