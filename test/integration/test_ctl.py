# SPDX-License-Identifier: MIT
"""meterhub-ctl status, dump, intervals and check-config against a store the
real daemon writes, read beside it while it runs.

The daemon's broker is kept out of reach (a Proxy that resets every
connection) or made to swallow every PUBLISH (so nothing is acknowledged and
every record stays in the outbox, some of them sent). The proofs: dump
prints exactly the records a subscriber receives once the broker is
reachable, seq by seq, byte by byte, with their topics; the intervals CSV is
the interval records published; status reads a store the daemon is writing,
says who holds it, and disturbs nothing (the daemon keeps publishing, opens
its store again after a stop, logs no store error, the store's files do not
grow); a store that is not there is a clear error and stays not there;
check-config says what `meterhub --check-config` says.
"""

import array
import csv
import datetime as dt
import fcntl
import io
import json
import os
import re
import subprocess
import termios
import time
import zoneinfo

import paho.mqtt.client as mqtt
import pytest

import cmdsign
from conftest import Subscriber, build_dir, first_arrivals, gateway_config, meterhub_binary, \
    typed, wait_until
from faults import clockshift, log_tail, start_daemon  # noqa: F401  (fixture)

TZNAME = 'Asia/Shanghai'
TZ = zoneinfo.ZoneInfo(TZNAME)
PREFIX = 'meterhub/gw-test'
CLIENT_ID = 'meterhub-gw-test'
KEY = bytes.fromhex('00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff')
ADDR = '000000000001'
F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ, Python 3.10 and later
KINDS = ('reading', 'interval', 'daily', 'monthly', 'event', 'cmd_result')
# The total and the four tariffs in one frame: intervals with five energy columns.
PROFILE_645 = {'points': [{'di': '0001FF00'}],
               'control': {'password_level': 2, 'password': '000000',
                           'operator': '00000000'}}
PROFILE_MODBUS = {'points': [
    {'name': 'power_kw', 'table': 'holding', 'address': 0, 'type': 'float32'}]}


def ctl_binary():
    path = os.path.join(build_dir(), 'gateway', 'meterhub-ctl')
    if not os.path.exists(path):
        pytest.fail('meterhub-ctl not found at %s; build first' % path)
    return path


