# SPDX-License-Identifier: MIT
"""Real peers for the integration tests.

Every test gets its own mosquitto on a free loopback port, socat pty pairs as
RS485 lines, meter simulators on the far ends of those lines and the real
meterhub binary. Nothing is mocked. Processes are killed in finalizers, so a
failing test leaves nothing running.

The binary comes from $MESON_BUILD_ROOT (set by ``meson test``) or
$MH_BUILD_DIR, else ./build.
"""

import collections
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIM_DIR = os.path.join(ROOT, 'test', 'sim')
sys.path.insert(0, SIM_DIR)

from modbus_sim import encode_typed  # noqa: E402  (the simulator's own encoder)

PYTHON = '/usr/bin/python3'


def build_dir():
    return os.environ.get('MH_BUILD_DIR') or os.environ.get('MESON_BUILD_ROOT') \
        or os.path.join(ROOT, 'build')


def meterhub_binary():
    path = os.path.join(build_dir(), 'gateway', 'meterhub')
    if not os.path.exists(path):
        pytest.fail('meterhub binary not found at %s; build first' % path)
    return path


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout, interval=0.05, what='condition'):
    """Poll @predicate until it returns a true value; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail('timed out after %.1f s waiting for %s' % (timeout, what))
        time.sleep(interval)


class Processes:
    """Starts processes and kills whatever is left at the end of a test."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.procs = []

    def start(self, args, name, **kw):
        out = open(self.tmp / ('%s.log' % name), 'ab')
        proc = subprocess.Popen(args, stdout=kw.pop('stdout', out), stderr=out,
                                stdin=subprocess.DEVNULL, **kw)
        proc.log_path = self.tmp / ('%s.log' % name)
        self.procs.append(proc)
        return proc

    def cleanup(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.kill()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass


@pytest.fixture
def procs(tmp_path):
    p = Processes(tmp_path)
    yield p
    p.cleanup()


class Broker:
    """mosquitto on a free loopback port. A persistent broker keeps sessions
    (and the messages queued for them) across a restart, saving every second."""

    def __init__(self, procs, tmp_path, persistent=False):
        self.procs = procs
        self.port = free_port()
        self.conf = tmp_path / 'mosquitto.conf'
        self.log = tmp_path / 'mosquitto.log'
        persistence = 'persistence false\n'
        if persistent:
            persistence = ('persistence true\npersistence_location %s/\n'
                           'autosave_interval 1\n' % tmp_path)
        self.conf.write_text(
            'listener %d 127.0.0.1\n'
            'allow_anonymous true\n'
            'user root\n'
            '%s'
            'log_dest file %s\n'
            'log_type error\nlog_type warning\nlog_type notice\n'
            'max_queued_messages 1000000\n'
            'max_inflight_messages 100\n' % (self.port, persistence, self.log))
        self.proc = None
        self.start()

    def start(self):
        self.proc = self.procs.start(['mosquitto', '-c', str(self.conf)], 'mosquitto')

        def listening():
            try:
                socket.create_connection(('127.0.0.1', self.port), 0.2).close()
                return True
            except OSError:
                if self.proc.poll() is not None:
                    pytest.fail('mosquitto exited: %s' % self.log.read_text())
                return False
        wait_until(listening, 10, what='mosquitto to listen')

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        self.proc.wait(10)


@pytest.fixture
def broker(procs, tmp_path):
    return Broker(procs, tmp_path)


@pytest.fixture
def persistent_broker(procs, tmp_path):
    return Broker(procs, tmp_path, persistent=True)


class Subscriber:
    """Collects every message under a topic filter, with QoS 1."""

    def __init__(self, port, topic, client_id='test-sub', persistent=False):
        self.messages = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.client = mqtt.Client(client_id=client_id, clean_session=not persistent)
        # Come back quickly after a broker restart.
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.topic = topic
        self.client.connect('127.0.0.1', port, keepalive=30)
        self.client.loop_start()
        if not self.connected.wait(10):
            pytest.fail('test subscriber could not connect')

    def _on_connect(self, client, userdata, flags, rc):
        client.subscribe(self.topic, qos=1)
        self.connected.set()

    def _on_message(self, client, userdata, msg):
        try:
            payload = json.loads(msg.payload.decode())
        except ValueError:
            payload = msg.payload.decode(errors='replace')
        with self.lock:
            self.messages.append((msg.topic, payload, msg.retain))

    def snapshot(self, prefix=''):
        with self.lock:
            return [m for m in self.messages if m[0].startswith(prefix)]

    def readings(self, prefix):
        return [p for t, p, _ in self.snapshot(prefix + '/reading/')]

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def subscriber_factory():
    subs = []

    def make(port, topic, client_id='test-sub', persistent=False):
        s = Subscriber(port, topic, client_id, persistent)
        subs.append(s)
        return s
    yield make
    for s in subs:
        s.close()


def pty_pair(procs, name):
    """A socat pty pair standing in for one RS485 line: (gateway end, meter end)."""
    proc = procs.start(['socat', '-d', '-d', 'pty,raw,echo=0', 'pty,raw,echo=0'], name)

    def ptys():
        found = re.findall(r'PTY is (\S+)', proc.log_path.read_text())
        return found if len(found) >= 2 else None
    a, b = wait_until(ptys, 10, what='socat ptys')[:2]
    return a, b


class ModbusSim:
    def __init__(self, procs, tmp_path, name, slaves):
        self.gateway_end, meter_end = pty_pair(procs, name + '-pty')
        self.config = tmp_path / (name + '-sim.json')
        self.log = tmp_path / (name + '-requests.jsonl')
        self.write(slaves)
        self.proc = procs.start(
            [PYTHON, os.path.join(SIM_DIR, 'modbus_sim.py'), '--port', meter_end,
             '--baud', '9600', '--parity', 'N', '--config', str(self.config),
             '--log', str(self.log)], name + '-sim', stdout=subprocess.PIPE)
        line = self.proc.stdout.readline().decode()
        if 'READY' not in line:
            pytest.fail('modbus simulator did not start: %s' % self.proc.log_path.read_text())

    def write(self, slaves):
        self.config.write_text(json.dumps({'slaves': slaves}))

    def reload(self, slaves):
        self.write(slaves)
        self.proc.send_signal(signal.SIGHUP)

    def requests(self):
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]


