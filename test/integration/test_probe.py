# SPDX-License-Identifier: MIT
"""Commissioning: `meterhub --probe` reads every meter once with the
daemon's reader and prints what each said, with no broker and no store; a
port the running daemon holds is named as such while the other buses are
still probed. Logging: -v SUBSYS turns on debug for one subsystem (with
bus, dlt645 and modbus: every frame in hex), --log-level chooses the rest."""

import json
import os
import re
import socket
import subprocess

import pytest

from conftest import free_port, gateway_config, meterhub_binary, typed, wait_until

# A Modbus profile with a float, a scaled integer, a register pair split
# from the others (two frames) and a discrete input (a bit reply).
PROFILE = {'points': [
    {'name': 'energy_import_kwh', 'table': 'holding', 'address': 0, 'type': 'float32'},
    {'name': 'voltage_a_v', 'table': 'holding', 'address': 2, 'type': 'u16', 'scale': 0.1},
    {'name': 'power_kw', 'table': 'input', 'address': 16, 'type': 's32', 'scale': 0.001},
    {'name': 'relay_open', 'table': 'discrete', 'address': 3},
]}


def modbus_slave(energy, volts, watts, relay):
    return {'typed': [typed('holding', 0, 'float32', energy),
                      typed('holding', 2, 'u16', round(volts * 10)),
                      typed('input', 16, 's32', watts)],
            'discrete': {'0': 0, '1': 1, '2': 0, '3': relay}}


def dlt645_meter(address, **kw):
    m = {'address': address, 'phases': 1, 'load_kw': 0,
         'import_kwh': {'t1': 10.11, 't2': 20.22, 't3': 30.33, 't4': 40.44},
         'export_kwh': 5.55, 'voltage_v': 220.7, 'power_factor': 0.955, 'frequency_hz': 49.98}
    m.update(kw)
    return m


def modbus_bus(device, meters):
    return {'name': 'rs485-mb', 'device': device, 'protocol': 'modbus', 'timeout': '300ms',
            'meters': meters}


def dlt645_bus(device, meters):
    return {'name': 'rs485-645', 'device': device, 'baud': 2400, 'parity': 'even',
            'protocol': 'dlt645', 'timeout': '300ms', 'meters': meters}


def closed_port():
    port = free_port()
    with socket.socket() as s:
        assert s.connect_ex(('127.0.0.1', port)) != 0
    return port


def write_config(tmp_path, buses, name='meterhub.yaml', **extra):
    cfg = gateway_config(tmp_path, closed_port(), buses, profiles={'probe-meter': PROFILE},
                         **extra)
    path = tmp_path / name
    path.write_text(json.dumps(cfg, indent=2))  # JSON is YAML
    return path, cfg


def run(*args, timeout=30):
    env = {k: v for k, v in os.environ.items() if k != 'JOURNAL_STREAM'}
    return subprocess.run([meterhub_binary()] + list(args), capture_output=True, text=True,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL)


ROW = re.compile(r'^(\S+) +(\S+) +(\S+) +(good|timeout|error) +(\d+) +(\S+) +(.+)$')
SUMMARY = re.compile(r'^(\d+) meters: (\d+) good, (\d+) timeout, (\d+) error$')


def table(stdout):
    """The probe's output: {meter: {'bus', 'address', 'quality', 'ms', 'values', 'error'}}
    and the summary's four numbers. Every line must be a row or the summary."""
    lines = stdout.splitlines()
    assert lines, 'nothing printed'
    summary = SUMMARY.match(lines[-1])
    assert summary, lines[-1]
    meters = {}
    for line in lines[:-1]:
        m = ROW.match(line)
        assert m, 'not a table line: %r' % line
        meter, bus, address, quality, ms, point, value = m.groups()
        got = meters.setdefault(meter, {'bus': bus, 'address': address, 'quality': quality,
                                        'ms': int(ms), 'values': {}, 'error': None})
        assert (got['bus'], got['address'], got['quality']) == (bus, address, quality), line
        if point == '-':
            got['error'] = value
        else:
            got['values'][point] = json.loads(value)  # as published: a JSON number
    return meters, tuple(int(n) for n in summary.groups())


