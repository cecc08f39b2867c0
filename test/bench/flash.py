#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Flash wear: bytes the daemon has the kernel write to disk per reading.

The real daemon, a real mosquitto and the Modbus simulator on pty buses (the
integration tests' own peers, from test/integration/conftest.py): METERS
meters of 3 points each, read every second, spread over BUSES buses. The
daemon runs twice, once with store.commit_window 0 (one synced commit per
loop turn, the baseline) and once with the default window, each for
--seconds after a warm-up. From /proc/PID/io it takes write_bytes (bytes the
process had the kernel write towards the disk: every page it dirtied in the
page cache, data file and meta page alike) over the measured span, and
divides by the readings stored in it (the seq of the records published,
taken in it, as published). It prints both figures and their ratio; the
ratio, not the bytes, is what to compare between machines. The filesystem's
own journal (jbd2 writes for ext4) is not counted: it is not the process's.

    test/bench/flash.py [--meters 32] [--buses 4] [--seconds 30] [--interval 1s]
                        [--window DURATION]

Not run in CI; it prints figures and asserts nothing. Build first
(MH_BUILD_DIR picks the build, default ./build).
"""

import argparse
import datetime
import os
import pathlib
import shutil
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / 'integration'))

import conftest  # noqa: E402  (the integration tests' real peers)

PREFIX = 'meterhub/gw-flash'
PROFILE = {'points': [
    {'name': 'energy_import_kwh', 'table': 'holding', 'address': 0, 'type': 'float32'},
    {'name': 'voltage_a_v', 'table': 'holding', 'address': 2, 'type': 'u16', 'scale': 0.1},
    {'name': 'power_kw', 'table': 'holding', 'address': 3, 'type': 'float32'}]}


def slave(i):
    return {'typed': [conftest.typed('holding', 0, 'float32', 1000.0 + i),
                      conftest.typed('holding', 2, 'u16', 2301),
                      conftest.typed('holding', 3, 'float32', 1.5)]}


def write_bytes(pid):
    with open('/proc/%d/io' % pid) as f:
        for line in f:
            if line.startswith('write_bytes:'):
                return int(line.split()[1])
    raise SystemExit('no write_bytes in /proc/%d/io (a kernel without task I/O accounting?)'
                     % pid)


def run(name, args, window):
    """One daemon; returns (bytes written, readings stored, seconds measured)."""
    tmp = pathlib.Path(tempfile.mkdtemp(prefix='mh-flash-%s-' % name))
    procs = conftest.Processes(tmp)
    try:
        broker = conftest.Broker(procs, tmp)
        per_bus = (args.meters + args.buses - 1) // args.buses
        buses = []
        n = 0
        for b in range(args.buses):
            ids = list(range(n + 1, min(n + per_bus, args.meters) + 1))
            n += len(ids)
            if not ids:
                break
            sim = conftest.ModbusSim(procs, tmp, 'bus%d' % b,
                                     {str(i - ids[0] + 1): slave(i) for i in ids})
            buses.append({'name': 'rs485-%d' % (b + 1), 'device': sim.gateway_end,
                          'protocol': 'modbus', 'baud': 115200, 'timeout': '200ms',
                          'meters': [{'id': 'm-%d' % i, 'address': i - ids[0] + 1,
                                      'profile': 'p'} for i in ids]})
        cfg = conftest.gateway_config(tmp, broker.port, buses, interval=args.interval,
                                      gw_id='gw-flash', profiles={'p': PROFILE})
        cfg['mqtt'].update(topic_prefix=PREFIX)
        if window is not None:
            cfg['store']['commit_window'] = window
        sub = conftest.Subscriber(broker.port, PREFIX + '/reading/#', 'flash-sub')
        gw = conftest.Gateway(procs, tmp, cfg).start()
        # Warm up: the store created, its first pages written, every meter read.
        conftest.wait_until(lambda: len(sub.snapshot()) >= 3 * args.meters, 60,
                            what='three sweeps of readings')
        time.sleep(1)
        start, w0, t0 = write_bytes(gw.proc.pid), time.time(), time.monotonic()
        time.sleep(args.seconds)
        end, w1, t1 = write_bytes(gw.proc.pid), time.time(), time.monotonic()
        if gw.proc.poll() is not None:
            raise SystemExit('the daemon exited: %s' % gw.log()[-2000:])
        # The readings taken in the span, once the last of them is published.
        time.sleep(2)
        stored = {p['seq'] for _, p, _ in sub.snapshot() if w0 <= read_at(p) < w1}
        gw.stop()
        sub.close()
        return end - start, len(stored), t1 - t0
    finally:
        procs.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def read_at(reading):
    return datetime.datetime.fromisoformat(
        reading['read_at'].replace('Z', '+00:00')).timestamp()


def report(name, bytes_, readings, seconds):
    per = bytes_ / readings if readings else float('nan')
    print('  %-22s %9d bytes written, %5d readings in %.1f s: %8.0f bytes/reading, '
          '%6.1f KiB/s' % (name, bytes_, readings, seconds, per, bytes_ / seconds / 1024))
    return per


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--meters', type=int, default=32)
    ap.add_argument('--buses', type=int, default=4)
    ap.add_argument('--seconds', type=float, default=30)
    ap.add_argument('--interval', default='1s', help='schedule.interval')
    ap.add_argument('--window', default=None,
                    help='store.commit_window of the second run (default: the default)')
    args = ap.parse_args()
    os.environ['TZ'] = 'Asia/Shanghai'
    base = run('window0', args, '0ms')
    grouped = run('window', args, args.window)
    print('flash: %d meters x 3 points every %s on %d buses, %g s measured' %
          (args.meters, args.interval, args.buses, args.seconds))
    b = report('commit_window 0', *base)
    g = report('commit_window %s' % (args.window or 'default'), *grouped)
    print('  ratio window 0 / window: %.1f' % (b / g))


if __name__ == '__main__':
    os.environ.setdefault('MH_BUILD_DIR', str(HERE.parent.parent / 'build'))
    main()
