# SPDX-License-Identifier: MIT
"""Store-and-forward: nothing is lost through broker outages, dead links,
broker and daemon crashes, and a full store drops what it says it drops. The
proof is the seq: every seq from the first to the last arrives, in order of
first arrival, and a seq always means the same record.

What a broker acknowledged is the broker's to keep: meterhub deletes a record
on its PUBACK. So a test may only count on what mosquitto guarantees. The
subscriber stays connected to a broker that stays up, or the broker stops
cleanly (it saves its state as it exits); where the link has to die in the
middle of something, a Proxy between daemon and broker dies instead. No test
waits a fixed time and then counts: each waits for what it needs to see.
"""

import datetime
import hashlib
import random
import re
import signal
import subprocess
import time

import pytest

from conftest import check_complete, gateway_config, meterhub_binary, typed, wait_until

# No energy register: these tests are about the outbox, and readings alone
# make the record stream they count (intervals go the same way; see
# test_intervals.py).
PROFILE = {'points': [
    {'name': 'power_kw', 'table': 'holding', 'address': 0, 'type': 'float32'},
    {'name': 'voltage_a_v', 'table': 'holding', 'address': 2, 'type': 'u16', 'scale': 0.1}]}


def slave():
    return {'typed': [typed('holding', 0, 'float32', 1234.5),
                      typed('holding', 2, 'u16', 2301)]}


def simulated_bus(tmp_path, port, modbus_sim, n_meters=4, interval='1s', **extra):
    """(config of a daemon reading @n_meters simulated meters, the simulator)"""
    sim = modbus_sim('bus1', {str(i): slave() for i in range(1, n_meters + 1)})
    cfg = gateway_config(tmp_path, port, [{
        'name': 'rs485-1', 'device': sim.gateway_end, 'protocol': 'modbus',
        'timeout': '200ms',
        'meters': [{'id': 'm-%d' % i, 'address': i, 'profile': 'p'}
                   for i in range(1, n_meters + 1)]}],
        interval=interval, profiles={'p': PROFILE}, **extra)
    return cfg, sim


def gateway_on_sim(tmp_path, port, modbus_sim, n_meters=4, interval='1s', **extra):
    return simulated_bus(tmp_path, port, modbus_sim, n_meters, interval, **extra)[0]


def read_at(reading):
    """When the meter answered, in seconds since the epoch (the daemon's wall clock)."""
    return datetime.datetime.fromisoformat(reading['read_at'].replace('Z', '+00:00')).timestamp()


def readings(messages):
    return [p for t, p, _ in messages if '/reading/' in t]


def seqs(messages):
    return {p['seq'] for _, p, _ in messages if isinstance(p, dict) and 'seq' in p}


def wait_past(sub, t, timeout, what='a reading taken after the link came back'):
    """Wait for a reading the daemon took after wall-clock time @t. It publishes
    oldest first, and the broker forwards in order: when that reading is in,
    everything stored before @t has been sent, and the ones not lost are in."""
    wait_until(lambda: any(read_at(r) > t for r in readings(sub.snapshot())), timeout,
               what=what)


def wait_for_requests(sim, n, since):
    """Wait until the simulated meters answered @n more requests after time @since."""
    wait_until(lambda: sum(1 for r in sim.requests() if r['t'] > since and r['answered']) >= n,
               30, what='%d requests to the meters' % n)


