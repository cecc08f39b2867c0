# SPDX-License-Identifier: MIT
"""The command line: a bad option is refused with the reason and exit 2
before anything starts, --log-level chooses what is logged, and
--check-config passes a configuration whose devices and store directory do
not exist yet, with a warning for each. The daemon keeps retrying a broker
it cannot reach, and exits 2 on a store it cannot open."""

import json
import os
import socket
import subprocess
import time

from conftest import free_port, gateway_config, meterhub_binary, wait_until

BAUDS = '300, 600, 1200, 2400, 4800, 9600, 19200, 38400, 57600 or 115200'


def run(*args, timeout=10):
    env = dict(os.environ)
    # Under journald lines carry "<N>" instead of a level name; the tests read names.
    env.pop('JOURNAL_STREAM', None)
    return subprocess.run([meterhub_binary()] + list(args), capture_output=True, text=True,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def write_config(tmp_path, cfg, name='meterhub.yaml'):
    path = tmp_path / name
    # JSON is YAML.
    path.write_text(json.dumps(cfg, indent=2))
    return path


def modbus_bus(device):
    return [{'name': 'rs485-1', 'device': str(device), 'protocol': 'modbus',
             'meters': [{'id': 'm-1', 'address': 1, 'profile': 'eastron-sdm120'}]}]


def closed_port():
    """A loopback port nobody listens on: connecting to it is refused at once."""
    port = free_port()
    with socket.socket() as s:
        assert s.connect_ex(('127.0.0.1', port)) != 0
    return port


# ---- options ---------------------------------------------------------------

def test_baud_that_is_not_a_number(tmp_path):
    # strtoul() made "abc" 0 and 0 meant "the default", so this read at 2400 baud.
    r = run('--discover', str(tmp_path / 'ttyUSB0'), '--baud', 'abc')
    assert r.returncode == 2, r
    assert 'meterhub: --baud: "abc" is not a whole number' in r.stderr, r.stderr
    # Refused before the device was tried.
    assert 'ttyUSB0' not in r.stderr, r.stderr


def test_baud_that_is_not_standard(tmp_path):
    r = run('--discover', str(tmp_path / 'ttyUSB0'), '--baud', '14400')
    assert r.returncode == 2, r
    assert '--baud: 14400 is not a standard baud rate; use one of %s' % BAUDS in r.stderr, \
        r.stderr
    assert 'ttyUSB0' not in r.stderr, r.stderr


def test_parity_says_what_is_allowed(tmp_path):
    r = run('--discover', str(tmp_path / 'ttyUSB0'), '--parity', 'mark')
    assert r.returncode == 2, r
    assert 'meterhub: --parity: "mark" is not one of none, even or odd' in r.stderr, r.stderr
    assert 'usage:' not in r.stderr, r.stderr


def test_log_level_must_be_known(tmp_path):
    path = write_config(tmp_path, gateway_config(tmp_path, 1883, modbus_bus('/dev/null')))
    r = run('--log-level', 'loud', '--check-config', '-c', str(path))
    assert r.returncode == 2, r
    assert ('meterhub: --log-level: "loud" is not one of err, warning, notice, info or debug'
            in r.stderr), r.stderr
    assert 'configuration is valid' not in r.stdout
    for level in ('err', 'error', 'warning', 'notice', 'info', 'debug'):
        r = run('--log-level', level, '--check-config', '-c', str(path))
        assert r.returncode == 0, (level, r)


def levels_logged(log):
    """The level names of the log lines ("2026-...Z error [BUS] ...")."""
    return {line.split()[1] for line in log.splitlines() if line[:1].isdigit()}


def test_log_level_chooses_what_is_logged(procs, tmp_path):
    """A gateway with no broker and no serial device logs an error (the
    device), warnings (the broker), a notice (started) and, every second,
    a debug line (health not published). Each level shows only what it
    should."""
    cfg = gateway_config(tmp_path, closed_port(), modbus_bus(tmp_path / 'ttyUSB0'),
                         health={'interval': '1s'})
    path = write_config(tmp_path, cfg)
    expected = {
        'err': {'error'},
        'warning': {'error', 'warning'},
        'info': {'error', 'warning', 'notice', 'info'},
        'debug': {'error', 'warning', 'notice', 'info', 'debug'},
    }
    for level, want in expected.items():
        gw = procs.start([meterhub_binary(), '--log-level', level, '-c', str(path)],
                         'meterhub-' + level, env={k: v for k, v in os.environ.items()
                                                   if k != 'JOURNAL_STREAM'})

        def logged():
            got = levels_logged(gw.log_path.read_text())
            return got if 'error' in got and (level != 'debug' or 'debug' in got) else None
        wait_until(logged, 15, what='the error (and debug) lines at --log-level %s' % level)
        # Give the later lines (health every second, reconnects) time to show up.
        time.sleep(2.5)
        gw.terminate()
        assert gw.wait(15) == 0
        assert levels_logged(gw.log_path.read_text()) == want, gw.log_path.read_text()

    # -v still means debug.
    gw = procs.start([meterhub_binary(), '-v', '-c', str(path)], 'meterhub-v')
    wait_until(lambda: 'health not published' in gw.log_path.read_text(), 15,
               what='a debug line with -v')
    gw.terminate()
    assert gw.wait(15) == 0


# ---- --check-config ----------------------------------------------------------

def test_check_config_warns_about_paths_that_do_not_exist_yet(tmp_path):
    device = tmp_path / 'ttyUSB7'
    store = tmp_path / 'data' / 'meterhub'
    cfg = gateway_config(tmp_path, 1883, modbus_bus(device))
    cfg['store'] = {'path': str(store)}
    path = write_config(tmp_path, cfg)

    r = run('--check-config', '-c', str(path))
    assert r.returncode == 0, r
    assert 'configuration is valid: 1 buses, 1 meters' in r.stdout, r.stdout
    warnings = [line for line in r.stderr.splitlines() if line.startswith('warning: ')]
    assert len(warnings) == 2, r.stderr
    # The warning stands where the bus's mapping opens: the '{' before its "name".
    lines = path.read_text().splitlines()
    line = next(i for i, text in enumerate(lines) if '"name": "rs485-1"' in text)
    col = lines[line - 1].index('{') + 1
    assert warnings[0] == ('warning: %s:%d:%d: buses[0]: device %s does not exist yet; bus '
                           'rs485-1 will keep trying to open it' % (path, line, col, device)), \
        warnings
    assert warnings[1] == ('warning: %s: store.path: %s does not exist yet, nor does %s; '
                           'meterhub cannot start until %s exists'
                           % (path, store, store.parent, store.parent)), warnings

    # Once the data partition is there, the store is made at start.
    store.parent.mkdir()
    r = run('--check-config', '-c', str(path))
    assert r.returncode == 0, r
    assert ('warning: %s: store.path: %s does not exist yet; meterhub creates it at start'
            % (path, store)) in r.stderr.splitlines(), r.stderr


def test_check_config_is_quiet_when_everything_exists(tmp_path):
    device = tmp_path / 'ttyUSB7'
    device.write_text('')
    (tmp_path / 'store').mkdir()
    path = write_config(tmp_path, gateway_config(tmp_path, 1883, modbus_bus(device)))
    r = run('--check-config', '-c', str(path))
    assert r.returncode == 0, r
    assert r.stderr == '', r.stderr


def test_directory_as_config(tmp_path):
    r = run('--check-config', '-c', str(tmp_path))
    assert r.returncode == 1, r
    assert r.stderr == '%s: cannot read the configuration: Is a directory\n' % tmp_path, \
        r.stderr


# ---- start-up ------------------------------------------------------------------

def test_broker_that_cannot_be_reached_is_retried(procs, tmp_path):
    """A broker down at start is a broker that comes later: no exit."""
    cfg = gateway_config(tmp_path, closed_port(), modbus_bus(tmp_path / 'ttyUSB0'))
    gw = procs.start([meterhub_binary(), '-c', str(write_config(tmp_path, cfg))], 'meterhub')
    wait_until(lambda: 'trying again' in gw.log_path.read_text(), 15,
               what='a connection retry')
    time.sleep(2)
    assert gw.poll() is None, gw.log_path.read_text()
    gw.terminate()
    assert gw.wait(15) == 0


def test_store_that_cannot_be_opened_exits_2(tmp_path):
    (tmp_path / 'file').write_text('')
    cfg = gateway_config(tmp_path, closed_port(), modbus_bus(tmp_path / 'ttyUSB0'))
    cfg['store'] = {'path': str(tmp_path / 'file' / 'store')}
    r = run('-c', str(write_config(tmp_path, cfg)), timeout=15)
    assert r.returncode == 2, r
    assert 'cannot create %s' % (tmp_path / 'file' / 'store') in r.stderr, r.stderr
