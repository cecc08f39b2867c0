# SPDX-License-Identifier: MIT
"""Real peers for the integration tests.

Every test gets its own mosquitto on a free loopback port, socat pty pairs as
RS485 lines, meter simulators on the far ends of those lines and the real
meterhub binary. Nothing is mocked. Processes are killed in finalizers, so a
failing test leaves nothing running. A test that needs the link to die puts a
Proxy between the daemon and the broker and kills that, so the broker, and
what it acknowledged, stays up.

Tests run in parallel (pytest-xdist): everything a test writes is under its
tmp_path, and ports come from free_port().

The binary comes from $MESON_BUILD_ROOT (set by ``meson test``) or
$MH_BUILD_DIR, else ./build.
"""

import asyncio
import collections
import json
import os
import random
import re
import signal
import socket
import struct
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


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: runs for 15 s or more')


def pytest_collection_modifyitems(config, items):
    # pytest-xdist (--dist loadgroup) hands tests out one at a time in this
    # order, each worker holding one in reserve: the slow ones go first, one
    # to a worker, so that a parallel run does not end waiting for one that
    # started last, and what waits behind each of them is short.
    items.sort(key=lambda item: item.get_closest_marker('slow') is None)


def build_dir():
    return os.environ.get('MH_BUILD_DIR') or os.environ.get('MESON_BUILD_ROOT') \
        or os.path.join(ROOT, 'build')


def meterhub_binary():
    path = os.path.join(build_dir(), 'gateway', 'meterhub')
    if not os.path.exists(path):
        pytest.fail('meterhub binary not found at %s; build first' % path)
    return path


def _port_range():
    """Ports below the range the kernel hands out on its own, split between
    xdist workers. A port from bind(0) is an ephemeral port: while a broker is
    restarted on it, any outgoing connection on the machine may take it."""
    try:
        with open('/proc/sys/net/ipv4/ip_local_port_range') as f:
            ephemeral = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral = 32768
    low, high = 10000, max(ephemeral, 12000)
    worker = os.environ.get('PYTEST_XDIST_WORKER', 'gw0')
    count = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1'))
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    size = (high - low) // max(count, 1)
    return low + index * size, low + (index + 1) * size


_given_ports = set()


def free_port():
    """A loopback port nobody listens on, not handed out before in this
    process: a broker down for a restart keeps its port."""
    low, high = _port_range()
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(low, high)
        if port in _given_ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(('127.0.0.1', port))
            except OSError:
                continue
        _given_ports.add(port)
        return port
    pytest.fail('no free port in %d-%d' % (low, high))


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
    (and the messages queued for them) across a restart, saving every second.

    With @tls, a dict of mosquitto listener options (certfile, keyfile,
    cafile, require_certificate, ciphers...), that port is a TLS listener,
    and plain_port a plaintext one beside it for the tests' own clients.
    @env is the broker's whole environment: OPENSSL_CONF there makes a
    listener that Debian's OpenSSL settings would not."""

    def __init__(self, procs, tmp_path, persistent=False, tls=None, env=None):
        self.procs = procs
        self.port = free_port()
        self.plain_port = free_port() if tls else self.port
        self.env = env
        self.conf = tmp_path / 'mosquitto.conf'
        self.log = tmp_path / 'mosquitto.log'
        persistence = 'persistence false\n'
        if persistent:
            persistence = ('persistence true\npersistence_location %s/\n'
                           'autosave_interval 1\n' % tmp_path)
        # mosquitto opens its listeners in this order, and start() waits
        # until the last one takes connections: the TLS one, which the
        # daemon is pointed at, so the plain one is only ever the tests'.
        listeners = 'listener %d 127.0.0.1\n' % self.plain_port if tls else ''
        listeners += 'listener %d 127.0.0.1\n' % self.port
        if tls:
            listeners += ''.join('%s %s\n' % option for option in tls.items())
        self.conf.write_text(
            '%s'
            'allow_anonymous true\n'
            'user root\n'
            '%s'
            'log_dest file %s\n'
            'log_type error\nlog_type warning\nlog_type notice\nlog_type subscribe\n'
            'max_queued_messages 1000000\n'
            'max_inflight_messages 100\n' % (listeners, persistence, self.log))
        self.proc = None
        self.start()

    def start(self):
        self.proc = self.procs.start(['mosquitto', '-c', str(self.conf)], 'mosquitto',
                                     env=self.env)

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

    def log_text(self):
        try:
            return self.log.read_text(errors='replace')
        except OSError:
            return ''

    def connections(self, port):
        """How many TCP connections the broker took on @port (logged as each comes)."""
        return len(re.findall(r'^\d+: New connection from \S+ on port %d\.$' % port,
                              self.log_text(), re.M))

    def clients(self):
        """The ids of the clients whose MQTT CONNECT the broker accepted, in order."""
        return re.findall(r'^\d+: New client connected from \S+ as (\S+) ', self.log_text(),
                          re.M)

    def client_events(self, client_id):
        """What the broker's log says @client_id did, in order: ('connect',
        clean_session) and ('subscribe', topic filter) tuples. mosquitto
        writes a log line as it acts, so a subscription in this list is in
        place: a message published after it reaches the subscriber."""
        events = []
        for line in self.log_text().splitlines():
            m = re.match(r'^\d+: New client connected from \S+ as (\S+) \(p\d+, c(\d)', line)
            if m:
                if m.group(1) == client_id:
                    events.append(('connect', m.group(2) == '1'))
                continue
            m = re.match(r'^\d+: (\S+) (\d) (\S+)$', line)
            if m and m.group(1) == client_id:
                events.append(('subscribe', m.group(3)))
        return events


