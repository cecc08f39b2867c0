# SPDX-License-Identifier: MIT
"""Events an operator acts on, published through the store like every record:
gateway_started says how the last run ended (a power cut is visible at the
head-end), broker_lost / broker_back say how long the link was down and what
waited meanwhile. (Port events are in test_robustness.py, with the replugged
adapter; config_reloaded / config_rejected in test_reload.py; relay_changed in
test_commands.py.)"""

import signal
import time

from conftest import check_complete, wait_until
from test_store_forward import simulated_bus, slave

PREFIX = 'meterhub/gw-test'


def events(sub, type_):
    """Every event of @type_, once per seq, in seq order."""
    got = {p['seq']: p for _, p, _ in sub.snapshot(PREFIX + '/event')
           if isinstance(p, dict) and p.get('type') == type_}
    return [got[s] for s in sorted(got)]


def test_gateway_started_says_how_the_last_run_ended(broker, modbus_sim, gateway,
                                                     subscriber_factory, tmp_path):
    cfg, _ = simulated_bus(tmp_path, broker.port, modbus_sim, n_meters=1)
    sub = subscriber_factory(broker.port, PREFIX + '/#')
    gw = gateway(cfg)

    def run_and_stop(expected, how):
        before = len(events(sub, 'gateway_started'))
        gw.start()
        wait_until(lambda: len(events(sub, 'gateway_started')) > before, 15,
                   what='a gateway_started event saying %s' % expected)
        ev = events(sub, 'gateway_started')[-1]
        assert ev['last_stop'] == expected, ev
        assert ev['version'] and ev['ts'], ev
        if how == 'kill':
            gw.proc.kill()
            gw.proc.wait(10)
        else:
            assert gw.stop() == 0

    run_and_stop('new_store', 'term')
    run_and_stop('clean', 'kill')       # SIGKILL: a power cut, as far as the store knows
    run_and_stop('unclean', 'term')
    run_and_stop('clean', 'term')
    check_complete(sub.snapshot())


def test_broker_lost_and_back_with_outage_and_backlog(broker, proxy_factory, modbus_sim,
                                                      gateway, subscriber_factory, tmp_path):
    proxy = proxy_factory(broker.port)
    cfg, _ = simulated_bus(tmp_path, proxy.port, modbus_sim, n_meters=2)
    sub = subscriber_factory(broker.port, PREFIX + '/#')
    gw = gateway(cfg).start()
    wait_until(lambda: sub.readings(PREFIX), 15, what='readings through the proxy')

    proxy.kill()
    down = time.time()
    time.sleep(3)  # the outage: readings pile up in the store
    proxy.start()
    up = time.time()
    wait_until(lambda: events(sub, 'broker_back'), 30, what='a broker_back event')
    lost, back = events(sub, 'broker_lost'), events(sub, 'broker_back')
    assert len(lost) == 1 and len(back) == 1, (lost, back)
    assert lost[0]['seq'] < back[0]['seq'], (lost, back)
    # Both were stored while the link was down or just back, like any record.
    assert up - down - 1 < back[0]['outage_s'] < time.time() - down + 1, back
    assert back[0]['backlog'] >= 2, back  # the readings of the outage waited for it
    assert isinstance(lost[0]['backlog'], (int, float)), lost
    assert gw.stop(signal.SIGTERM) == 0
    check_complete(sub.snapshot())


def test_meter_offline_and_back(broker, modbus_sim, gateway, subscriber_factory, tmp_path):
    cfg, sim = simulated_bus(tmp_path, broker.port, modbus_sim, n_meters=2,
                             health={'interval': '1s', 'offline_after': 2})
    cfg['buses'][0]['timeout'] = '100ms'
    sub = subscriber_factory(broker.port, PREFIX + '/#')
    gw = gateway(cfg).start()
    wait_until(lambda: sub.readings(PREFIX), 15, what='a first reading')

    dead = slave()
    dead['fault'] = {'kind': 'silent'}
    sim.reload({'1': slave(), '2': dead})
    wait_until(lambda: events(sub, 'meter_offline'), 15, what='a meter_offline event')
    off = events(sub, 'meter_offline')
    assert len(off) == 1 and off[0]['meter'] == 'm-2', off
    assert off[0]['failed_boundaries'] == 2 and off[0]['quality'] == 'timeout', off

    def health_offline():
        h = [p for _, p, _ in sub.snapshot(PREFIX + '/health') if isinstance(p, dict)]
        return h and h[-1]['buses'][0]['meters_offline'] == 1
    wait_until(health_offline, 10, what='health counting the meter offline')

    sim.reload({'1': slave(), '2': slave()})
    wait_until(lambda: events(sub, 'meter_online'), 15, what='a meter_online event')
    on = events(sub, 'meter_online')
    assert len(on) == 1 and on[0]['meter'] == 'm-2', on
    assert on[0]['failed_boundaries'] >= 2 and on[0]['seq'] > off[0]['seq'], on
    assert not [e for e in events(sub, 'meter_offline') if e['meter'] == 'm-1']
    # The dead meter's failures after the first are not each a warning.
    warnings = [l for l in gw.log().splitlines() if 'warning' in l and 'meter m-2' in l]
    assert len(warnings) <= 2, warnings
    assert gw.stop() == 0
    check_complete(sub.snapshot())