@pytest.fixture
def modbus_sim(procs, tmp_path):
    def make(name, slaves):
        return ModbusSim(procs, tmp_path, name, slaves)
    return make


class Dlt645Sim:
    """test/sim/dlt645_sim.py behind a pty pair; see its docstring for the config."""

    def __init__(self, procs, tmp_path, name, config):
        self.gateway_end, meter_end = pty_pair(procs, name + '-pty')
        self.config = tmp_path / (name + '-sim.json')
        self.log = tmp_path / (name + '-frames.jsonl')
        self.write(config)
        self.proc = procs.start(
            [PYTHON, os.path.join(SIM_DIR, 'dlt645_sim.py'), '--port', meter_end,
             '--config', str(self.config), '--log', str(self.log)], name + '-sim',
            stdout=subprocess.PIPE)
        line = self.proc.stdout.readline().decode()
        if 'READY' not in line:
            pytest.fail('DL/T 645 simulator did not start: %s' % self.proc.log_path.read_text())

    def write(self, config):
        self.config.write_text(json.dumps(config))

    def reload(self, config):
        self.write(config)
        self.proc.send_signal(signal.SIGHUP)

    def frames(self):
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]


@pytest.fixture
def dlt645_sim(procs, tmp_path):
    def make(name, config):
        return Dlt645Sim(procs, tmp_path, name, config)
    return make


class Gateway:
    def __init__(self, procs, tmp_path, config, name='meterhub'):
        self.procs = procs
        self.name = name
        self.path = tmp_path / (name + '.yaml')
        # JSON is YAML: generated configs are written as JSON.
        self.path.write_text(json.dumps(config, indent=2))
        self.config = config
        self.proc = None

    def start(self, *extra):
        self.proc = self.procs.start([meterhub_binary(), '-c', str(self.path)] + list(extra),
                                     self.name)
        return self

    def stop(self, sig=signal.SIGTERM, timeout=15):
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def log(self):
        return self.proc.log_path.read_text()


def gateway_config(tmp_path, broker_port, buses, interval='1s', gw_id='gw-test',
                   profiles=None, **extra):
    cfg = {
        'gateway': {'id': gw_id, 'timezone': 'Asia/Shanghai'},
        'store': {'path': str(tmp_path / 'store'), 'max_bytes': '16MiB'},
        'mqtt': {'uri': 'tcp://127.0.0.1:%d' % broker_port},
        'schedule': {'interval': interval},
        'buses': buses,
    }
    if profiles:
        cfg['profiles'] = profiles
    cfg.update(extra)
    return cfg


@pytest.fixture
def gateway(procs, tmp_path):
    def make(config, name='meterhub'):
        return Gateway(procs, tmp_path, config, name)
    return make


def by_meter(readings):
    out = collections.defaultdict(list)
    for r in readings:
        out[r['meter']].append(r)
    return out


def read_meters(gateway, cfg, sub, meters, rounds=2, timeout=20):
    """Run the daemon on @cfg until each of @meters published @rounds readings,
    stop it (it must exit 0) and return every reading, by meter."""
    gw = gateway(cfg).start()
    prefix = cfg['mqtt'].get('topic_prefix', 'meterhub/' + cfg['gateway']['id'])

    def enough():
        got = by_meter(sub.readings(prefix))
        return all(len(got.get(m, [])) >= rounds for m in meters)
    wait_until(enough, timeout, what='%d readings of each of %s' % (rounds, meters))
    assert gw.stop() == 0
    return by_meter(sub.readings(prefix))


def assert_fault(got, meter, quality, text):
    """A faulty meter's readings say what went wrong and carry no value."""
    for r in got[meter]:
        assert r['quality'] == quality, r
        assert text in r['error'], r
        assert r['values'] == {}, r


def typed(table, address, type_, value, word_order='big'):
    return {'table': table, 'address': address, 'type': type_,
            'word_order': word_order, 'value': value}


__all__ = ['encode_typed', 'wait_until', 'gateway_config', 'typed']
