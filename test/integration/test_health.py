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


def test_overloaded_bus_takes_turns_and_says_so(broker, modbus_sim, gateway,
                                                subscriber_factory, tmp_path):
    """32 meters that take 10 ms each to answer, every 200 ms: the bus needs
    about 0.5 s a sweep. Every meter is read equally often, no reading is
    labelled with a boundary more than one interval before it was made, the
    log says it once per boundary, and health shows the sweep against the
    interval."""
    n, interval = 32, 0.2
    sim = modbus_sim('bus1', {str(i): dict(slave(), fault={'kind': 'late', 'delay_ms': 10})
                              for i in range(1, n + 1)})
    cfg = gateway_config(tmp_path, broker.port, [{
        'name': 'rs485-1', 'device': sim.gateway_end, 'protocol': 'modbus', 'timeout': '200ms',
        'meters': [{'id': 'm-%d' % i, 'address': i, 'profile': 'p'} for i in range(1, n + 1)]}],
        interval='200ms', profiles={'p': PROFILE}, health={'interval': '1s'})
    sub = subscriber_factory(broker.port, PREFIX + '/#')
    gw = gateway(cfg).start()
    wait_until(lambda: len(sub.readings(PREFIX)) > 40 * n, 60, what='40 sweeps of readings')
    assert gw.stop() == 0

    got = sub.readings(PREFIX)
    # Sub-second boundaries carry milliseconds; each a multiple of the interval.
    assert all(r['ts'].endswith('Z') and len(r['ts']) == 24 for r in got), got[0]['ts']
    assert all(round(epoch(r['ts']) * 1000) % 200 == 0 for r in got)
    # After the first sweep: reads per meter within one of each other.
    start = min(epoch(r['read_at']) for r in got) + 2
    end = max(epoch(r['read_at']) for r in got)
    counts = {}
    for r in got:
        if start <= epoch(r['read_at']) <= end - 1:
            counts[r['meter']] = counts.get(r['meter'], 0) + 1
    assert len(counts) == n, counts
    assert max(counts.values()) / min(counts.values()) <= 1.1, sorted(counts.values())
    assert min(counts.values()) >= 15, counts
    ages = [epoch(r['read_at']) - epoch(r['ts']) for r in got]
    assert 0 <= min(ages) and max(ages) < interval + 0.0015, max(ages)
    # Saturation: once per boundary in the log, whatever the number of meters; and in health.
    warned = [line for line in gw.log().splitlines() if 'not reached since the last boundary' in line]
    boundaries = {r['ts'] for r in got}
    assert 0 < len(warned) <= len(boundaries), (len(warned), len(boundaries))
    bus = [h for _, h, _ in sub.snapshot(PREFIX + '/health')][-1]['buses'][0]
    assert bus['interval_ms'] == 200 and bus['sweep_ms'] > 300, bus
    assert bus['skipped'] > 0, bus