def sim_values(sim, address):
    """Everything the simulated DL/T 645 meter @address said, from its own log."""
    values = {}
    for f in sim.frames():
        if f.get('dir') == 'tx' and f.get('addr') == address and f.get('values'):
            values.update(f['values'])
    return values


SINGLE_NAMES = {'energy_import_kwh', 'energy_import_t1_kwh', 'energy_import_t2_kwh',
                'energy_import_t3_kwh', 'energy_import_t4_kwh', 'energy_export_kwh',
                'voltage_a_v', 'current_a_a', 'power_kw', 'power_factor', 'frequency_hz'}


@pytest.fixture
def two_buses(modbus_sim, dlt645_sim, tmp_path):
    """A Modbus bus with two meters and a silent third, a DL/T 645 bus with two meters."""
    mb = modbus_sim('mb', {'1': modbus_slave(1234.56, 230.1, -2500, 1),
                           '2': modbus_slave(7.25, 229.8, 1500, 0)})
    dl = dlt645_sim('dl', {'meters': [dlt645_meter('000000000001'),
                                      dlt645_meter('000000000002', import_kwh=123456.78)]})
    path, cfg = write_config(tmp_path, [
        modbus_bus(mb.gateway_end, [
            {'id': 'mb-1', 'address': 1, 'profile': 'probe-meter'},
            {'id': 'mb-2', 'address': 2, 'profile': 'probe-meter'},
            {'id': 'mb-silent', 'address': 3, 'profile': 'probe-meter'}]),
        dlt645_bus(dl.gateway_end, [
            {'id': 'dl-1', 'address': '000000000001', 'profile': 'dlt645-single-phase'},
            {'id': 'dl-2', 'address': '000000000002', 'profile': 'dlt645-single-phase'}])])
    return mb, dl, path, cfg


def test_probe_prints_what_the_meters_serve(two_buses, tmp_path):
    mb, dl, path, cfg = two_buses
    r = run('--probe', '-c', str(path))
    assert r.returncode == 1, r  # the silent meter
    meters, summary = table(r.stdout)
    assert summary == (5, 4, 1, 0), r.stdout
    assert list(meters) == ['mb-1', 'mb-2', 'mb-silent', 'dl-1', 'dl-2'], r.stdout

    for mid, energy, volts, kw, relay in (('mb-1', 1234.56, 230.1, -2.5, 1),
                                          ('mb-2', 7.25, 229.8, 1.5, 0)):
        got = meters[mid]
        assert (got['bus'], got['quality'], got['error']) == ('rs485-mb', 'good', None), got
        assert got['address'] == mid[-1]
        assert got['values'] == {
            # A float32 register, published at the precision it has.
            'energy_import_kwh': pytest.approx(energy, rel=1e-7),
            'voltage_a_v': pytest.approx(volts, abs=1e-9),
            'power_kw': pytest.approx(kw, abs=1e-9),
            'relay_open': relay}, got

    silent = meters['mb-silent']
    assert silent['quality'] == 'timeout', silent
    assert silent['error'] == 'no reply within 300 ms', silent
    assert silent['values'] == {}
    assert 300 <= silent['ms'] < 1500, silent

    for mid, address in (('dl-1', '000000000001'), ('dl-2', '000000000002')):
        got = meters[mid]
        assert (got['bus'], got['address'], got['quality']) == ('rs485-645', address, 'good')
        assert set(got['values']) == SINGLE_NAMES, got
        said = sim_values(dl, address)
        for name, value in got['values'].items():
            assert value == pytest.approx(said[name], abs=1e-9), (mid, name, said)
    # And against the simulator's configuration, independent of its log.
    assert meters['dl-1']['values']['energy_import_t3_kwh'] == 30.33
    assert meters['dl-1']['values']['voltage_a_v'] == 220.7
    assert meters['dl-2']['values']['energy_import_kwh'] == 123456.78

    # Commissioning touches no store: the directory is not even made.
    assert not os.path.exists(cfg['store']['path'])
    # Nothing else goes to stdout: the log (stderr) says nothing at the default level.
    assert 'error' not in r.stderr, r.stderr


