# SPDX-License-Identifier: MIT
"""Store-and-forward: nothing is lost through broker outages, broker and
daemon crashes, and a full store drops what it says it drops. The proof is
the seq: every seq from the first to the last arrives, in order of first
arrival, and a seq always means the same record."""

import hashlib
import random
import signal
import subprocess
import time

from conftest import gateway_config, meterhub_binary, typed, wait_until

PROFILE = {'points': [
    {'name': 'energy_import_kwh', 'table': 'holding', 'address': 0, 'type': 'float32'},
    {'name': 'voltage_a_v', 'table': 'holding', 'address': 2, 'type': 'u16', 'scale': 0.1}]}


def slave():
    return {'typed': [typed('holding', 0, 'float32', 1234.5),
                      typed('holding', 2, 'u16', 2301)]}


def gateway_on_sim(tmp_path, port, modbus_sim, n_meters=4, interval='1s', **extra):
    sim = modbus_sim('bus1', {str(i): slave() for i in range(1, n_meters + 1)})
    return gateway_config(tmp_path, port, [{
        'name': 'rs485-1', 'device': sim.gateway_end, 'protocol': 'modbus',
        'timeout': '200ms',
        'meters': [{'id': 'm-%d' % i, 'address': i, 'profile': 'p'}
                   for i in range(1, n_meters + 1)]}],
        interval=interval, profiles={'p': PROFILE}, **extra)


def check_complete(messages):
    """Every seq from the first to the last, first arrivals in order, duplicates identical."""
    first_seen = []
    by_seq = {}
    for topic, payload, _ in messages:
        if not isinstance(payload, dict) or 'seq' not in payload:
            continue
        seq = payload['seq']
        if seq in by_seq:
            assert by_seq[seq] == (topic, payload), 'seq %d reused for another record' % seq
            continue
        by_seq[seq] = (topic, payload)
        first_seen.append(seq)
    assert first_seen, 'nothing arrived'
    assert first_seen == sorted(first_seen), 'reordered'
    missing = set(range(first_seen[0], first_seen[-1] + 1)) - set(first_seen)
    assert not missing, 'gap: %s' % sorted(missing)[:20]
    return first_seen


def test_broker_down_for_a_minute_loses_nothing(persistent_broker, modbus_sim, gateway,
                                                subscriber_factory, tmp_path):
    broker = persistent_broker
    cfg = gateway_on_sim(tmp_path, broker.port, modbus_sim)
    sub = subscriber_factory(broker.port, 'meterhub/gw-test/reading/#', 'persistent-sub',
                             persistent=True)
    gw = gateway(cfg).start()
    wait_until(lambda: len(sub.snapshot()) >= 8, 15, what='readings before the outage')
    broker.stop()
    down = time.monotonic()
    time.sleep(62)
    broker.start()
    last = None

    def drained():
        nonlocal last
        seqs = [p['seq'] for _, p, _ in sub.snapshot()]
        # Readings of the whole outage (62 s x 4 meters) and then fresh ones.
        return len(set(seqs)) >= 8 + 4 * 60 and seqs
    wait_until(drained, 60, what='the backlog of the outage')
    seqs = check_complete(sub.snapshot())
    ts = sorted({p['ts'] for _, p, _ in sub.snapshot()})
    assert len(ts) >= 60, 'readings of every second of the outage'
    assert time.monotonic() - down >= 60
    assert gw.stop() == 0
    assert seqs[-1] - seqs[0] + 1 == len(seqs)


def test_daemon_sigkilled_ten_times_loses_nothing(broker, modbus_sim, gateway,
                                                  subscriber_factory, tmp_path):
    cfg = gateway_on_sim(tmp_path, broker.port, modbus_sim)
    sub = subscriber_factory(broker.port, 'meterhub/gw-test/reading/#')
    rng = random.Random(645)
    for i in range(10):
        gw = gateway(cfg, name='meterhub-%d' % i).start()
        time.sleep(rng.uniform(0.3, 2.5))
        gw.proc.kill()
        gw.proc.wait()
    gw = gateway(cfg, name='meterhub-final').start()
    wait_until(lambda: len({p['seq'] for _, p, _ in sub.snapshot()}) >= 40, 20,
               what='readings after the last restart')
    time.sleep(2)
    assert gw.stop() == 0
    seqs = check_complete(sub.snapshot())
    assert len(seqs) >= 40
    # Every restart continued the counter: no seq was given to two records (checked above),
    # and the last run's new records come after everything earlier.
    log = (tmp_path / 'meterhub-final.log').read_text()
    assert 'next seq' in log