def ctl(*args, timeout=30):
    return subprocess.run([ctl_binary()] + [str(a) for a in args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def ctl_ok(*args):
    r = ctl(*args)
    assert r.returncode == 0, (args, r.returncode, r.stdout, r.stderr)
    return r


def status(cfg_path):
    return json.loads(ctl_ok('status', '-c', cfg_path, '--json').stdout)


def dump(cfg_path, *args):
    """The records dump prints: [(line, object)]."""
    out = ctl_ok('dump', '-c', cfg_path, *args).stdout
    return [(line, json.loads(line)) for line in out.splitlines()]


def kind_of(topic):
    sub = topic[len(PREFIX) + 1:]
    return 'cmd_result' if sub == 'cmd/result' else sub.split('/')[0]


def parse_utc(ts):
    return dt.datetime.fromisoformat(ts.replace('Z', '+00:00')).timestamp()


def epoch_local(y, mo, d, h, mi, s):
    return dt.datetime(y, mo, d, h, mi, s, tzinfo=TZ).timestamp()


def local_midnight(date):
    return dt.datetime(date.year, date.month, date.day, tzinfo=TZ).timestamp()


class RawSubscriber(Subscriber):
    """conftest's Subscriber, also keeping each payload's bytes as they came."""

    def __init__(self, *args, **kw):
        self.raw = []
        super().__init__(*args, **kw)

    def _on_message(self, client, userdata, msg):
        super()._on_message(client, userdata, msg)
        with self.lock:
            self.raw.append((msg.topic, bytes(msg.payload)))

    def by_seq(self):
        """{seq: (topic, payload object, payload bytes)}, first arrival of each."""
        with self.lock:
            msgs, raw = list(self.messages), list(self.raw)
        first_arrivals(msgs)  # a seq arriving twice is the same record both times
        out = {}
        for (topic, payload, _), (_, data) in zip(msgs, raw):
            if isinstance(payload, dict) and 'seq' in payload:
                out.setdefault(payload['seq'], (topic, payload, data))
        return out


@pytest.fixture
def raw_subscriber():
    subs = []

    def make(port, topic, client_id='test-raw-sub'):
        s = RawSubscriber(port, topic, client_id)
        subs.append(s)
        return s
    yield make
    for s in subs:
        s.close()


def assert_running(gw):
    rc = gw.proc.poll()
    if rc is not None:
        pytest.fail('the daemon exited with %s; log tail:\n%s' % (rc, log_tail(gw.proc.log_path)))


def store_errors(gw):
    """Log lines of the daemon about its store at warning and above, or about a second process."""
    return [line for line in gw.log().splitlines()
            if ('[STORE]' in line and (' error ' in line or ' warning ' in line))
            or 'in use by another' in line]


# ---- dump -------------------------------------------------------------------

@pytest.mark.slow
def test_dump_round_trips_every_record(broker, proxy_factory, dlt645_sim, gateway,
                                       raw_subscriber, clockshift, tmp_path,  # noqa: F811
                                       monkeypatch):
    """Every kind of record (readings, intervals, a daily and a monthly
    freeze at local midnight, a clock_step event, command results) stored
    while the broker swallows every PUBLISH, so some were sent and none is
    acknowledged. dump, run while the daemon writes, prints them in seq
    order; once the broker is reachable the subscriber receives the same
    records, seq by seq: the same topic and the same payload bytes. Its
    filters select what they say, and the intervals CSV is the interval
    records published."""
    monkeypatch.setenv('TZ', TZNAME)  # the simulated meter's clock
    sim = dlt645_sim('b645', {'meters': [{'address': ADDR, 'phases': 1, 'load_kw': 7.2,
                                          'speedup': 10, 'import_kwh': 1000.0}]})
    key_file = cmdsign.write_key_file(tmp_path / 'cmd.key', KEY)
    proxy = proxy_factory(broker.port)
    proxy.start(drop_publishes=True)
    cfg = gateway_config(tmp_path, proxy.port, [{
        'name': 'rs485-645', 'device': sim.gateway_end, 'baud': 2400, 'parity': 'even',
        'protocol': 'dlt645', 'timeout': '300ms',
        'meters': [{'id': 'm-1', 'address': ADDR, 'profile': 'p645'}]}],
        interval='2s', profiles={'p645': PROFILE_645},
        commands={'hmac_key_file': str(key_file), 'settle': '300ms', 'confirm_within': '3s'})
    sub = raw_subscriber(broker.port, PREFIX + '/#')
    # The daemon's clock: 16 s before the last midnight of 2026, then running.
    start = epoch_local(2026, 12, 31, 23, 59, 44)
    clockshift.set_abs(start)
    set_at = time.time()
    gw = start_daemon(gateway(cfg), clockshift.env())
    path = gw.path
    wait_until(lambda: 'next seq' in gw.log(), 10, what='the daemon to open its store')

    def gateway_now():
        return start + (time.time() - set_at)

    wait_until(lambda: ('subscribe', PREFIX + '/cmd') in broker.client_events(CLIENT_ID), 20,
               what='the daemon to subscribe to its commands')
    head_end = mqtt.Client(client_id='test-headend', clean_session=True)
    head_end.connect('127.0.0.1', broker.port, keepalive=30)
    head_end.loop_start()
    try:
        cmd = cmdsign.command(KEY, 'c-1', 'm-1', 'recall', now=gateway_now())
        head_end.publish(PREFIX + '/cmd', cmdsign.encode(cmd), qos=1).wait_for_publish(10)
    finally:
        head_end.loop_stop()
        head_end.disconnect()

    def counts(want):
        assert_running(gw)
        got = status(path)['records']
        return all(got[k] >= n for k, n in want.items())
    wait_until(lambda: counts({'monthly': 1, 'daily': 1, 'cmd_result': 2, 'interval': 10}), 60,
               what='freezes, command results and intervals in the store')
    clockshift.set_abs(gateway_now() + 120)  # a clock step: an event
    wait_until(lambda: counts({'event': 1, 'interval': 12}), 30, what='a clock_step event')
    assert proxy.state()['dropped'] > 0, 'nothing was sent'
    assert not sub.by_seq(), 'a record reached the broker'

    # dump while the daemon writes: every stored record, in seq order, none acknowledged.
    records = dump(path)
    seqs = [o['seq'] for _, o in records]
    assert seqs == list(range(1, len(seqs) + 1)), seqs
    assert {kind_of(o['topic']) for _, o in records} == set(KINDS)
    assert all(o['topic'].startswith(PREFIX + '/') for _, o in records)
    # The topic is appended as the last member; before it, the payload as stored.
    for line, o in records:
        assert line.endswith(',"topic":%s}' % json.dumps(o['topic'])), line

    # Its filters, against the whole dump.
    for kind in KINDS:
        got = [o['seq'] for _, o in dump(path, '--type', kind)]
        assert got == [o['seq'] for _, o in records if kind_of(o['topic']) == kind], kind
    got = [o['seq'] for _, o in dump(path, '--meter', 'm-1')]
    assert got == [o['seq'] for _, o in records
                   if o['topic'].endswith('/m-1') or o.get('meter') == 'm-1']
    assert [o['seq'] for _, o in dump(path, '--from', 5, '--to', 9)] == [5, 6, 7, 8, 9]
    assert dump(path, '--meter', 'm-2') == []
    assert [o['seq'] for _, o in dump(path, '--type', 'event', '--meter', 'm-1')] == []

    # The interval tables of the two local days, while they are still in the store.
    both = ctl_ok('intervals', '-c', path, '--meter', 'm-1', '--from', '2026-12-31',
                  '--to', '2027-01-01', '--csv').stdout
    new_year = ctl_ok('intervals', '-c', path, '--meter', 'm-1', '--from', '2027-01-01',
                      '--to', '2027-01-01', '--csv').stdout
    table = ctl_ok('intervals', '-c', path, '--meter', 'm-1', '--from', '2026-12-31',
                   '--to', '2027-01-01').stdout

    # The broker comes within reach: everything dumped arrives, as dumped.
    proxy.kill()
    proxy.start()
    wait_until(lambda: set(seqs) <= set(sub.by_seq()), 60, what='every dumped seq to arrive')
    assert gw.stop() == 0
    published = sub.by_seq()
    for line, o in records:
        topic, payload, data = published[o['seq']]
        assert topic == o['topic'], (topic, o)
        assert payload == {k: v for k, v in o.items() if k != 'topic'}, (payload, o)
        stored = line[:-len(',"topic":%s}' % json.dumps(o['topic']))] + '}'
        assert data.decode() == stored, (data, line)

    # The CSV is the published interval records, column by column.
    intervals = [published[s][1] for s in sorted(published)
                 if published[s][0] == PREFIX + '/interval/m-1']
    energies = [k for k in intervals[0] if k.startswith('energy_') and k.endswith('_kwh')]
    assert len(energies) == 5, intervals[0]  # the total and T1..T4

    def check_csv(text, published_in_range):
        """The CSV's rows are the first of @published_in_range; returns how many."""
        rows = list(csv.reader(io.StringIO(text)))
        assert rows[0] == ['start', 'end', 'period'] + energies + ['complete'], rows[0]
        assert len(rows) - 1 <= len(published_in_range), (len(rows), len(published_in_range))
        for row, want in zip(rows[1:], published_in_range):
            cells = dict(zip(rows[0], row))
            assert cells['start'] == want['start'] and cells['end'] == want['end'], (row, want)
            assert cells['period'] == (want['period'] or ''), (row, want)
            for e in energies:
                assert float(cells[e]) == want[e], (e, row, want)
            assert cells['complete'] == json.dumps(want['complete']), (row, want)
        return len(rows) - 1
    # Each was taken a moment after the dump, and nothing was acknowledged
    # before the last: each shows the intervals stored up to when it ran,
    # the dumped ones and perhaps a few more.
    published_before = [i for i in intervals if i['seq'] <= seqs[-1]]
    midnight = local_midnight(dt.date(2027, 1, 1))
    after_midnight = [i for i in intervals if parse_utc(i['end']) > midnight]
    n = check_csv(both, intervals)
    assert n >= len(published_before)
    m = check_csv(new_year, after_midnight)
    assert 0 < m <= len(after_midnight) and m < n
    # Both days hold intervals, and the one ending at midnight belongs to the 31st.
    assert any(parse_utc(i['end']) == midnight for i in published_before)
    lines = table.splitlines()
    assert lines[0].split() == ['start', 'end', 'period'] + energies + ['complete'], lines[0]
    k = len(lines) - 2
    assert k >= n and [line.split()[:2] for line in lines[1:-1]] == [
        [i['start'], i['end']] for i in intervals[:k]], table
    assert lines[-1].startswith('%d intervals of m-1 ending from 2026-12-31 00:00 to '
                                '2027-01-01 24:00 Asia/Shanghai' % k), lines[-1]


# ---- status -------------------------------------------------------------------

@pytest.mark.slow
def test_status_beside_a_running_daemon(broker, proxy_factory, dlt645_sim, modbus_sim, gateway,
                                        subscriber_factory, tmp_path, monkeypatch):
    """status while the daemon writes with its broker out of reach: the
    backlog, its age, the seqs, the use of the store, each bus's last good
    reading (a meter that never answers gives none) and the daemon's pid.
    Then, with the broker back, status again and again while the daemon
    drains: it keeps publishing, logs no store trouble, and the store's
    files do not grow. Stopped, the store is not held, and the daemon
    opens it again."""
    monkeypatch.setenv('TZ', TZNAME)
    sim645 = dlt645_sim('b645', {'meters': [{'address': ADDR, 'phases': 1, 'load_kw': 7.2,
                                             'import_kwh': 1000.0}]})
    simmb = modbus_sim('bmb', {'2': {'typed': [typed('holding', 0, 'float32', 1.5)]}})
    proxy = proxy_factory(broker.port)
    proxy.kill()  # the broker is out of reach until proxy.start()
    cfg = gateway_config(tmp_path, proxy.port, [
        {'name': 'rs485-645', 'device': sim645.gateway_end, 'baud': 2400, 'parity': 'even',
         'protocol': 'dlt645', 'timeout': '300ms',
         'meters': [{'id': 'm-1', 'address': ADDR, 'profile': 'dlt645-single-phase'}]},
        {'name': 'rs485-mb', 'device': simmb.gateway_end, 'protocol': 'modbus',
         'timeout': '200ms',
         'meters': [{'id': 'm-2', 'address': 2, 'profile': 'pmb'},
                    {'id': 'm-3', 'address': 3, 'profile': 'pmb'}]}],  # m-3 is absent
        interval='1s', profiles={'pmb': PROFILE_MODBUS})
    sub = subscriber_factory(broker.port, PREFIX + '/reading/#')
    gw = gateway(cfg).start()
    path = gw.path
    store = tmp_path / 'store'
    wait_until(lambda: 'next seq' in gw.log(), 10, what='the daemon to open its store')

    def known():
        assert_running(gw)
        st = status(path)
        buses = {b['name']: b for b in st['buses']}
        return st if st['store']['backlog'] >= 12 and all(
            buses[b]['last_good'] for b in ('rs485-645', 'rs485-mb')) else None
    st = wait_until(known, 30, what='a backlog and a good reading on each bus')
    sizes = {f: os.path.getsize(store / f) for f in ('data.mdb', 'lock.mdb')}

    assert st['daemon'] == {'running': True, 'pid': gw.proc.pid}
    s = st['store']
    assert s['backlog'] == sum(st['records'].values())
    assert st['records']['reading'] > 0 and st['records']['interval'] > 0
    assert s['oldest_seq'] == 1 and 0 <= s['oldest_age_s'] < 60
    assert abs(parse_utc(s['oldest_ts']) - time.time()) < 60
    assert s['max_bytes'] == 16 << 20 and 0 < s['used_bytes'] < s['max_bytes']
    assert s['use'] == s['used_bytes'] / s['max_bytes']
    assert st['seq']['next'] == st['seq']['last'] + 1 and st['seq']['last'] >= s['backlog']
    buses = {b['name']: b for b in st['buses']}
    assert [b['name'] for b in st['buses']] == ['rs485-645', 'rs485-mb']
    assert buses['rs485-645']['meter'] == 'm-1' and buses['rs485-mb']['meter'] == 'm-2'
    for b in buses.values():
        assert b['configured'] is True and 0 <= b['last_good_age_s'] < 10, b
        assert abs(parse_utc(b['last_good']) - time.time()) < 10, b
    meters = {m['id']: m for m in st['meters']}
    assert meters['m-3']['last_good'] is None and meters['m-3']['bus'] == 'rs485-mb'
    assert meters['m-1']['intervals_good'] is not None  # the builder's state
    assert meters['m-2']['intervals_good'] is None  # no energy register: no builder

    text = ctl_ok('status', '-c', path).stdout
    assert re.search(r'^daemon +running, pid %d$' % gw.proc.pid, text, re.M), text
    assert re.search(r'^backlog +\d+ records waiting for the broker$', text, re.M), text
    assert re.search(r'^bus rs485-mb +last good reading \S+Z, \d+s ago \(m-2\)$', text, re.M), text
    assert re.search(r'^store use +[\d.]+ \w+ of 16\.0 MiB \(', text, re.M), text
    # --store reads the same store without a configuration.
    bare = json.loads(ctl_ok('status', '--store', store, '--json').stdout)
    assert bare['store']['max_bytes'] is None and bare['daemon']['pid'] == gw.proc.pid
    assert {b['name'] for b in bare['buses']} == {'rs485-645', 'rs485-mb'}

    # The broker comes back: status, again and again, while the daemon
    # reconnects (its retry delay has grown meanwhile) and drains.
    proxy.start()

    def status_twice():
        for args in (('--json',), ()):
            r = ctl('status', '-c', path, *args)
            assert r.returncode == 0 and r.stderr == '', r
        return len(sub.snapshot())
    wait_until(status_twice, 45, what='the daemon to publish again')
    received = []
    for _ in range(15):
        received.append(status_twice())
        time.sleep(0.3)
    assert received[-1] > received[0], 'the daemon stopped publishing: %s' % received
    wait_until(lambda: status(path)['store']['backlog'] < 12, 30, what='the backlog to drain')
    n = len(sub.snapshot())
    wait_until(lambda: len(sub.snapshot()) > n + 3, 10, what='readings after the drain')
    assert_running(gw)
    assert store_errors(gw) == [], store_errors(gw)
    # Acknowledged readings are gone; the interval builder still knows m-1's last good read.
    st = status(path)
    m1 = {m['id']: m for m in st['meters']}['m-1']
    assert abs(parse_utc(m1['intervals_good']) - time.time()) < 10, m1
    assert {f: os.path.getsize(store / f) for f in sizes} == sizes

    assert gw.stop() == 0
    st = status(path)
    assert st['daemon'] == {'running': False, 'pid': None}
    # A store no daemon holds is read as well, and changed in nothing.
    data = (store / 'data.mdb').read_bytes()
    ctl_ok('status', '-c', path)
    dump(path)
    assert (store / 'data.mdb').read_bytes() == data
    assert {f: os.path.getsize(store / f) for f in sizes} == sizes
    gw = gateway(cfg, name='meterhub-again').start()
    wait_until(lambda: 'next seq' in gw.log(), 10, what='the daemon to open its store again')
    assert_running(gw)
    assert gw.stop() == 0
    assert store_errors(gw) == [], store_errors(gw)


def test_dump_while_records_are_acknowledged(broker, modbus_sim, gateway, tmp_path):
    """dump beside a daemon that publishes and deletes acknowledged records
    as it goes: what it prints is in seq order, each record once, never a
    record that is not a reading of this gateway."""
    sim = modbus_sim('bmb', {str(i): {'typed': [typed('holding', 0, 'float32', 1.5)]}
                             for i in range(1, 5)})
    cfg = gateway_config(tmp_path, broker.port, [{
        'name': 'rs485-mb', 'device': sim.gateway_end, 'protocol': 'modbus', 'timeout': '200ms',
        'meters': [{'id': 'm-%d' % i, 'address': i, 'profile': 'pmb'} for i in range(1, 5)]}],
        interval='1s', profiles={'pmb': PROFILE_MODBUS})
    gw = gateway(cfg).start()
    wait_until(lambda: 'next seq' in gw.log(), 10, what='the daemon to open its store')
    wait_until(lambda: status(gw.path)['seq']['last'], 20, what='a first record')
    stop = time.time() + 5
    while time.time() < stop:
        seqs = [o['seq'] for _, o in dump(gw.path)]
        assert seqs == sorted(set(seqs)), seqs
        assert all(kind_of(o['topic']) == 'reading' for _, o in dump(gw.path, '--type', 'reading'))
    assert_running(gw)
    assert gw.stop() == 0
    assert store_errors(gw) == [], store_errors(gw)


def reader_pids(store):
    """The pids in the store's LMDB reader table (mdb_stat -r), readers inside a read now."""
    # mdb_stat -r exits 1 after printing the table; the table is what counts.
    out = subprocess.run(['mdb_stat', '-r', str(store)], capture_output=True, text=True,
                         timeout=10).stdout
    assert out.startswith('Reader Table Status'), out
    return {int(m.group(1)) for m in re.finditer(r'^\s*(\d+)\s+\S+\s+\S+\s*$', out, re.M)}


def test_a_slow_reader_of_dump_holds_no_snapshot(broker, proxy_factory, modbus_sim, gateway,
                                                 tmp_path):
    """dump into a pipe nobody reads: it blocks writing, and meanwhile it has
    no slot in the store's reader table, so the daemon, which goes on
    storing records, reuses its pages as if no reader were there. Once the
    pipe is read, dump ends with every record it started with."""
    sim = modbus_sim('bmb', {str(i): {'typed': [typed('holding', 0, 'float32', 1.5)]}
                             for i in range(1, 9)})
    proxy = proxy_factory(broker.port)
    proxy.kill()
    cfg = gateway_config(tmp_path, proxy.port, [{
        'name': 'rs485-mb', 'device': sim.gateway_end, 'protocol': 'modbus', 'timeout': '200ms',
        'meters': [{'id': 'm-%d' % i, 'address': i, 'profile': 'pmb'} for i in range(1, 9)]}],
        interval='1s', profiles={'pmb': PROFILE_MODBUS})
    gw = gateway(cfg).start()
    wait_until(lambda: 'next seq' in gw.log(), 10, what='the daemon to open its store')
    wait_until(lambda: status(gw.path)['store']['backlog'] >= 80, 30, what='80 records')
    last = status(gw.path)['seq']['last']

    r, w = os.pipe()
    fcntl.fcntl(w, F_SETPIPE_SZ, 4096)  # the smallest pipe: dump blocks soon
    proc = subprocess.Popen([ctl_binary(), 'dump', '-c', str(gw.path)], stdout=w,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    os.close(w)
    try:
        def blocked():
            assert proc.poll() is None, 'dump ended: %r' % (proc.stderr.read(),)
            waiting = array.array('i', [0])
            fcntl.ioctl(r, termios.FIONREAD, waiting)
            with open('/proc/%d/stat' % proc.pid) as f:
                state = f.read().rsplit(')', 1)[1].split()[0]
            return waiting[0] >= 4096 and state == 'S'
        wait_until(blocked, 10, what='dump to block on the full pipe')
        assert proc.pid not in reader_pids(tmp_path / 'store')
        more = status(gw.path)['seq']['last']
        wait_until(lambda: status(gw.path)['seq']['last'] > more, 10,
                   what='the daemon to store more while dump waits')
        assert proc.pid not in reader_pids(tmp_path / 'store')
        with os.fdopen(r, 'rb') as f:
            out = f.read()
        assert proc.wait(10) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    seqs = [json.loads(line)['seq'] for line in out.decode().splitlines()]
    assert seqs[0] == 1 and seqs[-1] >= last and seqs == list(range(1, len(seqs) + 1))
    assert_running(gw)
    assert gw.stop() == 0


# ---- errors ------------------------------------------------------------------

def modbus_bus(device):
    return [{'name': 'rs485-1', 'device': str(device), 'protocol': 'modbus',
             'meters': [{'id': 'm-1', 'address': 1, 'profile': 'eastron-sdm120'}]}]


def write_config(tmp_path, cfg, name='meterhub.yaml'):
    path = tmp_path / name
    path.write_text(json.dumps(cfg, indent=2))
    return path


def test_missing_store_is_a_clear_error(tmp_path):
    """No store where the configuration says: exit 1 with the reason, and
    nothing is created, not the directory, not a file in an empty one."""
    store = tmp_path / 'store'
    path = write_config(tmp_path, gateway_config(tmp_path, 1883, modbus_bus('/dev/null')))
    for args in (('status', '-c', path), ('status', '-c', path, '--json'),
                 ('status', '--store', store), ('dump', '-c', path),
                 ('intervals', '-c', path, '--meter', 'm-1', '--from', '2026-12-01',
                  '--to', '2026-12-01')):
        r = ctl(*args)
        assert r.returncode == 1, (args, r)
        assert r.stdout == '', (args, r.stdout)
        assert r.stderr == 'meterhub-ctl %s: %s does not exist: no meterhub store there\n' % (
            args[0], store), (args, r.stderr)
        assert not store.exists()
    store.mkdir()
    for args in (('status', '-c', path), ('dump', '-c', path)):
        r = ctl(*args)
        assert r.returncode == 1, (args, r)
        assert r.stderr == ('meterhub-ctl %s: %s holds no meterhub store (no data.mdb); has '
                            'meterhub run with this store.path?\n' % (args[0], store)), r.stderr
        assert os.listdir(store) == []


def test_usage_errors_exit_2(tmp_path):
    path = write_config(tmp_path, gateway_config(tmp_path, 1883, modbus_bus('/dev/null')))
    cases = [
        (('status',), 'give -c FILE or --store DIR'),
        (('status', '-c', path, '--store', tmp_path), 'give -c FILE or --store DIR'),
        (('status', '-c', path, '--bogus'), "unknown option '--bogus'"),
        (('dump',), '-c FILE is required'),
        (('dump', '-c', path, '-c', path), '-c/--config given twice'),
        (('dump', '-c', path, '--type', 'event', '--type', 'reading'), '--type given twice'),
        (('dump', '-c', path, '--type', 'readings'), '--type: "readings" is not one of'),
        (('dump', '-c', path, '--from', '0'), '--from: "0" is not a seq'),
        (('dump', '-c', path, '--from', '9', '--to', '3'), '--from 9 is after --to 3'),
        (('intervals', '-c', path, '--meter', 'm-1', '--from', '2026-02-30', '--to',
          '2026-03-01'), '--from: "2026-02-30" is not a date'),
        (('intervals', '-c', path, '--meter', 'm-1', '--from', '2026-03-02', '--to',
          '2026-03-01'), '--from 2026-03-02 is after --to 2026-03-01'),
        (('intervals', '-c', path, '--from', '2026-03-01', '--to', '2026-03-01'),
         'are required'),
        (('check-config',), '-c FILE is required'),
    ]
    for args, text in cases:
        r = ctl(*args)
        assert r.returncode == 2, (args, r)
        assert text in r.stderr, (args, r.stderr)
        assert "Try 'meterhub-ctl %s --help'" % args[0] in r.stderr, r.stderr
    for command in ('status', 'dump', 'intervals', 'check-config'):
        r = ctl(command, '--help')
        assert r.returncode == 0 and r.stdout.startswith('usage: meterhub-ctl %s' % command), r


# ---- check-config ------------------------------------------------------------

def check_both(path):
    env = {k: v for k, v in os.environ.items() if k != 'JOURNAL_STREAM'}
    daemon = subprocess.run([meterhub_binary(), '--check-config', '-c', str(path)],
                            capture_output=True, text=True, timeout=30, env=env)
    tool = ctl('check-config', '-c', path)
    return daemon, tool


def test_check_config_says_what_meterhub_says(tmp_path):
    """A valid configuration whose device and store do not exist yet, one
    with errors, and a file that is not one: the same exit status, the
    same lines (but for the daemon's "nothing was started")."""
    device = tmp_path / 'ttyUSB7'
    cfg = gateway_config(tmp_path, 1883, modbus_bus(device))
    cfg['store'] = {'path': str(tmp_path / 'data' / 'store')}
    good = write_config(tmp_path, cfg)
    daemon, tool = check_both(good)
    assert daemon.returncode == tool.returncode == 0, (daemon, tool)
    assert tool.stdout == daemon.stdout, (tool.stdout, daemon.stdout)
    assert 'configuration is valid: 1 buses, 1 meters' in tool.stdout
    assert tool.stderr == daemon.stderr and tool.stderr.count('warning: ') == 2, tool.stderr

    cfg['buses'][0]['baud'] = 14400
    cfg['buses'][0]['meters'][0]['profile'] = 'no-such-profile'
    cfg['mqtt']['colour'] = 'blue'
    bad = write_config(tmp_path, cfg, 'bad.yaml')
    daemon, tool = check_both(bad)
    assert daemon.returncode == tool.returncode == 1, (daemon, tool)
    assert tool.stdout == daemon.stdout == ''
    d_lines, t_lines = daemon.stderr.splitlines(), tool.stderr.splitlines()
    assert len(t_lines) >= 4 and t_lines[:-1] == d_lines[:-1], (t_lines, d_lines)
    assert t_lines[-1] == '%s: configuration not valid' % bad, t_lines[-1]
    assert d_lines[-1].startswith(t_lines[-1]), d_lines[-1]

    daemon, tool = check_both(tmp_path)
    assert daemon.returncode == tool.returncode == 1
    assert tool.stderr == daemon.stderr == \
        '%s: cannot read the configuration: Is a directory\n' % tmp_path