def test_probe_of_all_good_meters_exits_0(two_buses):
    mb, dl, path, cfg = two_buses
    r = run('--probe', '-c', str(path), '--meter', 'dl-2')
    assert r.returncode == 0, r
    meters, summary = table(r.stdout)
    assert summary == (1, 1, 0, 0), r.stdout
    assert list(meters) == ['dl-2'], r.stdout
    assert meters['dl-2']['values']['energy_import_kwh'] == 123456.78
    # Only that meter was asked; the Modbus bus was not even opened.
    assert {f['addr'] for f in dl.frames() if f['dir'] == 'rx'} == {'000000000002'}
    assert mb.requests() == []

    r = run('--probe', '-c', str(path), '--meter', 'mb-silent')
    assert r.returncode == 1, r
    meters, summary = table(r.stdout)
    assert summary == (1, 0, 1, 0), r.stdout
    assert [q['slave'] for q in mb.requests()] == [3]


def test_unknown_meter_and_bad_config_exit_2(two_buses, tmp_path):
    mb, dl, path, cfg = two_buses
    r = run('--probe', '-c', str(path), '--meter', 'm-9999')
    assert r.returncode == 2, r
    assert r.stdout == ''
    assert 'meterhub: --meter: no meter "m-9999" in %s' % path in r.stderr, r.stderr
    assert mb.requests() == [] and dl.frames() == []

    bad = tmp_path / 'bad.yaml'
    cfg['buses'][0]['meters'][0]['profile'] = 'no-such-profile'
    bad.write_text(json.dumps(cfg))
    r = run('--probe', '-c', str(bad))
    assert r.returncode == 2, r
    assert r.stdout == ''
    assert 'no-such-profile' in r.stderr, r.stderr

    r = run('--meter', 'mb-1', '-c', str(path))
    assert r.returncode == 2, r
    assert 'meterhub: --meter: is an option of --probe' in r.stderr, r.stderr
    assert not os.path.exists(cfg['store']['path'])


def test_a_port_the_daemon_holds_is_named_and_the_other_bus_still_probed(
        modbus_sim, dlt645_sim, procs, tmp_path):
    mb = modbus_sim('mb', {'1': modbus_slave(1.5, 230.0, 0, 0)})
    dl = dlt645_sim('dl', {'meters': [dlt645_meter('000000000001')]})
    mb_bus = modbus_bus(mb.gateway_end, [{'id': 'mb-1', 'address': 1, 'profile': 'probe-meter'}])
    dl_bus = dlt645_bus(dl.gateway_end, [
        {'id': 'dl-1', 'address': '000000000001', 'profile': 'dlt645-single-phase'}])
    # The daemon runs on the Modbus bus (with no broker: it reads all the same).
    daemon_path, daemon_cfg = write_config(tmp_path, [mb_bus], name='daemon.yaml')
    daemon = procs.start([meterhub_binary(), '-c', str(daemon_path)], 'daemon')
    wait_until(lambda: mb.requests(), 15, what='the daemon reading its bus')

    path, cfg = write_config(tmp_path, [mb_bus, dl_bus])
    cfg['store']['path'] = str(tmp_path / 'probe-store')
    path.write_text(json.dumps(cfg))
    r = run('--probe', '-c', str(path))
    assert r.returncode == 1, r
    meters, summary = table(r.stdout)
    assert summary == (2, 1, 0, 1), r.stdout
    assert meters['mb-1']['quality'] == 'error'
    assert meters['mb-1']['error'] == 'port %s unavailable: in use by pid %d (meterhub)' % (
        mb.gateway_end, daemon.pid), r.stdout
    assert meters['dl-1']['quality'] == 'good', r.stdout
    assert meters['dl-1']['values']['voltage_a_v'] == 220.7
    assert daemon.poll() is None
    assert not os.path.exists(cfg['store']['path'])


# ---- logging -------------------------------------------------------------------

FRAME = re.compile(r'^\S+ debug \[(DLT645|MODBUS)\] (\S+): (tx|rx) (\d+) bytes'
                   r'(?:: ([0-9A-F ]+?))?(?: \((.*)\))?$')


def frames(stderr, device=None):
    """The frame lines of a log: (subsystem, direction, bytes as hex, note)."""
    out = []
    for line in stderr.splitlines():
        m = FRAME.match(line)
        if m and (device is None or m.group(2) == device):
            sub, _, direction, n, hexs, note = m.groups()
            hexs = (hexs or '').replace(' ', '')
            assert len(hexs) == 2 * int(n), line
            out.append((sub, direction, hexs, note))
    return out