def test_broker_sigkilled_mid_drain_loses_nothing(persistent_broker, modbus_sim, gateway,
                                                  subscriber_factory, tmp_path):
    broker = persistent_broker
    cfg = gateway_on_sim(tmp_path, broker.port, modbus_sim, n_meters=8)
    cfg['mqtt']['window'] = 2  # a slow drain, so there is a middle to kill it in
    sub = subscriber_factory(broker.port, 'meterhub/gw-test/reading/#', 'persistent-sub',
                             persistent=True)
    gw = gateway(cfg).start()
    wait_until(lambda: len(sub.snapshot()) >= 8, 15, what='first readings')
    broker.stop()
    time.sleep(15)  # ~120 readings stored
    before = len(sub.snapshot())
    broker.start()
    wait_until(lambda: len(sub.snapshot()) >= before + 5, 20, what='the drain to start')
    broker.stop(signal.SIGKILL)
    time.sleep(2)
    broker.start()
    wait_until(lambda: len({p['seq'] for _, p, _ in sub.snapshot()}) >= 8 + 8 * 17, 60,
               what='the rest of the backlog')
    check_complete(sub.snapshot())
    assert gw.stop() == 0


def test_full_store_drops_oldest_readings_and_says_so(persistent_broker, modbus_sim, gateway,
                                                      subscriber_factory, tmp_path):
    broker = persistent_broker
    cfg = gateway_on_sim(tmp_path, broker.port, modbus_sim, n_meters=8)
    cfg['store']['max_bytes'] = '64KiB'
    # A persistent session: the broker keeps what arrives while this subscriber reconnects.
    sub = subscriber_factory(broker.port, 'meterhub/gw-test/#', 'persistent-sub',
                             persistent=True)
    gw = gateway(cfg).start()
    wait_until(lambda: sub.readings('meterhub/gw-test'), 10, what='a first reading')
    broker.stop()
    before = len(sub.snapshot())
    # 8 readings a second of ~230 bytes: 64 KiB is full after about 35 s.
    time.sleep(45)
    broker.start()

    def after_outage():
        # What is new since the outage (the broker may deliver earlier messages again).
        seen = {p.get('seq') for _, p, _ in sub.snapshot()[:before] if isinstance(p, dict)}
        return [m for m in sub.snapshot()[before:]
                if isinstance(m[1], dict) and m[1].get('seq') not in seen]

    def event():
        return [p for t, p, _ in after_outage() if t.endswith('/event') and
                p.get('type') == 'store_dropped']

    def readings():
        return [p for t, p, _ in after_outage() if '/reading/' in t]
    wait_until(event, 30, what='a store_dropped event')
    wait_until(lambda: len(readings()) >= 50, 30, what='the backlog')
    # The events about later drops come later in seq order: let the whole backlog arrive.
    time.sleep(3)
    assert gw.stop() == 0
    events = event()
    for ev in events:
        assert set(ev['dropped']) == {'reading'}, ev  # only readings were dropped
        assert ev['first_seq'] <= ev['last_seq'] and ev['lost'] == 0
    dropped_total = sum(e['dropped']['reading'] for e in events)
    assert dropped_total >= 20
    # Oldest first: every reading that survived the outage is newer than everything
    # dropped (the events about the drops survive among the dropped), and from the
    # newest drop on nothing is missing.
    newest_drop = max(e['last_seq'] for e in events)
    assert min(r['seq'] for r in readings()) > newest_drop
    check_complete([m for m in after_outage()
                    if isinstance(m[1], dict) and m[1].get('seq', 0) > newest_drop])
    health = [p for t, p, _ in after_outage() if t.endswith('/health')]
    if health:
        assert health[-1]['store']['dropped'] >= dropped_total


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
