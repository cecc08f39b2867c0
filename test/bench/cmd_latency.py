#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Remote command latency: publish -> `succeeded`, against what the bus needs.

The real daemon, a real mosquitto and the DL/T 645 simulator on a pty bus
(the integration tests' own peers, from test/integration/conftest.py), with
32 meters. N trip/restore pairs are sent one command at a time, first on an
idle bus (a 1 h schedule: nothing else to read), then on a busy one (every
meter read every second, 7 frames each, the bus never rests).

For each command the bus time it needs is computed from the simulator's
frame log: every frame to and from that meter between the publish and the
result (the control frame, its answer, the read-backs), at
bytes x 11 bits / baud, plus one turnaround per exchange. It prints, for
both buses, latency median / p90 / max, the bus time, the ratio of the two,
and the busy bus's latency against the idle bus's (the baseline measured in
the same run). The ratios, not the milliseconds, are what to compare: a pty
carries bytes at once, whatever the configured baud.

    test/bench/cmd_latency.py [--pairs N] [--baud 2400] [--turnaround-ms 20]
                              [--settle 300ms]

Not run in CI; it prints figures and asserts nothing about time. Needs a
daemon with command support (build first; MH_BUILD_DIR picks another build).
"""

import argparse
import os
import pathlib
import statistics
import sys
import tempfile
import time

import paho.mqtt.client as mqtt

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / 'integration'))

import cmdsign  # noqa: E402  (the head-end's signer, written from the contract)
import conftest  # noqa: E402  (the integration tests' real peers)
from faults import TimedSubscriber  # noqa: E402

PREFIX = 'meterhub/gw-bench'
CLIENT_ID = 'meterhub-gw-bench'
METERS = 32
KEY = os.urandom(32)
CONTROL = {'password_level': 2, 'password': '000000', 'operator': '00000000', 'close': 'direct'}
POINTS = [{'di': d} for d in ('0001FF00', '00020000', '02010100', '02020100', '02030000',
                              '02060000', '02800002')]


def addr(i):
    return '%012d' % i


def percentile(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(p / 100 * (len(s) - 1)))))]


def summary(values):
    return statistics.median(values), percentile(values, 90), max(values)


def subscribed(broker):
    return any(e == 'subscribe' and t == PREFIX + '/cmd'
               for e, t in broker.client_events(CLIENT_ID))


def run(scenario, args, interval):
    """One gateway; returns [(action, latency s, bus time s, frames)]."""
    tmp = pathlib.Path(tempfile.mkdtemp(prefix='mh-cmdlat-%s-' % scenario))
    procs = conftest.Processes(tmp)
    try:
        broker = conftest.Broker(procs, tmp)
        sim = conftest.Dlt645Sim(procs, tmp, 'b645', {
            'bus': {'turnaround_ms': args.turnaround_ms},
            'meters': [{'address': addr(i)} for i in range(1, METERS + 1)]})
        key_file = cmdsign.write_key_file(tmp / 'cmd.key', KEY)
        cfg = conftest.gateway_config(tmp, broker.port, [{
            'name': 'rs485-645', 'device': sim.gateway_end, 'baud': args.baud, 'parity': 'even',
            'protocol': 'dlt645', 'timeout': '300ms',
            'meters': [{'id': 'm-%d' % i, 'address': addr(i), 'profile': 'ctl'}
                       for i in range(1, METERS + 1)]}],
            interval=interval, gw_id='gw-bench',
            profiles={'ctl': {'points': POINTS, 'control': CONTROL}},
            commands={'hmac_key_file': str(key_file), 'max_attempts': 3,
                      'retry_backoff': '1s', 'max_skew': '300s', 'settle': args.settle,
                      'confirm_within': '5s'})
        cfg['mqtt'].update(client_id=CLIENT_ID, topic_prefix=PREFIX)
        sub = TimedSubscriber(broker.port, PREFIX + '/cmd/result', 'bench-results')
        pub = mqtt.Client(client_id='bench-headend')
        pub.connect('127.0.0.1', broker.port, 30)
        pub.loop_start()
        gw = conftest.Gateway(procs, tmp, cfg).start()
        conftest.wait_until(lambda: subscribed(broker), 30, what='the daemon to subscribe')
        if scenario == 'busy':
            reads = lambda: sum(1 for f in sim.frames()  # noqa: E731
                                if f.get('dir') == 'rx' and f.get('c') == 0x11)
            conftest.wait_until(lambda: reads() >= METERS * len(POINTS), 60,
                                what='a first sweep of the busy bus')
        out = []
        n = 0
        for pair in range(args.pairs):
            meter = 1 + pair % METERS
            for action in ('trip', 'restore'):
                n += 1
                cid = 'b-%s-%d' % (scenario, n)
                cmd = cmdsign.command(KEY, cid, 'm-%d' % meter, action)
                t_pub = time.time()
                pub.publish(PREFIX + '/cmd', cmdsign.encode(cmd), qos=1).wait_for_publish(10)

                def done():
                    for t, _, p, _ in sub.timed():
                        if isinstance(p, dict) and p.get('id') == cid and \
                                p.get('state') in ('succeeded', 'failed', 'rejected', 'expired'):
                            return t, p
                    return None
                t_done, res = conftest.wait_until(done, 60, what='the result of %s' % cid)
                if res['state'] != 'succeeded':
                    sys.exit('%s %s: %s' % (scenario, cid, res))
                frames = [f for f in sim.frames() if t_pub <= f['t'] <= t_done
                          and f.get('addr') == addr(meter) and f.get('dir') in ('rx', 'tx')
                          and f.get('c') is not None and f.get('di') not in
                          {p['di'] for p in POINTS}]
                nbytes = sum(len(f['hex']) // 2 for f in frames)
                exchanges = sum(1 for f in frames if f['dir'] == 'rx')
                bus = nbytes * 11 / args.baud + exchanges * args.turnaround_ms / 1000
                out.append((action, t_done - t_pub, bus, len(frames)))
        gw.stop()
        sub.close()
        pub.loop_stop()
        pub.disconnect()
        return out
    finally:
        procs.cleanup()


def report(name, rows, settle_s, baseline=None):
    lat = [r[1] for r in rows]
    bus = [r[2] for r in rows]
    ratio = [r[1] / r[2] for r in rows if r[2] > 0]
    floor = [r[1] / (r[2] + settle_s) for r in rows]
    frames = [r[3] for r in rows]
    print('%-5s %3d commands  latency ms median %6.0f  p90 %6.0f  max %6.0f' %
          ((name, len(rows)) + tuple(x * 1000 for x in summary(lat))))
    print('      bus time ms (frames x 11 bit / baud + turnaround) median %6.0f  p90 %6.0f  '
          'max %6.0f; frames a command: median %d' %
          (tuple(x * 1000 for x in summary(bus)) + (statistics.median(frames),)))
    print('      latency / bus time        median %6.2f  p90 %6.2f  max %6.2f' % summary(ratio))
    print('      latency / (bus + settle)  median %6.2f  p90 %6.2f  max %6.2f   '
          '(one settle before the first read-back is the contract)' % summary(floor))
    if baseline:
        base = statistics.median(r[1] for r in baseline)
        print('      latency / idle latency    median %6.2f  p90 %6.2f  max %6.2f' %
              tuple(x / base for x in summary(lat)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--pairs', type=int, default=10, help='trip/restore pairs per bus')
    ap.add_argument('--baud', type=int, default=2400)
    ap.add_argument('--turnaround-ms', type=float, default=20,
                    help="the simulated meters' reply delay, also counted in the bus time")
    ap.add_argument('--settle', default='300ms', help='commands.settle of the daemon')
    args = ap.parse_args()
    os.environ['TZ'] = 'Asia/Shanghai'  # the meters' clocks keep the gateway's local time
    idle = run('idle', args, '1h')
    busy = run('busy', args, '1s')
    print('settle %s, baud %d, turnaround %g ms, %d meters' %
          (args.settle, args.baud, args.turnaround_ms, METERS))
    settle_s = duration_s(args.settle)
    report('idle', idle, settle_s)
    report('busy', busy, settle_s, baseline=idle)


def duration_s(text):
    """'300ms' / '1s' / '2m' -> seconds."""
    for unit, scale in (('ms', 0.001), ('s', 1), ('m', 60), ('h', 3600)):
        if text.endswith(unit) and text[:-len(unit)].replace('.', '', 1).isdigit():
            return float(text[:-len(unit)]) * scale
    raise SystemExit('--settle: not a duration: %r' % text)


if __name__ == '__main__':
    os.environ.setdefault('MH_BUILD_DIR', str(HERE.parent.parent / 'build'))
    main()
