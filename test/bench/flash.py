#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Flash wear: bytes the daemon writes to disk per reading.

The real daemon, a real mosquitto and the Modbus simulator on pty buses (the
integration tests' own peers, from test/integration/conftest.py): METERS
meters of 3 points each (energy_import_kwh among them, so interval records
and interval state are written too) spread over BUSES buses, read every
INTERVAL. The daemon runs twice, first with store.commit_window 0 (one
synced commit per loop turn: the baseline) and then with the default window
(or --window), each measured for --seconds after one sweep of warm-up.

Two figures per run, each divided by the readings taken in the measured span
(counted by read_at from what the broker delivered):

  write_bytes  from /proc/PID/io: every page-cache page the daemon dirtied.
               This is what iotop and the issue's measurement show. Kernels
               with large page-cache folios (ext4 on Linux 6.16 and later)
               count a folio dirtied by one 4 KiB write as written whole,
               while ext4 writes back only the dirty blocks: there it is an
               upper bound.
  store pages  the bytes the daemon handed the kernel for data.mdb (pwrite
               and writev, traced with strace; the 120-byte meta page write
               counted as a page): what reaches the flash on any kernel,
               the filesystem's own journal aside. Skipped without strace
               or with --no-strace.

A pty carries bytes at once whatever the baud, so a simulated bus is far
faster than an RS485 line and a sweep ends sooner than in the field; give
the simulated meters a reply delay (--reply-delay-ms 40 is about a 9600 baud
exchange of 3 registers with a 10 ms turnaround) to see the window, not the
end of the sweep, decide the commits.

    test/bench/flash.py [--meters 32] [--buses 4] [--interval 1s] [--seconds 30]
                        [--reply-delay-ms 0] [--window DURATION] [--base-window 0ms]
                        [--no-strace]

256 meters every 15 minutes: a sweep costs the same whatever the interval
(nothing is written between sweeps), so --meters 256 --interval 1m
--seconds 120 measures it in two sweeps.

Not run in CI; it prints figures and asserts nothing. Build first
(MH_BUILD_DIR picks the build, default ./build).
"""

import argparse
import datetime
import os
import pathlib
import re
import shutil
import signal
import subprocess
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


def slave(i, delay_ms):
    s = {'typed': [conftest.typed('holding', 0, 'float32', 1000.0 + i),
                   conftest.typed('holding', 2, 'u16', 2301),
                   conftest.typed('holding', 3, 'float32', 1.5)]}
    if delay_ms:
        s['fault'] = {'kind': 'late', 'delay_ms': delay_ms}
    return s


def write_bytes(pid):
    with open('/proc/%d/io' % pid) as f:
        for line in f:
            if line.startswith('write_bytes:'):
                return int(line.split()[1])
    raise SystemExit('no write_bytes in /proc/%d/io (a kernel without task I/O accounting?)'
                     % pid)


def store_fds(pid, store):
    """The daemon's descriptors on @store/data.mdb (LMDB has two: one O_DSYNC for the meta page)."""
    fds = set()
    for fd in os.listdir('/proc/%d/fd' % pid):
        try:
            if os.readlink('/proc/%d/fd/%s' % (pid, fd)) == str(store / 'data.mdb'):
                fds.add(int(fd))
        except OSError:
            pass
    return fds


def traced_bytes(trace, fds):
    """Bytes of the pwrite64/writev calls on @fds in strace's output, a short one as a page."""
    total = 0
    unfinished = {}  # a call another thread's interrupted: pid -> its fd
    for line in trace.read_text(errors='replace').splitlines():
        m = re.match(r'^(\d+) +(?:(pwrite64|writev)\((\d+),|<\.\.\. (pwrite64|writev) resumed>)'
                     r'.*?(?:= (\d+)|<unfinished \.\.\.>)$', line)
        if not m:
            continue
        pid, fd, done = m.group(1), m.group(3), m.group(5)
        if fd is None:
            fd = unfinished.pop(pid, None)
        elif done is None:
            unfinished[pid] = fd
            continue
        if fd is not None and done is not None and int(fd) in fds:
            total += max(int(done), 4096)
    return total


def read_at(reading):
    return datetime.datetime.fromisoformat(
        reading['read_at'].replace('Z', '+00:00')).timestamp()


def run(name, args, window):
    """One daemon; returns (write_bytes, store page bytes or None, readings, seconds)."""
    tmp = pathlib.Path(tempfile.mkdtemp(prefix='mh-flash-%s-' % name))
    procs = conftest.Processes(tmp)
    tracer = None
    try:
        broker = conftest.Broker(procs, tmp)
        per_bus = (args.meters + args.buses - 1) // args.buses
        buses = []
        for b, first in enumerate(range(1, args.meters + 1, per_bus)):
            ids = list(range(first, min(first + per_bus, args.meters + 1)))
            sim = conftest.ModbusSim(procs, tmp, 'bus%d' % b,
                                     {str(i - first + 1): slave(i, args.reply_delay_ms)
                                      for i in ids})
            buses.append({'name': 'rs485-%d' % (b + 1), 'device': sim.gateway_end,
                          'protocol': 'modbus', 'baud': 9600, 'timeout': '500ms',
                          'meters': [{'id': 'm-%d' % i, 'address': i - first + 1,
                                      'profile': 'p'} for i in ids]})
        cfg = conftest.gateway_config(tmp, broker.port, buses, interval=args.interval,
                                      gw_id='gw-flash', profiles={'p': PROFILE})
        cfg['mqtt'].update(topic_prefix=PREFIX)
        if window is not None:
            cfg['store']['commit_window'] = window
        store = pathlib.Path(cfg['store']['path'])
        sub = conftest.Subscriber(broker.port, PREFIX + '/reading/#', 'flash-sub')
        gw = conftest.Gateway(procs, tmp, cfg).start()
        # Warm up: the store created and a sweep of every meter stored.
        conftest.wait_until(lambda: len(sub.snapshot()) >= args.meters, 30 + 2 * args.period,
                            what='a sweep of readings')
        time.sleep(1)
        if args.strace:
            trace = tmp / 'strace.txt'
            tracer = subprocess.Popen(['strace', '-f', '-qq', '-e', 'trace=pwrite64,writev',
                                       '-o', str(trace), '-p', str(gw.proc.pid)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)  # attached to every thread
        start, w0, t0 = write_bytes(gw.proc.pid), time.time(), time.monotonic()
        time.sleep(args.seconds)
        end, w1, t1 = write_bytes(gw.proc.pid), time.time(), time.monotonic()
        pages = None
        if tracer:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(10)
            pages = traced_bytes(trace, store_fds(gw.proc.pid, store))
        if gw.proc.poll() is not None:
            raise SystemExit('the daemon exited: %s' % gw.log()[-2000:])
        # The readings taken in the span, once the last of them is published.
        time.sleep(2)
        readings = {p['seq'] for _, p, _ in sub.snapshot() if w0 <= read_at(p) < w1}
        gw.stop()
        sub.close()
        return end - start, pages, len(readings), t1 - t0
    finally:
        if tracer and tracer.poll() is None:
            tracer.kill()
            tracer.wait()
        procs.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def report(name, wbytes, pages, readings, seconds):
    """Print one run; returns (write_bytes, store pages) per reading."""
    if not readings:
        raise SystemExit('%s: no reading taken in the measured span' % name)
    wb = wbytes / readings
    pg = pages / readings if pages is not None else None
    print('  %-22s %6d readings in %.0f s   write_bytes %8.0f B/reading   store pages %s'
          % (name, readings, seconds, wb, '%8.0f B/reading' % pg if pg is not None else 'n/a'))
    return wb, pg


def period_s(text):
    for unit, scale in (('ms', 0.001), ('s', 1), ('m', 60), ('h', 3600)):
        if text.endswith(unit) and text[:-len(unit)].isdigit():
            return int(text[:-len(unit)]) * scale
    raise SystemExit('--interval: not a duration: %r' % text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--meters', type=int, default=32)
    ap.add_argument('--buses', type=int, default=4)
    ap.add_argument('--interval', default='1s', help='schedule.interval')
    ap.add_argument('--seconds', type=float, default=30, help='measured span of each run')
    ap.add_argument('--reply-delay-ms', type=int, default=0,
                    help="the simulated meters' reply delay (0: at once)")
    ap.add_argument('--window', default=None,
                    help='store.commit_window of the second run (default: the default)')
    ap.add_argument('--base-window', default='0ms',
                    help="store.commit_window of the baseline run; 'none' leaves the key "
                    'out, for a build from before it existed')
    ap.add_argument('--no-strace', dest='strace', action='store_false',
                    help='skip the store pages figure')
    args = ap.parse_args()
    args.period = period_s(args.interval)
    if args.strace and not shutil.which('strace'):
        print('strace not found: the store pages figure is skipped')
        args.strace = False
    os.environ['TZ'] = 'Asia/Shanghai'
    base = run('window0', args, None if args.base_window == 'none' else args.base_window)
    grouped = run('window', args, args.window)
    print('flash: %d meters x 3 points every %s on %d buses, reply delay %d ms, %g s measured'
          % (args.meters, args.interval, args.buses, args.reply_delay_ms, args.seconds))
    b = report('commit_window %s' % args.base_window, *base)
    g = report('commit_window %s' % (args.window or 'default'), *grouped)
    print('  ratio baseline / window: write_bytes %.1f%s' %
          (b[0] / g[0], ', store pages %.1f' % (b[1] / g[1]) if b[1] and g[1] else ''))


if __name__ == '__main__':
    os.environ.setdefault('MH_BUILD_DIR', str(HERE.parent.parent / 'build'))
    main()
