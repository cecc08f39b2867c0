# SPDX-License-Identifier: MIT
"""The health report (README "Health") counts what really happened on the
lines: its numbers are checked against what the simulators themselves
logged, frame by frame, on a Modbus and a DL/T 645 bus with a silent meter
and one whose replies fail their checksum."""

import datetime

from conftest import gateway_config, wait_until
from test_store_forward import PROFILE, slave

PREFIX = 'meterhub/gw-test'
INTERVAL_S = 3


def epoch(ts):
    return datetime.datetime.fromisoformat(ts.replace('Z', '+00:00')).timestamp()


def test_health_numbers_match_what_the_simulators_counted(broker, modbus_sim, dlt645_sim,
                                                          gateway, subscriber_factory,
                                                          tmp_path):
    mb = modbus_sim('bmb', {'1': slave(), '2': slave(), '3': dict(slave(), fault={'kind': 'silent'})})
    dl = dlt645_sim('b645', {'meters': [
        {'address': '000000000001'},
        {'address': '000000000002', 'fault': {'silence': True}},
        {'address': '000000000003', 'fault': {'bad_checksum': True}}]})
    cfg = gateway_config(tmp_path, broker.port, [
        {'name': 'mb', 'device': mb.gateway_end, 'protocol': 'modbus', 'timeout': '100ms',
         'meters': [{'id': 'm-%d' % i, 'address': i, 'profile': 'p'} for i in (1, 2, 3)]},
        {'name': 'dl', 'device': dl.gateway_end, 'baud': 2400, 'parity': 'even',
         'protocol': 'dlt645', 'timeout': '150ms',
         'meters': [{'id': 'd-%d' % i, 'address': '%012d' % i, 'profile': 'e'}
                    for i in (1, 2, 3)]}],
        interval='%ds' % INTERVAL_S, profiles={'p': PROFILE, 'e': {'points': [{'di': '00010000'}]}},
        health={'interval': '1s', 'offline_after': 2})
    sub = subscriber_factory(broker.port, PREFIX + '/health')
    gw = gateway(cfg).start()

    def quiet_reports():
        """Reports made while both lines were idle: everything before them is
        counted by the gateway and logged by the simulators, nothing after."""
        times = [r['t'] for r in mb.requests()] + [f['t'] for f in dl.frames()]
        out = []
        for _, h, _ in sub.snapshot(PREFIX + '/health'):
            if 'ts' not in h or not all(b['total_reads'] for b in h['buses']):
                continue
            t = epoch(h['ts'])  # the report was made in [t, t + 1)
            if not any(t - 0.3 < x < t + 1.3 for x in times) and max(times) > t + 1.3:
                out.append((t, h))
        return out
    wait_until(lambda: len({int(t) // INTERVAL_S for t, h in quiet_reports()}) >= 3, 40,
               what='quiet health reports in three intervals')
    assert gw.stop() == 0
    t, h = quiet_reports()[-1]
    buses = {b['name']: b for b in h['buses']}

    # Modbus: every request the meters saw is a frame; the silent one's are the timeouts.
    reqs = [r for r in mb.requests() if r['t'] < t]
    sweeps = len({int(r['t']) // INTERVAL_S for r in reqs})
    assert sweeps >= 3
    b = buses['mb']
    assert b['link']['frames'] == len(reqs), (b, len(reqs))
    assert b['link']['timeouts'] == sum(1 for r in reqs if not r['answered']) > 0, b
    assert b['link']['checksum_errors'] == 0 and b['link']['exceptions'] == 0, b
    assert (b['total_reads'], b['total_good']) == (3 * sweeps, 2 * sweeps), (b, sweeps)
    assert b['read_success_rate_today'] == 2 / 3, b
    assert (b['meters_online'], b['meters_offline']) == (2, 1), b

    # DL/T 645: the frames the meters received, their silences and bad checksums.
    rx = [f for f in dl.frames() if f['dir'] == 'rx' and f['t'] < t]
    tx = [f for f in dl.frames() if f['dir'] == 'tx' and f['t'] < t]
    sweeps = len({int(f['t']) // INTERVAL_S for f in rx})
    b = buses['dl']
    assert b['link']['frames'] == len(rx), (b, len(rx))
    assert b['link']['timeouts'] == sum(1 for f in tx if f['hex'] == '') > 0, b
    assert b['link']['checksum_errors'] == sum(
        1 for f in tx if 'bad_checksum' in (f.get('fault') or '')) > 0, b
    assert (b['total_reads'], b['total_good']) == (3 * sweeps, sweeps), (b, sweeps)
    assert b['read_success_rate_today'] == 1 / 3, b
    assert (b['meters_online'], b['meters_offline']) == (1, 2), b
    assert epoch(b['last_good_reading']) < t + 1