@pytest.fixture
def broker(procs, tmp_path):
    return Broker(procs, tmp_path)


@pytest.fixture
def persistent_broker(procs, tmp_path):
    return Broker(procs, tmp_path, persistent=True)


def mqtt_packet(buf):
    """Split one MQTT control packet off the front of @buf: (packet, rest), or
    (None, buf) while it is incomplete."""
    length, mult, i = 0, 1, 1
    while True:
        if i >= len(buf):
            return None, buf
        length += (buf[i] & 0x7f) * mult
        mult <<= 7
        i += 1
        if not buf[i - 1] & 0x80:
            break
    if len(buf) < i + length:
        return None, buf
    return buf[:i + length], buf[i + length:]


def reading_published(packet):
    """The payload of a PUBLISH of a reading (MQTT 3.1.1), else None."""
    if packet[0] >> 4 != 3:
        return None
    i = 1
    while packet[i] & 0x80:
        i += 1
    i += 1
    topic_len = int.from_bytes(packet[i:i + 2], 'big')
    topic = packet[i + 2:i + 2 + topic_len].decode(errors='replace')
    if '/reading/' not in topic:
        return None
    start = i + 2 + topic_len + (2 if (packet[0] >> 1) & 3 else 0)
    return json.loads(packet[start:])


def reset(writer):
    """Close with a RST, dropping what is unsent: how a killed process's
    connections end when data is still in flight."""
    sock = writer.get_extra_info('socket')
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
        except OSError:
            pass
    writer.transport.abort()


