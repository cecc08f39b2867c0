#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A simulated day of 1-minute intervals, against the simulator's truth.

The real daemon reads one DL/T 645 meter (test/sim/dlt645_sim.py) every
second while the meter's energy accrues 60 times faster than its load, so
each 1 s interval carries one minute of energy and 1440 intervals are a
day. The meter falls silent for a while in the middle (a gap the tables
must bridge). At the end the published interval energies are added up and
compared with what the meter's registers grew by (from the simulator's own
log) and with the simulator's load integrated over the same span.

    test/bench/intervals_day.py [INTERVALS]     (default 1440; about 25 minutes)

Not run in CI: it prints its figures, it asserts nothing about time.
"""

import json
import os
import pathlib
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / 'integration'))

import conftest  # noqa: E402  (the integration tests' real peers)

ADDR = '000000000001'
LOAD_KW, SPEEDUP = 7.2, 60


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1440
    tmp = pathlib.Path(tempfile.mkdtemp(prefix='mh-day-'))
    procs = conftest.Processes(tmp)
    try:
        broker = conftest.Broker(procs, tmp)
        meter = {'address': ADDR, 'phases': 1, 'load_kw': LOAD_KW, 'speedup': SPEEDUP,
                 'import_kwh': 1000.0}
        sim = conftest.Dlt645Sim(procs, tmp, 'b645', {'meters': [meter]})
        cfg = conftest.gateway_config(tmp, broker.port, [{
            'name': 'rs485-645', 'device': sim.gateway_end, 'baud': 2400, 'parity': 'even',
            'protocol': 'dlt645', 'timeout': '300ms',
            'meters': [{'id': 'm-1', 'address': ADDR, 'profile': 'dlt645-single-phase'}]}],
            interval='1s')
        sub = conftest.Subscriber(broker.port, 'meterhub/gw-test/interval/#', 'day-sub')
        gw = conftest.Gateway(procs, tmp, cfg).start()
        started = time.monotonic()
        silenced = False
        while True:
            got = len({p['seq'] for _, p, _ in sub.snapshot()})
            if got >= n:
                break
            if not silenced and got >= n // 2:
                # An hour of the simulated day without an answer, in the middle.
                sim.reload({'meters': [dict(meter, fault={'silence': True})]})
                time.sleep(60 / SPEEDUP * 60)
                sim.reload({'meters': [meter]})
                silenced = True
            if time.monotonic() - started > n * 1.5 + 120:
                sys.exit('only %d intervals after %.0f s' % (got, time.monotonic() - started))
            time.sleep(1)
        gw.stop()
        sub.close()
        intervals = {}
        for _, p, _ in sub.snapshot():
            intervals.setdefault(p['seq'], p)
        intervals = [intervals[s] for s in sorted(intervals)]
        published = sum(i['energy_import_kwh'] for i in intervals)
        incomplete = [i for i in intervals if not i['complete']]
        # The simulator's own log: what its register said, and when.
        said = [json.loads(line) for line in sim.log.read_text().splitlines() if line]
        said = [f for f in said if f.get('dir') == 'tx' and (f.get('values') or {}).get(
            'energy_import_kwh') is not None]
        start = conftest_epoch(intervals[0]['start'])
        end = conftest_epoch(intervals[-1]['end'])
        first = next(f for f in said if f['t'] >= start - 0.5)
        last = [f for f in said if f['t'] <= end + 1.0][-1]
        registers = last['values']['energy_import_kwh'] - first['values']['energy_import_kwh']
        truth = LOAD_KW * SPEEDUP * (last['t'] - first['t']) / 3600
        print('intervals published:        %d (%d complete:false, spanning the silent hour)'
              % (len(intervals), len(incomplete)))
        print('simulated span:             %.1f h of energy in %.0f s' %
              ((end - start) * SPEEDUP / 3600, end - start))
        print('published total:            %.2f kWh' % published)
        print('meter registers grew by:    %.2f kWh   (difference %+.6f kWh)' %
              (registers, published - registers))
        print('simulator load x time:      %.2f kWh   (difference %+.3f kWh, %.4f %%)' %
              (truth, published - truth, 100 * (published - truth) / truth))
    finally:
        procs.cleanup()


def conftest_epoch(ts):
    import datetime
    return datetime.datetime.strptime(ts, '%Y-%m-%dT%H:%M:%SZ').replace(
        tzinfo=datetime.timezone.utc).timestamp()


if __name__ == '__main__':
    os.environ.setdefault('MH_BUILD_DIR', str(HERE.parent.parent / 'build'))
    main()
