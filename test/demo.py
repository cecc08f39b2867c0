#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The meterhub demo, without hardware: a mosquitto on loopback port 18830,
socat pty pairs standing in for the RS485 buses named in
config/examples/demo.yaml, simulated meters behind them whose energy
registers grow while the demo runs, the real daemon, and the MQTT stream
printed live until Ctrl-C. Run it through test/demo, which builds first.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'test', 'sim'))
from modbus_sim import encode_typed  # noqa: E402

RUN = '/tmp/meterhub-demo'
CONFIG = os.path.join(ROOT, 'config', 'examples', 'demo.yaml')
PORT = 18830
PYTHON = '/usr/bin/python3'

# Plausible values for a household feeder, per canonical point name.
BASE = {
    'voltage_a_v': 229.8, 'voltage_b_v': 231.2, 'voltage_c_v': 228.7,
    'current_a_a': 6.2, 'current_b_a': 4.9, 'current_c_a': 5.5,
    'power_kw': 3.6, 'power_factor': 0.97, 'frequency_hz': 50.01,
    'energy_import_kwh': 1520.0, 'energy_export_kwh': 12.5,
}


def load_profiles():
    """The built-in profiles, read from the same files the daemon embeds."""
    profiles = {}
    folder = os.path.join(ROOT, 'config', 'profiles')
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), encoding='utf-8') as f:
            profiles.update(yaml.safe_load(f)['profiles'])
    return profiles


def registers(profile, values):
    """Sparse register maps holding @values at the profile's addresses."""
    tables = {}
    for p in profile['points']:
        if p['name'] not in values:
            continue
        raw = values[p['name']] / p.get('scale', 1)
        if not p['type'].startswith('float'):
            raw = int(round(raw))
        words = encode_typed(p['type'], p.get('word_order', 'big'), raw)
        table = tables.setdefault(p['table'], {})
        for i, w in enumerate(words):
            table[str(int(str(p['address']), 0) + i)] = w
    return tables


def dlt645_sim_config(bus):
    """Meters that keep their own energy registers, growing 60x faster than real time."""
    meters = []
    for i, meter in enumerate(bus['meters']):
        meters.append({
            'address': meter['address'],
            'phases': 3 if meter['profile'].endswith('three-phase') else 1,
            'load_kw': 1.5 + i, 'speedup': 60,
            'import_kwh': {'t1': 100.0 + i, 't2': 800.0, 't3': 1200.0, 't4': 600.0},
        })
    return {'meters': meters}


def sim_config(bus, profiles, elapsed):
    slaves = {}
    for meter in bus['meters']:
        if meter['id'].endswith('05'):
            continue  # the demo's absent meter: never answers
        unit = int(meter['address'])
        # Each meter draws a little more than the one before it.
        values = {k: v * (1 + 0.1 * unit) if k.startswith(('current', 'power_kw', 'energy'))
                  else v for k, v in BASE.items()}
        # 3.6 kW for `elapsed` seconds, sped up 60x so the numbers visibly move.
        values['energy_import_kwh'] += values['power_kw'] * elapsed * 60 / 3600
        slaves[str(unit)] = registers(profiles[meter['profile']], values)
    return {'slaves': slaves}


def main():
    with open(CONFIG, encoding='utf-8') as f:
        cfg = yaml.safe_load(f)
    profiles = load_profiles()
    build = os.environ.get('MH_BUILD_DIR', os.path.join(ROOT, 'build'))
    shutil.rmtree(RUN, ignore_errors=True)
    os.makedirs(RUN)
    procs = []
    gateway = [None]

    def start(args, log, **kw):
        out = open(os.path.join(RUN, log), 'ab')
        # Own sessions: Ctrl-C reaches only this script, which stops them in order.
        p = subprocess.Popen(args, stdout=kw.pop('stdout', out), stderr=out,
                             stdin=subprocess.DEVNULL, start_new_session=True, **kw)
        procs.append(p)
        return p

    def cleanup(*_):
        # The daemon first, while the broker is still there for its offline status.
        order = [p for p in procs if p is gateway[0]] + \
            [p for p in reversed(procs) if p is not gateway[0]]
        for p in order:
            if p.poll() is None:
                p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        sys.exit(0)

    signal.signal(signal.SIGINT, cleanup)
    signal.signal(signal.SIGTERM, cleanup)

    with open(os.path.join(RUN, 'mosquitto.conf'), 'w') as f:
        f.write('listener %d 127.0.0.1\nallow_anonymous true\nuser root\n'
                'persistence false\nlog_dest file %s/mosquitto.log\n' % (PORT, RUN))
    start(['mosquitto', '-c', os.path.join(RUN, 'mosquitto.conf')], 'mosquitto.out')

    sims = []
    t0 = time.monotonic()
    for bus in cfg['buses']:
        meter_end = bus['device'] + '-meters'
        start(['socat', 'pty,raw,echo=0,link=%s' % bus['device'],
               'pty,raw,echo=0,link=%s' % meter_end], bus['name'] + '-socat.log')
        while not (os.path.exists(bus['device']) and os.path.exists(meter_end)):
            time.sleep(0.05)
        sim_json = os.path.join(RUN, bus['name'] + '-sim.json')
        if bus['protocol'] == 'dlt645':
            with open(sim_json, 'w') as f:
                json.dump(dlt645_sim_config(bus), f)
            sim = start([PYTHON, os.path.join(ROOT, 'test', 'sim', 'dlt645_sim.py'),
                         '--port', meter_end, '--config', sim_json],
                        bus['name'] + '-sim.log', stdout=subprocess.PIPE)
        else:
            with open(sim_json, 'w') as f:
                json.dump(sim_config(bus, profiles, 0), f)
            sim = start([PYTHON, os.path.join(ROOT, 'test', 'sim', 'modbus_sim.py'),
                         '--port', meter_end, '--baud', str(bus.get('baud', 9600)),
                         '--parity', bus.get('parity', 'none')[0].upper(),
                         '--config', sim_json],
                        bus['name'] + '-sim.log', stdout=subprocess.PIPE)
            sims.append((bus, sim, sim_json))
        sim.stdout.readline()  # READY

    gateway[0] = start([os.path.join(build, 'gateway', 'meterhub'), '-c', CONFIG],
                       'meterhub.log')
    print('meterhub demo: %d buses, %d meters; logs in %s' % (
        len(cfg['buses']), sum(len(b['meters']) for b in cfg['buses']), RUN))
    print('MQTT stream of %s/# on 127.0.0.1:%d (Ctrl-C to stop):' % (
        cfg['mqtt']['topic_prefix'], PORT), flush=True)
    start(['mosquitto_sub', '-h', '127.0.0.1', '-p', str(PORT), '-v', '-t',
           cfg['mqtt']['topic_prefix'] + '/#'], 'sub.log', stdout=None)

    while True:
        time.sleep(5)
        for bus, sim, sim_json in sims:
            with open(sim_json, 'w') as f:
                json.dump(sim_config(bus, profiles, time.monotonic() - t0), f)
            sim.send_signal(signal.SIGHUP)


if __name__ == '__main__':
    main()