class Proxy:
    """A TCP forwarder between the daemon and the broker that the test
    controls. kill() resets every connection and drops whatever the proxy
    holds, as a SIGKILL would; until start() the proxy then resets each new
    connection as it comes, which the daemon sees as an unreachable broker.
    The listening socket stays for the whole test, so its port is never
    given away.

    start(hold_after=N) lets N more reading publishes through to the broker,
    then holds all traffic both ways: the daemon is stopped mid-drain with
    the N-th publish delivered but its PUBACK not, at a point the test
    chose, not one a timer picked. start(drop_publishes=True) passes
    everything but the daemon's PUBLISHes, which vanish: none is ever
    acknowledged. A connection whose other end dies is reset as a whole."""

    def __init__(self, target_port):
        self.target = target_port
        self.port = free_port()
        self.running = True
        self.hold_at = None
        self.holding = False
        self.drop_publishes = False
        self.dropped = 0  # PUBLISHes dropped so far
        self.forwarded = []  # payloads of the readings let through, in order
        self.conns = set()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name='proxy', daemon=True)
        self.thread.start()
        self.server = self._call(self._listen())

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    async def _listen(self):
        return await asyncio.start_server(self._serve, '127.0.0.1', self.port)

    async def _serve(self, c_reader, c_writer):
        if not self.running:
            reset(c_writer)
            return
        try:
            b_reader, b_writer = await asyncio.open_connection('127.0.0.1', self.target)
        except OSError:
            reset(c_writer)  # the broker is down: so is this connection
            return
        conn = (c_writer, b_writer)
        if not self.running:
            reset(c_writer)
            reset(b_writer)
            return
        self.conns.add(conn)
        pumps = [asyncio.ensure_future(self._upstream(c_reader, b_writer)),
                 asyncio.ensure_future(self._downstream(b_reader, c_writer))]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for p in pumps:
                p.cancel()
            self.conns.discard(conn)
            reset(c_writer)
            reset(b_writer)

    async def _upstream(self, reader, writer):
        try:
            await self._pump_publishes(reader, writer)
        except OSError:
            pass  # the connection was reset; _serve resets the other side

    async def _pump_publishes(self, reader, writer):
        buf = b''
        while True:
            data = await reader.read(65536)
            if not data:
                return
            buf += data
            while True:
                packet, buf = mqtt_packet(buf)
                if packet is None:
                    break
                if self.holding:
                    continue  # held until the connection is reset, then lost
                if self.drop_publishes and packet[0] >> 4 == 3:
                    self.dropped += 1
                    continue
                writer.write(packet)
                reading = reading_published(packet)
                if reading is not None:
                    self.forwarded.append(reading)
                    if self.hold_at is not None and len(self.forwarded) >= self.hold_at:
                        self.holding = True
            await writer.drain()

    async def _downstream(self, reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                if not self.holding:
                    writer.write(data)
                    await writer.drain()
        except OSError:
            pass

    async def _kill(self):
        self.running = False
        self.holding = False
        self.hold_at = None
        self.drop_publishes = False
        for c_writer, b_writer in list(self.conns):
            reset(c_writer)
            reset(b_writer)

    async def _start(self, hold_after, drop_publishes):
        if self.holding:
            await self._kill()  # what was held is gone: those streams cannot go on
        self.running = True
        self.holding = False
        self.hold_at = None if hold_after is None else len(self.forwarded) + hold_after
        self.drop_publishes = drop_publishes

    async def _state(self):
        return {'holding': self.holding, 'forwarded': list(self.forwarded),
                'dropped': self.dropped, 'connections': len(self.conns)}

    def kill(self):
        self._call(self._kill())

    def start(self, hold_after=None, drop_publishes=False):
        self._call(self._start(hold_after, drop_publishes))

    def state(self):
        """{'holding': bool, 'forwarded': [reading, ...], 'dropped': n, 'connections': n}"""
        return self._call(self._state())

    def close(self):
        self.kill()
        self.server.close()
        self._call(self.server.wait_closed())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def proxy_factory():
    proxies = []

    def make(target_port):
        p = Proxy(target_port)
        proxies.append(p)
        return p
    yield make
    for p in proxies:
        p.close()


class Subscriber:
    """Collects every message under a topic filter, with QoS 1. Returns once
    the broker has confirmed the subscription, so nothing published after
    that is missed."""

    def __init__(self, port, topic, client_id='test-sub', persistent=False):
        self.messages = []
        self.lock = threading.Lock()
        self.subscribed = 0  # SUBACKs so far: one per (re)connection
        self.client = mqtt.Client(client_id=client_id, clean_session=not persistent)
        # Come back quickly after a broker restart.
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.topic = topic
        self.client.connect('127.0.0.1', port, keepalive=30)
        self.client.loop_start()
        wait_until(lambda: self.subscriptions() >= 1, 10, what='the test subscription')

    def _on_connect(self, client, userdata, flags, rc):
        client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, client, userdata, mid, granted_qos):
        with self.lock:
            self.subscribed += 1

    def subscriptions(self):
        with self.lock:
            return self.subscribed

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

    def writes(self, slave=None, fcs=(5, 6, 15, 16)):
        """The write requests (coils: fc 5, 15; registers: 6, 16) that reached
        the bus, for @slave or every slave, executed or not."""
        return [r for r in self.requests() if r['fc'] in fcs and
                (slave is None or r['slave'] == slave)]


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

    def control_frames(self, addr=None):
        """The remote-control (1CH) requests that reached the bus, for meter
        @addr (12 digits) or any, answered or not; each has "control" with
        the decoded n1 (1AH trip, 1BH close permit, 1CH close, 3AH/3BH keep
        power on/off, ...), password, operator and deadline."""
        return [f for f in self.frames() if f.get('dir') == 'rx' and f.get('c') == 0x1C
                and (addr is None or f.get('addr') == addr)]


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


def first_arrivals(messages):
    """The seq of every record, in order of first arrival; asserts that a seq
    arriving twice is the same record both times. Takes (topic, payload,
    retain) tuples, or longer ones ending so (a timed subscriber's)."""
    first_seen = []
    by_seq = {}
    for m in messages:
        topic, payload = m[-3], m[-2]
        if not isinstance(payload, dict) or 'seq' not in payload:
            continue
        seq = payload['seq']
        if seq in by_seq:
            assert by_seq[seq] == (topic, payload), \
                'seq %d reused for another record: %r vs %r' % (seq, by_seq[seq], (topic, payload))
            continue
        by_seq[seq] = (topic, payload)
        first_seen.append(seq)
    return first_seen


def check_complete(messages, excused=()):
    """Every seq from the first to the last, first arrivals in order, duplicates
    identical: the proof that nothing was lost. Seqs in @excused (dropped by a
    full store, and said so) may be missing."""
    first_seen = first_arrivals(messages)
    assert first_seen, 'nothing arrived'
    assert first_seen == sorted(first_seen), 'reordered'
    missing = set(range(first_seen[0], first_seen[-1] + 1)) - set(first_seen) - set(excused)
    assert not missing, 'gap: %s' % sorted(missing)[:20]
    return first_seen


def gateway_config(tmp_path, broker_port, buses, interval='1s', gw_id='gw-test',
                   profiles=None, **extra):
    cfg = {
        'gateway': {'id': gw_id, 'timezone': 'Asia/Shanghai'},
        'store': {'path': str(tmp_path / 'store'), 'max_bytes': '16MiB'},
        'mqtt': {'uri': 'tcp://127.0.0.1:%d' % broker_port},
        # Retries and backfill add frames the older tests do not expect;
        # test_intervals.py turns them on where it tests them.
        'schedule': {'interval': interval, 'retries': 0, 'backfill_days': 0},
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