def test_v_bus_logs_every_frame_as_the_simulators_saw_it(two_buses):
    mb, dl, path, cfg = two_buses
    r = run('--probe', '-c', str(path), '-v', 'bus')
    assert r.returncode == 1, r
    table(r.stdout)  # the log stays on stderr

    # DL/T 645: each request as sent (with its FE preamble) is what the
    # simulator received; each reply it sent is what came back.
    got = frames(r.stderr, dl.gateway_end)
    sim = [f for f in dl.frames() if f['dir'] in ('rx', 'tx')]
    assert got and len(got) == len(sim), (got, sim)
    for (sub, direction, hexs, note), f in zip(got, sim):
        assert sub == 'DLT645'
        if direction == 'tx':
            assert f['dir'] == 'rx' and hexs.lstrip('F').endswith(f['hex']) and \
                hexs.startswith('FEFEFEFE68'), (hexs, f)
        else:
            assert f['dir'] == 'tx' and hexs == f['hex'] and note is None, (hexs, f)

    # Modbus: a request and its reply per exchange, byte for byte; the
    # silent meter's request has no reply.
    got = frames(r.stderr, mb.gateway_end)
    pairs = list(zip(got[::2], got[1::2]))
    requests = mb.requests()
    assert len(got) == 2 * len(requests), (got, requests)
    for (tx, rx), q in zip(pairs, requests):
        assert tx == ('MODBUS', 'tx', q['hex'], None), (tx, q)
        if q['answered']:
            assert rx == ('MODBUS', 'rx', q['reply'], None), (rx, q)
        else:
            assert rx == ('MODBUS', 'rx', '', 'no reply'), rx
    assert {q['fc'] for q in requests} == {2, 3, 4}

    # Without -v nothing of it is logged.
    r = run('--probe', '-c', str(path))
    assert frames(r.stderr) == [], r.stderr


def test_v_subsystem_is_only_that_subsystem(two_buses):
    mb, dl, path, cfg = two_buses
    r = run('--probe', '-c', str(path), '-v', 'dlt645')
    got = frames(r.stderr)
    assert got and {f[0] for f in got} == {'DLT645'}, r.stderr
    assert '[MODBUS]' not in r.stderr and '[BUS]' not in r.stderr, r.stderr

    # Repeatable, and in the attached forms too.
    r = run('--probe', '-c', str(path), '-vmodbus', '--verbose=dlt645')
    assert {f[0] for f in frames(r.stderr)} == {'DLT645', 'MODBUS'}, r.stderr

    r = run('--probe', '-c', str(path), '-v', 'loud')
    assert r.returncode == 2, r
    assert ('meterhub: -v: "loud" is not one of main, bus, dlt645, modbus, mqtt, store, cmd, '
            'config, sched, clock or all') in r.stderr, r.stderr


def test_log_level_err_hides_notices(dlt645_sim, tmp_path):
    # A meter without block identifiers: the reader falls back to single
    # identifiers and says so at notice level.
    dl = dlt645_sim('dl', {'meters': [
        dlt645_meter('000000000001', fault={'err': 2, 'di': ['0001FF00']})]})
    path, _ = write_config(tmp_path, [dlt645_bus(dl.gateway_end, [
        {'id': 'dl-1', 'address': '000000000001', 'profile': 'dlt645-single-phase'}])])
    notice = 'meter dl-1 has no block identifiers'

    r = run('--probe', '-c', str(path))
    assert r.returncode == 0, r
    assert re.search(r'notice \[DLT645\] rs485-645: ' + notice, r.stderr), r.stderr
    meters, _ = table(r.stdout)
    assert meters['dl-1']['values']['energy_import_t3_kwh'] == 30.33

    r = run('--probe', '-c', str(path), '--log-level', 'err')
    assert r.returncode == 0, r
    assert r.stderr == '', r.stderr
    meters, _ = table(r.stdout)
    assert meters['dl-1']['values']['energy_import_t3_kwh'] == 30.33

    # -v bus shows the frames at level err, yet not the DL/T 645 notice.
    r = run('--probe', '-c', str(path), '--log-level', 'err', '-v', 'bus')
    assert r.returncode == 0, r
    assert frames(r.stderr), r.stderr
    assert notice not in r.stderr, r.stderr