@pytest.mark.slow
def test_broker_down_for_a_minute_loses_nothing(persistent_broker, modbus_sim, gateway,
                                                subscriber_factory, tmp_path):
    broker = persistent_broker
    cfg = gateway_on_sim(tmp_path, broker.port, modbus_sim)
    # A persistent session: the broker queues what arrives while this subscriber
    # reconnects, and, stopped cleanly, saves that queue as it exits.
    # Every topic: events (gateway_started, broker_lost, ...) take seqs too.
    sub = subscriber_factory(broker.port, 'meterhub/gw-test/#', 'persistent-sub',
                             persistent=True)
    gw = gateway(cfg).start()
    wait_until(lambda: len(readings(sub.snapshot())) >= 8, 15, what='readings before the outage')
    broker.stop()
    down = time.time()
    # A minute: the daemon tries again and again (every 2 s at most, the
    # failure logged once a minute). Nothing below counts on when it next tries: wait_past allows
    # a whole delay and more.
    time.sleep(62)
    up = time.time()
    broker.start()
    wait_past(sub, up, 60)
    assert gw.stop() == 0
    check_complete(sub.snapshot())
    got = {p['seq']: p for p in readings(sub.snapshot())}
    assert read_at(got[min(got)]) < down and read_at(got[max(got)]) > up
    during = {p['meter'] for p in got.values() if down < read_at(p) < up}
    assert during == {'m-1', 'm-2', 'm-3', 'm-4'}, 'readings stored during the outage'


@pytest.mark.slow
def test_daemon_sigkilled_ten_times_loses_nothing(broker, modbus_sim, gateway,
                                                  subscriber_factory, tmp_path):
    cfg = gateway_on_sim(tmp_path, broker.port, modbus_sim)
    sub = subscriber_factory(broker.port, 'meterhub/gw-test/#')
    rng = random.Random(645)
    next_seq = []
    for i in range(10):
        gw = gateway(cfg, name='meterhub-%d' % i).start()
        # Once the store is open, the daemon is reading, storing, publishing or
        # deleting acknowledged records: kill it at any moment of that.
        wait_until(lambda: 'next seq' in gw.log(), 10, what='meterhub-%d to open its store' % i)
        if i == 0:
            # The proof then covers the records of the killed daemons.
            wait_until(lambda: readings(sub.snapshot()), 15, what='a first reading')
        time.sleep(rng.uniform(0, 2.5))
        gw.proc.kill()
        gw.proc.wait()
        next_seq.append(int(re.search(r'next seq (\d+)', gw.log()).group(1)))
    start = time.time()
    gw = gateway(cfg, name='meterhub-final').start()
    wait_past(sub, start, 30, what='a reading of the last daemon')
    assert gw.stop() == 0
    received = check_complete(sub.snapshot())
    # Each daemon went on counting where the last one had stopped, so a seq
    # published by a killed daemon is never given to another record.
    final = int(re.search(r'next seq (\d+)', gw.log()).group(1))
    assert next_seq == sorted(next_seq) and next_seq[-1] <= final
    assert received[0] < final <= received[-1]
    for p in readings(sub.snapshot()):
        assert (p['seq'] >= final) == (read_at(p) > start), p


def test_sigkill_right_after_a_publish_loses_nothing(broker, proxy_factory, modbus_sim, gateway,
                                                     subscriber_factory, tmp_path):
    """Readings wait for a group commit (store.commit_window), and a record is
    published only once its commit is on disk. The daemon is killed the
    moment the broker has delivered a reading whose PUBACK the proxy holds
    back, while later readings wait for their window (a silent meter keeps
    the sweep from ending). That reading is still stored and is sent again
    after the restart; what the kill took was never published, so no seq
    that anyone saw is given to another record, and none is missing."""
    proxy = proxy_factory(broker.port)
    slaves = {str(i): slave() for i in range(1, 5)}
    slaves['5'] = dict(slave(), fault={'kind': 'silent'})
    sim = modbus_sim('bus1', slaves)
    cfg = gateway_config(tmp_path, proxy.port, [{
        'name': 'rs485-1', 'device': sim.gateway_end, 'protocol': 'modbus',
        'timeout': '900ms',
        'meters': [{'id': 'm-%d' % i, 'address': i, 'profile': 'p'} for i in range(1, 6)]}],
        profiles={'p': PROFILE})
    cfg['store']['commit_window'] = '2s'
    sub = subscriber_factory(broker.port, 'meterhub/gw-test/#')
    proxy.start(hold_after=6)
    gw = gateway(cfg).start()
    wait_until(lambda: proxy.state()['holding'], 30, what='6 readings through to the broker')
    gw.proc.kill()
    gw.proc.wait()
    let_through = [r['seq'] for r in proxy.state()['forwarded']]
    wait_until(lambda: set(let_through) <= seqs(sub.snapshot()), 15,
               what='the subscriber to have what the broker got')
    proxy.kill()
    proxy.start()
    restart = time.time()
    gw = gateway(cfg, name='meterhub-2').start()
    wait_past(sub, restart, 30, what='a reading of the restarted daemon')
    assert gw.stop() == 0
    messages = sub.snapshot()
    check_complete(messages)
    # Delivered, never acknowledged to the daemon: still stored, so sent again.
    assert sum(1 for _, p, _ in messages
               if isinstance(p, dict) and p.get('seq') == let_through[-1]) >= 2, let_through


