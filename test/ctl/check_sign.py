#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""meterhub-ctl sign, checked from outside: its output is one line of JSON
whose sig Python's hmac module verifies (an implementation independent of
gateway/cmd.c), its times are what was asked for, a key file that group or
others may read is refused, and every usage error exits 2.

usage: check_sign.py [WRAPPER...] METERHUB-CTL

WRAPPER runs a cross-built METERHUB-CTL (qemu-aarch64).
"""

import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

CTL = None
RAW_KEY = b'a raw key of 29 bytes, or so\n'
HEX_KEY = bytes(range(32))
FIELDS = ('id', 'meter', 'action', 'ts', 'expires')
failures = []


def run(*args):
    return subprocess.run(CTL + list(args), capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)


def check(name, cond, detail=''):
    print('%s - %s%s' % ('ok' if cond else 'FAIL', name, '' if cond else ': ' + detail))
    if not cond:
        failures.append(name)


def key_file(d, name, data, mode):
    path = os.path.join(d, name)
    with open(path, 'wb') as f:
        f.write(data)
    os.chmod(path, mode)
    return path


def expected_sig(key, cmd):
    parts = [cmd[k] for k in FIELDS] + ([cmd['block']] if 'block' in cmd else [])
    return hmac.new(key, '\n'.join(parts).encode(), hashlib.sha256).hexdigest()


def when(text):
    return datetime.fromisoformat(text.replace('Z', '+00:00').replace('z', '+00:00'))


def signed(name, key, *args):
    """Run sign; the command it printed, or None after a failed check."""
    r = run('sign', *args)
    if r.returncode != 0:
        check(name, False, 'exit %d: %s' % (r.returncode, r.stderr.strip()))
        return None
    lines = r.stdout.split('\n')
    if len(lines) != 2 or lines[1] != '':
        check(name, False, 'not one line: %r' % r.stdout)
        return None
    cmd = json.loads(lines[0])
    check(name, cmd['sig'] == expected_sig(key, cmd), 'sig %s for %r' % (cmd['sig'], cmd))
    return cmd


def main():
    global CTL
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    CTL = sys.argv[1:]
    with tempfile.TemporaryDirectory(prefix='mh-ctl-') as d:
        raw = key_file(d, 'raw.key', RAW_KEY, 0o600)
        hexed = key_file(d, 'hex.key', HEX_KEY.hex().encode() + b'\n', 0o600)
        base = ['--id', 'c-42', '--meter', 'm-0001', '--action', 'trip']

        cmd = signed('raw key, given times', RAW_KEY, '--key', raw, *base,
                     '--ts', '2026-11-22T03:45:00Z', '--expires', '2026-11-22T04:45:00Z')
        if cmd:
            check('fields as given', cmd == dict(
                id='c-42', meter='m-0001', action='trip', ts='2026-11-22T03:45:00Z',
                expires='2026-11-22T04:45:00Z', sig=cmd['sig']), repr(cmd))

        signed('hex key is decoded', HEX_KEY, '--key', hexed, *base,
               '--ts', '2026-11-22T03:45:00Z', '--expires', '2026-11-22T04:45:00Z')

        before = time.time()
        cmd = signed('default ts and ttl', RAW_KEY, '--key', raw, *base)
        if cmd:
            check('ts is now, UTC, whole seconds',
                  re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ', cmd['ts']) is not None and
                  before - 1 <= when(cmd['ts']).timestamp() <= time.time() + 1, cmd['ts'])
            check('expires 1h after ts', when(cmd['expires']) - when(cmd['ts']) ==
                  timedelta(hours=1), cmd['expires'])

        cmd = signed('--ttl after an offset ts', RAW_KEY, '--key', raw, *base,
                     '--ts', '2026-11-22T11:45:00.25+08:00', '--ttl', '90s')
        if cmd:
            check('ts kept as given', cmd['ts'] == '2026-11-22T11:45:00.25+08:00', cmd['ts'])
            check('expires = ts + 90 s, in UTC', cmd['expires'] == '2026-11-22T03:46:30.250Z',
                  cmd['expires'])
        cmd = signed('--ttl past 2038', RAW_KEY, '--key', raw, *base,
                     '--ts', '2037-12-31T23:00:00Z', '--ttl', '8784h')
        if cmd:
            check('expires in 2039', cmd['expires'] == '2039-01-01T23:00:00Z', cmd['expires'])

        cmd = signed('--block is signed', RAW_KEY, '--key', raw, '--id', 'gw1:c.43', '--meter',
                     'm-0002', '--action', 'keep_power', '--ts', '2026-11-22T03:45:00Z',
                     '--ttl', '5m', '--block', '0233333334aB')
        if cmd:
            check('block as given', cmd.get('block') == '0233333334aB', repr(cmd))

        for mode in (0o644, 0o640, 0o604):
            shared = key_file(d, 'shared-%o.key' % mode, RAW_KEY, mode)
            r = run('sign', '--key', shared, *base)
            check('key mode %04o refused' % mode, r.returncode == 1 and r.stdout == '' and
                  ('mode %04o' % mode) in r.stderr, '%d %r' % (r.returncode, r.stderr))
        r = run('sign', '--key', os.path.join(d, 'none.key'), *base)
        check('missing key file fails', r.returncode == 1 and 'none.key' in r.stderr, r.stderr)
        short = key_file(d, 'short.key', b'fifteen bytes!!', 0o600)
        r = run('sign', '--key', short, *base)
        check('short key refused', r.returncode == 1 and 'at least 16' in r.stderr, r.stderr)

        usage_errors = {
            'no command': [],
            'unknown command': ['frob'],
            'unknown option': ['--frob'],
            'sign: unknown option': ['sign', '--key', raw, *base, '--frob'],
            'sign: stray argument': ['sign', '--key', raw, *base, 'now'],
            'sign: missing --key': ['sign', *base],
            'sign: missing --action': ['sign', '--key', raw, '--id', 'c', '--meter', 'm'],
            'sign: option without value': ['sign', '--key', raw, *base, '--ts'],
            'sign: option twice': ['sign', '--key', raw, *base, '--id', 'c-43'],
            'sign: --expires and --ttl': ['sign', '--key', raw, *base, '--ttl', '1h',
                                          '--expires', '2026-11-22T04:45:00Z'],
            'sign: bad id': ['sign', '--key', raw, '--id', 'c 42', '--meter', 'm',
                             '--action', 'trip'],
            'sign: long meter': ['sign', '--key', raw, '--id', 'c', '--meter', 'm' * 65,
                                 '--action', 'trip'],
            'sign: unknown action': ['sign', '--key', raw, '--id', 'c', '--meter', 'm',
                                     '--action', 'explode'],
            'sign: bad ts': ['sign', '--key', raw, *base, '--ts', '2026-02-29T00:00:00Z'],
            'sign: bad expires': ['sign', '--key', raw, *base, '--expires', 'tomorrow'],
            'sign: bad ttl': ['sign', '--key', raw, *base, '--ttl', '1 hour'],
            'sign: zero ttl': ['sign', '--key', raw, *base, '--ttl', '0s'],
            'sign: expires before ts': ['sign', '--key', raw, *base, '--ts',
                                        '2026-11-22T04:45:00Z', '--expires',
                                        '2026-11-22T03:45:00Z'],
            'sign: odd block': ['sign', '--key', raw, *base, '--block', '023'],
        }
        for name, args in usage_errors.items():
            r = run(*args)
            # Without a command the usage text is the message.
            said = r.stderr.startswith('meterhub-ctl') if args else 'usage:' in r.stderr
            check(name + ': exit 2', r.returncode == 2 and r.stdout == '' and said,
                  '%d %r' % (r.returncode, r.stderr))

        r = run('--help')
        check('--help', r.returncode == 0 and 'usage: meterhub-ctl COMMAND' in r.stdout, r.stdout)
        r = run('sign', '--help')
        check('sign --help', r.returncode == 0 and '--ttl DURATION' in r.stdout, r.stdout)
        r = run('--version')
        check('--version', r.returncode == 0 and r.stdout.startswith('meterhub-ctl '), r.stdout)

    print('%d failed' % len(failures))
    sys.exit(1 if failures else 0)


if __name__ == '__main__':
    main()