def interrupted_drain(crash, broker, proxy_factory, modbus_sim, gateway,
                      subscriber_factory, tmp_path):
    """Build a backlog while the link is down, let 8 of it through to the
    broker with window 2, then, with the 8th delivered and its PUBACK held by
    the proxy, @crash() the link. The subscriber talks to the broker directly.
    The link is down from the start, so this is the one connection that dies
    with publishes in flight."""
    proxy = proxy_factory(broker.port)
    cfg, sim = simulated_bus(tmp_path, proxy.port, modbus_sim, n_meters=8)
    cfg['mqtt']['window'] = 2  # a slow drain, so there is a middle to stop it in
    sub = subscriber_factory(broker.port, 'meterhub/gw-test/#')
    proxy.kill()
    down = time.time()
    gw = gateway(cfg).start()
    wait_for_requests(sim, 32, down)  # 4 rounds of 8 meters stored
    up = time.time()
    proxy.start(hold_after=8)
    wait_until(lambda: proxy.state()['holding'], 30, what='8 records of the backlog through')
    let_through = [r['seq'] for r in proxy.state()['forwarded']]
    wait_until(lambda: set(let_through) <= seqs(sub.snapshot()), 15,
               what='the subscriber to have what the broker acknowledged')
    # Readings only: the events of the outage (broker_lost, ...) are not read_at-stamped.
    before_crash = {p['seq'] for p in readings(sub.snapshot())}
    crash(proxy)
    restart = time.time()
    wait_past(sub, restart, 60)
    assert gw.stop() == 0

    messages = sub.snapshot()
    check_complete(messages)
    backlog = {p['seq'] for p in readings(messages) if read_at(p) < up}
    assert before_crash and before_crash < backlog, 'the drain was stopped in its middle'
    # The last one let through was delivered but never acknowledged to the
    # daemon: it must have been sent again.
    assert sum(1 for _, p, _ in messages
               if isinstance(p, dict) and p.get('seq') == let_through[-1]) >= 2
    return messages


def test_proxy_killed_mid_drain_loses_nothing(broker, proxy_factory, modbus_sim, gateway,
                                              subscriber_factory, tmp_path):
    def crash(proxy):
        proxy.kill()
        proxy.start()
    interrupted_drain(crash, broker, proxy_factory, modbus_sim, gateway, subscriber_factory,
                      tmp_path)


def test_broker_sigkilled_mid_drain_loses_nothing(broker, proxy_factory, modbus_sim, gateway,
                                                  subscriber_factory, tmp_path):
    """A broker that dies loses what it acknowledged but did not deliver or
    save: no gateway can help that. Here the subscriber already has everything
    the broker acknowledged when it is killed, and the daemon cannot reach the
    new broker before the subscriber is back, so no gap is excused. The
    broker's persistence plays no part."""
    subs = []

    def crash(proxy):
        broker.stop(signal.SIGKILL)
        proxy.kill()
        sub_count = subs[0].subscriptions()
        broker.start()
        wait_until(lambda: subs[0].subscriptions() > sub_count, 15,
                   what='the subscriber back on the new broker')
        proxy.start()

    def factory(*args, **kw):
        s = subscriber_factory(*args, **kw)
        subs.append(s)
        return s
    interrupted_drain(crash, broker, proxy_factory, modbus_sim, gateway, factory, tmp_path)


DROP_LOG = re.compile(r'store full: dropped (\d+) records \(seq (\d+)-(\d+)\), (\d+) lost')


def drops_logged(log):
    """[(records dropped, first seq, last seq, lost)] from the daemon's log, in order."""
    return [tuple(int(x) for x in m.groups()) for m in DROP_LOG.finditer(log)]


def drop_events(messages):
    """The store_dropped events, each once, in order of first arrival."""
    out = {}
    for t, p, _ in messages:
        if t.endswith('/event') and isinstance(p, dict) and p.get('type') == 'store_dropped':
            out.setdefault(p['seq'], p)
    return list(out.values())


@pytest.mark.slow
def test_full_store_drops_oldest_readings_and_says_so(broker, proxy_factory, modbus_sim,
                                                      gateway, subscriber_factory, tmp_path):
    proxy = proxy_factory(broker.port)
    cfg = gateway_on_sim(tmp_path, proxy.port, modbus_sim, n_meters=16,
                         health={'interval': '1s'})
    cfg['store']['max_bytes'] = '64KiB'
    sub = subscriber_factory(broker.port, 'meterhub/gw-test/#')
    proxy.kill()  # the link is down from the start: everything is stored
    gw = gateway(cfg).start()
    # 16 readings a second of ~230 bytes: 64 KiB is full after about 15 s.
    wait_until(lambda: sum(d[0] for d in drops_logged(gw.log())) >= 20, 120,
               what='20 records dropped')
    outage_drops = drops_logged(gw.log())
    up = time.time()
    proxy.start()
    wait_past(sub, up, 60)
    # The drain has caught up, so the store drops no more; the events about
    # the last drops may still be on their way.
    wait_until(lambda: len(drop_events(sub.snapshot())) >= len(drops_logged(gw.log())), 15,
               what='an event for every drop')
    wait_until(lambda: [p for t, p, _ in sub.snapshot() if t.endswith('/health') and
                        p['store']['dropped'] == sum(d[0] for d in drops_logged(gw.log()))],
               15, what='a health report counting every drop')
    assert gw.stop() == 0

    logged = drops_logged(gw.log())
    messages = sub.snapshot()
    events = drop_events(messages)
    # Never silent: one event for each drop, saying what the log says.
    assert [(sum(e['dropped'].values()), e['first_seq'], e['last_seq'], e['lost'])
            for e in events] == logged
    for e in events:
        assert set(e['dropped']) == {'reading'}, e  # only readings were dropped
        assert e['first_seq'] <= e['last_seq'] and e['lost'] == 0, e
    # Oldest first: what was still stored when the link came back is newer
    # than everything dropped before.
    assert min(p['seq'] for p in readings(messages)) > max(d[2] for d in outage_drops)
    # And apart from what was dropped, nothing is missing.
    dropped = set()
    for _, first, last, _ in logged:
        dropped.update(range(first, last + 1))
    check_complete(messages, excused=dropped)


def test_publish_queued_when_the_link_dies_does_not_overtake_the_rewind(
        broker, proxy_factory, modbus_sim, gateway, subscriber_factory, tmp_path):
    """paho's in-flight limit is the window (32), and the retained status
    takes one place of it, so of the 32 records the daemon hands over after
    connecting the last waits in paho's queue. The link then drops every
    publish and dies. paho would keep that queue across the clean-session
    reconnect and send the record first, before the daemon's rewind to the
    oldest unacknowledged one (seq 32 or so before seq 1); the daemon starts
    every connection with a fresh client, so the rewind comes first."""
    proxy = proxy_factory(broker.port)
    cfg, sim = simulated_bus(tmp_path, proxy.port, modbus_sim, n_meters=16)
    sub = subscriber_factory(broker.port, 'meterhub/gw-test/#')
    proxy.kill()
    down = time.time()
    gw = gateway(cfg).start()
    wait_for_requests(sim, 48, down)  # a backlog longer than the window
    proxy.start(drop_publishes=True)
    wait_until(lambda: proxy.state()['dropped'] >= 32, 30,
               what='the status and 31 records sent into the void')
    proxy.kill()
    proxy.start()
    up = time.time()
    wait_past(sub, up, 60)
    assert gw.stop() == 0
    check_complete(sub.snapshot())


def test_health_reports_buses_backlog_and_store(broker, modbus_sim, gateway,
                                                subscriber_factory, tmp_path):
    cfg = gateway_on_sim(tmp_path, broker.port, modbus_sim, health={'interval': '1s'})
    sub = subscriber_factory(broker.port, 'meterhub/gw-test/health')
    gw = gateway(cfg).start()
    wait_until(lambda: any(p['buses'][0]['reads'] > 0 for _, p, _ in sub.snapshot()), 15,
               what='a health report with reads')
    assert gw.stop() == 0
    h = [p for _, p, _ in sub.snapshot() if p['buses'][0]['reads'] > 0][-1]
    bus = h['buses'][0]
    assert bus['name'] == 'rs485-1' and bus['success_rate'] == 1.0
    assert bus['good'] == bus['reads'] and bus['latency_ms_max'] >= bus['latency_ms_avg']
    assert {'backlog', 'used_bytes', 'max_bytes', 'use', 'dropped'} <= set(h['store'])
    assert h['store']['max_bytes'] == 16 << 20
    assert h['mqtt']['connected'] is True
    late = subscriber_factory(broker.port, 'meterhub/gw-test/health', 'late')
    wait_until(lambda: late.snapshot(), 5, what='the retained health')
    assert late.snapshot()[0][2]  # retained


def run_bad_store(tmp_path, store_path):
    cfg = tmp_path / 'c.yaml'
    cfg.write_text('gateway: { id: gw, timezone: Asia/Shanghai }\n'
                   'store: { path: %s }\n'
                   'mqtt: { uri: "tcp://127.0.0.1:1" }\n'
                   'schedule: { interval: 1s }\n'
                   'buses: [ { name: b, device: /nonexistent, protocol: modbus,\n'
                   '           meters: [ { id: m, address: 1, profile: chint-dtsu666 } ] } ]\n'
                   % store_path)
    return subprocess.run([meterhub_binary(), '-c', str(cfg)], capture_output=True, text=True,
                          timeout=20)


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_garbage_store_file_is_refused_untouched(tmp_path):
    store = tmp_path / 'store'
    store.mkdir()
    data = store / 'data.mdb'
    data.write_bytes(bytes(random.Random(1).getrandbits(8) for _ in range(65536)))
    before = digest(data)
    res = run_bad_store(tmp_path, store)
    assert res.returncode == 2
    assert 'cannot open the store' in res.stderr
    assert digest(data) == before


def test_foreign_lmdb_is_refused_untouched(tmp_path):
    store = tmp_path / 'store'
    store.mkdir()
    dump = ('VERSION=3\nformat=bytevalue\ntype=btree\nHEADER=END\n'
            ' 6b6579\n 76616c7565\nDATA=END\n')
    subprocess.run(['mdb_load', '-f', '/dev/stdin', str(store)], input=dump, text=True,
                   check=True)
    before = digest(store / 'data.mdb')
    res = run_bad_store(tmp_path, store)
    assert res.returncode == 2
    assert 'not a meterhub store' in res.stderr
    assert digest(store / 'data.mdb') == before


def test_store_path_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / 'store'
    path.write_text('precious')
    res = run_bad_store(tmp_path, path)
    assert res.returncode == 2
    assert 'is not a directory' in res.stderr
    assert path.read_text() == 'precious'
