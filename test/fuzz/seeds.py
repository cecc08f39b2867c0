#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Write the seed corpora of the fuzz targets into corpus/<target>/.

usage: test/fuzz/seeds.py

Frames are the public vectors of DL/T 645-2007 (each source is named in
test/unit/test_dlt645.c) and the hand-checked frames of the unit tests;
register values come from test/unit/test_dlt645_di.c and
test_modbus_regs.c; the config seeds are config/examples/demo.yaml and
each built-in profile wrapped into a whole config; the command seeds are
commands signed with fuzz_cmd.c's key and one of each malformed class of
gateway/cmd.h. Files are named by
what they hold, so rerunning this rewrites the same files. Inputs that
fuzzing adds to a corpus (run -merge) sit beside these and are kept.
"""
import hashlib
import hmac
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def hx(s):
    return bytes.fromhex(s)


# Public vectors (shared/vectors/dlt645.md) and unit-test frames.
FRAMES = {
    'v1-req': '68 25 04 03 02 01 00 68 11 04 33 33 34 33 E1 16',
    'v1-rsp': '68 25 04 03 02 01 00 68 91 08 33 33 34 33 75 39 45 33 8B 16',
    'v2-req': '68 03 20 12 22 20 65 68 11 04 33 33 33 33 8D 16',
    'v3-req': 'FE FE FE FE 68 18 20 12 22 20 65 68 11 04 33 32 34 35 A4 16',
    'v3-rsp': 'FE FE FE FE 68 18 20 12 22 20 65 68 91 0A 33 32 34 35 33 33 33 33 C7 56 13 16',
    'v5-req': 'FE FE FE FE 68 08 02 02 41 22 00 68 11 04 35 37 33 37 2A 16',
    'v5-rsp': '68 08 02 02 41 22 00 68 91 0A 35 37 33 37 3B 35 35 74 55 33 51 16',
    'v6-req': 'FE FE FE FE 68 AA AA AA AA AA AA 68 13 00 DF 16',
    'v6-rsp': '68 01 00 00 00 00 00 68 93 06 34 33 33 33 33 33 9D 16',
    'cs16-req': '68 64 00 00 00 00 00 68 11 04 33 33 34 33 16 16',
    'cs16-rsp': '68 14 00 00 00 00 00 68 91 08 33 33 34 33 33 33 33 33 16 16',
    'followup-req': '68 01 00 00 00 00 00 68 12 05 33 33 34 33 34 E9 16',
    'followup-rsp': '68 01 00 00 00 00 00 68 B2 09 33 33 34 33 75 39 45 33 34 B3 16',
    'read-more-rsp': '68 01 00 00 00 00 00 68 B1 08 33 33 34 33 75 39 45 33 7D 16',
    'write-req': '68 01 00 00 00 00 00 68 14 10 34 34 33 37 35 89 67 45 AB 89 67 45 33 55 44 59 36 16',
    'write-rsp': '68 01 00 00 00 00 00 68 94 00 65 16',
    'write-err': '68 01 00 00 00 00 00 68 D4 01 37 DD 16',
    'time-bcast': '68 99 99 99 99 99 99 68 08 06 39 78 36 55 44 59 4D 16',
    'freeze-req': '68 01 00 00 00 00 00 68 16 04 33 33 CC CC E9 16',
    'freeze-rsp': '68 01 00 00 00 00 00 68 96 00 67 16',
    'trip-req': '68 01 00 00 00 00 00 68 1C 10 35 33 33 33 34 33 33 33 4D 33 33 78 37 55 44 59 EC 16',
    'keep-power-req': '68 25 04 03 02 01 00 68 1C 10 35 89 67 45 AB 89 67 45 6D 33 8C 8C 56 64 45 63 8F 16',
    'control-rsp': '68 01 00 00 00 00 00 68 9C 00 6D 16',
    'control-err': '68 01 00 00 00 00 00 68 DC 01 37 E5 16',
    'passthrough-req': '68 01 00 00 00 00 00 68 1C 18 CB 33 33 33 43 44 45 46 47 48 49 4A 4B 4C 4D 4E 4F'
                       ' 50 51 52 53 54 55 56 63 16',
    'no-data-err': '68 01 00 00 00 00 00 68 D1 01 35 D8 16',
    'auth-err': '68 01 00 00 00 00 00 68 D1 01 39 DC 16',
    'bad-cs': '68 25 04 03 02 01 00 68 91 08 33 33 34 33 75 39 45 33 8C 16',
    'bad-end': '68 25 04 03 02 01 00 68 91 08 33 33 34 33 75 39 45 33 8B 17',
    'bad-second-68': '68 25 04 03 02 01 00 69 91 00 00 16',
    'l-too-big': '68 25 04 03 02 01 00 68 91 C9',
    'partial': 'FE FE 68 25 04 03 02 01 00 68 91 08 33 33',
}

# What a line carries: echo then reply, noise, fill, a partial frame, frames back to back.
STREAMS = {
    'echo-v1': ['v1-req', 'v1-rsp'],
    'echo-v3': ['v3-req', 'v3-rsp'],
    'echo-v5': ['v5-req', 'v5-rsp'],
    'echo-v6': ['v6-req', 'v6-rsp'],
    'echo-cs16': ['cs16-req', 'cs16-rsp'],
    'followups': ['read-more-rsp', 'followup-req', 'followup-rsp'],
    'abnormal': ['v1-req', 'no-data-err', 'auth-err'],
    'partial-then-frame': ['partial', 'v1-rsp'],
    'bad-then-good': ['bad-cs', 'bad-end', 'v1-rsp'],
    'control': ['trip-req', 'control-rsp', 'keep-power-req', 'control-err'],
}


def write(target, name, data):
    d = os.path.join(HERE, 'corpus', target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data)


def dlt645():
    for name, h in FRAMES.items():
        write('dlt645_frame', name, hx(h))
    for name, parts in STREAMS.items():
        wire = b''.join(hx(FRAMES[p]) for p in parts)
        # The first two bytes seed the chunk sizes; bit 0 of the second pops replies only.
        write('dlt645_stream', name, b'\x5a\x00' + wire)
        write('dlt645_stream', name + '-replies', b'\xa5\x01' + wire)
    noisy = b'\x00\x68\x68\x12' + hx(FRAMES['v1-rsp']) + b'\xff\xff\xff' + \
        hx(FRAMES['v5-rsp'])[:9] + b'\xfe\xfe' + hx(FRAMES['v6-rsp'])
    write('dlt645_stream', 'noise', b'\x33\x03' + noisy)


def di_input(di, payload, plan=b''):
    """Select a raw identifier (0xF0, then 4 bytes), max 64 values, the payload, a plan."""
    return b'\xf0' + struct.pack('>IBB', di, 64, len(payload)) + hx(payload) + plan


def plan(dis, flags=0x61):
    # Flags: bit 0 use blocks, bits 1.. max_reads (48). Each wanted DI is 0xF0 + 4 bytes.
    return bytes([flags]) + b''.join(b'\xf0' + struct.pack('>I', d) for d in dis)


SINGLE_PHASE = [0x0001FF00, 0x00020000, 0x02010100, 0x02020100, 0x02030000, 0x02060000, 0x02800002]
THREE_PHASE = [0x00010000, 0x00010100, 0x00010200, 0x0201FF00, 0x02020100, 0x02020200,
               0x02020300, 0x0203FF00, 0x02030000, 0x04000503, 0x0001FF00]

# Payloads after the identifier, from test/unit/test_dlt645_di.c and the public vectors.
DI_VALUES = [
    (0x00010000, '42 06 12 00'),
    (0x00000000, '56 34 12 80'),
    (0x0001FF00, '42 06 12 00 01 00 01 00 02 00 02 00 03 00 03 00 36 06 06 00'),
    (0x0002FF00, '00 50 00 00 00 20 00 00 00 30 00 00'),
    (0x0201FF00, '00 00 00 00 94 23'),
    (0x02010100, '20 22'),
    (0x0202FF00, '00 10 00 00 05 80 99 99 79'),
    (0x0203FF00, '00 50 02 00 50 01 00 00 81 00 00 00'),
    (0x0206FF00, '99 09 00 10 50 89 01 80'),
    (0x02800002, '98 49'),
    (0x03110000, '27 01 00'),
    (0x03110001, '00 00 08 22 11 26 30 15 09 22 11 26'),
    (0x0311000A, '00 00 08 22 11 26 00 00 00 00 00 00'),
    (0x04000503, '10 01'),
    (0x040005FF, '01 00 02 00 10 01 04 00 05 00 06 00 07 FF'),
    (0x04000101, '00 22 11 26'),
    (0x04000102, '06 45 03'),
    (0x04000402, '08 02 02 41 22 00'),
    (0x05060001, '00 00 22 11 26'),
    (0x05060101, '00 00 12 00 00 00 01 00 00 00 02 00 00 00 03 00 00 00 06 00'),
    (0x0506023E, '00 00 12 00 00 00 12 00'),
]


def di():
    for i, (d, p) in enumerate(DI_VALUES):
        pl = plan(SINGLE_PHASE if i % 2 else THREE_PHASE, 0x61 if i % 3 else 0x60)
        write('dlt645_di', '%08X' % d, di_input(d, p, pl))


def modbus():
    # Records: type/table byte, word order, scale selector, 4 registers (big-endian).
    regs = {
        'float32-1234.5': (0x06, 0, 0, [0x449A, 0x5000, 0, 0]),
        'float32-230.1-little': (0x06, 1, 0, [0x199A, 0x4366, 0, 0]),
        'float64-230.1': (0x07, 0, 0, [0x406C, 0xC333, 0x3333, 0x3333]),
        'float64-1e308-x10': (0x07, 0, 5, [0x7FE1, 0xCCF3, 0x85EB, 0xC8A0]),
        'float32-nan': (0x06, 0, 0, [0x7FC0, 0, 0, 0]),
        's32-minus2': (0x03, 0, 0, [0xFFFF, 0xFFFE, 0, 0]),
        'u64': (0x04, 0, 0, [1, 2, 3, 4]),
        'u16-x0.1': (0x00, 0, 1, [2301, 0, 0, 0]),
        's16-x0.01': (0x01, 0, 2, [0x8000, 0, 0, 0]),
        'bit': (0x08, 0, 0, [1, 0, 0, 0]),
    }
    for name, (t, o, s, r) in regs.items():
        write('modbus_decode', name, bytes([t, o, s]) + struct.pack('>4H', *r))
    # Any scale: selector 0xC0 and above takes 8 bytes of double.
    write('modbus_decode', 'raw-scale', bytes([0x02, 0, 0xC0]) + struct.pack('>d', 0.001) +
          struct.pack('>4H', 0x0001, 0x86A0, 0, 0))

    # Plans: max_gap, then records of table (bits 0-1), type (2-6), a 16-bit address (bit 7).
    def point(table, typ, addr):
        return bytes([0x80 | typ << 2 | table]) + struct.pack('>H', addr)
    sdm120 = [0x48, 0x4A, 0x00, 0x06, 0x0C, 0x1E, 0x46]
    write('modbus_plan', 'sdm120-gap0', b'\x00\x00' + b''.join(point(3, 6, a) for a in sdm120))
    write('modbus_plan', 'sdm120-gap16', b'\x00\x10' + b''.join(point(3, 6, a) for a in sdm120))
    mixed = [point(2, 0, 0x10), point(2, 2, 0x11), point(0, 8, 0), point(1, 8, 1999),
             point(2, 7, 0xFFFC), point(3, 4, 200), point(3, 4, 0x7D)]
    write('modbus_plan', 'mixed', b'\x80\x05' + b''.join(mixed))
    write('modbus_plan', 'limit', b'\x00\x02' + b''.join(point(2, 6, a) for a in range(0, 260, 2)))


CONFIG_HEAD = '''gateway: { id: gw-001, timezone: Asia/Shanghai }
store: { path: /var/lib/meterhub, max_bytes: 256MiB }
mqtt: { uri: tcp://127.0.0.1:1883, client_id: meterhub-gw-001, topic_prefix: meterhub/gw-001 }
schedule: { interval: 15m }
'''


# Every key the loader knows, once (the shape of DESIGN.md's example).
FULL = CONFIG_HEAD.replace('mqtt: {', 'mqtt: { tls: { ca: /dev/null, cert: /dev/null, key: /dev/null }, '
                           'username: u, password_file: /dev/null, keepalive: 30, window: 8,') + \
    '''health: { interval: 1m }
tariff:
  periods:
    - { name: peak,   from: "08:00", to: "11:00" }
  default: flat
commands:
  hmac_key_file: /dev/null
  max_attempts: 3
  retry_backoff: 5s
  max_skew: 300s
  settle: 1s
  confirm_within: 10s
  queue: 8
  protect_windows:
    - { from: "2027-02-05", to: "2027-02-12" }
    - { from: "2027-06-01T08:00:00+08:00", to: "2027-06-01T18:00:00.5Z" }
buses:
  - name: rs485-1
    device: /dev/ttyS1
    baud: 9600
    parity: even
    protocol: dlt645
    timeout: 500ms
    frame_gap: 20ms
    meters:
      - { id: m-0001, address: "000000000001", profile: dlt645-single-phase }
      - { id: m-0002, address: "000000000002", profile: my-645, control: { password: "123456", esam: true } }
  - name: rs485-2
    device: /dev/ttyS2
    baud: 9600
    parity: none
    protocol: modbus
    meters:
      - { id: m-0101, address: 1, profile: my-meter }
profiles:
  my-645:
    points: [ { di: "0001FF00" } ]
    control: { password_level: 2, password: "000000", operator: "00000000", close: permit }
  my-meter:
    description: "all Modbus point kinds"
    max_gap: 4
    points:
      - { name: energy_import_kwh, table: holding, address: 0x0000, type: float32, word_order: big }
      - { name: voltage_a_v,       table: input,   address: 0x0010, type: u16, scale: 0.1 }
      - { name: current_a_a,       table: input,   address: 0x0011, type: s32, word_order: little, scale: 0.001 }
      - { name: power_kw,          table: input,   address: 0x0020, type: float64 }
      - { name: relay,             table: discrete, address: 0x0000 }
    control:
      trip:    { table: coil, address: 0x0000, value: 1 }
      restore: { table: coil, address: 0x0000, value: 0 }
      relay:   { table: discrete, address: 0x0000, open_when: 1 }
'''


def config():
    # Every key, the secret files among them: /dev/null is no file of a secret, the error path.
    write('config', 'every-key.yaml', FULL.encode())
    # Every key that loads on any machine: no TLS (its files), no commands (the key file).
    valid = CONFIG_HEAD + FULL.split('schedule: { interval: 15m }\n', 1)[1]
    valid = valid.split('commands:')[0] + 'buses:' + valid.split('buses:', 1)[1]
    write('config', 'full.yaml', valid.encode())
    with open(os.path.join(ROOT, 'config', 'examples', 'demo.yaml'), 'rb') as f:
        write('config', 'demo.yaml', f.read())
    pdir = os.path.join(ROOT, 'config', 'profiles')
    for fn in sorted(os.listdir(pdir)):
        if not fn.endswith('.yaml'):
            continue
        with open(os.path.join(pdir, fn), encoding='utf-8') as f:
            text = f.read()
        name = fn[:-5]
        # The profile under another name, as a user's own, used by a meter on a bus.
        user = text.replace('  %s:' % name, '  my-%s:' % name, 1)
        dlt = name.startswith('dlt645')
        bus = '''buses:
  - name: rs485-1
    device: /dev/ttyS1
    baud: 9600
    parity: %s
    protocol: %s
    timeout: 500ms
    meters:
      - { id: m-0001, address: %s, profile: my-%s }
      - { id: m-0002, address: %s, profile: %s }
''' % ('even' if dlt else 'none', 'dlt645' if dlt else 'modbus',
           '"000000000001"' if dlt else '1', name, '"000000000002"' if dlt else '2', name)
        write('config', name + '.yaml', (CONFIG_HEAD + bus + user).encode())


# The key of test/fuzz/fuzz_cmd.c.
CMD_KEY = b'meterhub-fuzz-key-0123456789abcdef'
CMD_FIELDS = ('id', 'meter', 'action', 'ts', 'expires')


def signed(fields, block=None):
    """@fields signed as the command contract says, JSON-encoded the way a head-end would."""
    parts = [fields[k] for k in CMD_FIELDS] + ([block] if block is not None else [])
    cmd = dict(fields)
    if block is not None:
        cmd['block'] = block
    cmd['sig'] = hmac.new(CMD_KEY, '\n'.join(parts).encode(), hashlib.sha256).hexdigest()
    return cmd


def cmd():
    base = {'id': 'c-42', 'meter': 'm-0001', 'action': 'trip', 'ts': '2026-11-22T03:45:00Z',
            'expires': '2026-11-22T04:45:00Z'}
    valid = {
        'trip': signed(base),
        'restore-offset': signed(dict(base, id='c-43', action='restore', ts='2026-11-22T11:45:00+08:00',
                                      expires='2026-11-22T12:45:00.5+08:00')),
        'keep-power-block': signed(dict(base, id='gw1:c.44', action='keep_power'),
                                   block='02333333343333333333'),
        'unknown-action': signed(dict(base, action='explode')),
        'recall-leap-day': signed(dict(base, id='C_45', action='recall', ts='2028-02-29T23:59:59.999Z',
                                       expires='2028-03-01T00:00:00-00:00')),
        'unsigned': dict(base, action='alarm_on'),
        'wrong-sig': dict(signed(base), meter='m-0002'),
    }
    for name, c in valid.items():
        write('cmd', 'ok-' + name, json.dumps(c, separators=(',', ':')).encode())
    # Unknown keys and escapes, each still a valid command (ok-: parses; not all verify).
    extra = dict(signed(base), note='电表 [[[', v=[1, {'a': None}])
    write('cmd', 'ok-extra-keys', json.dumps(extra, ensure_ascii=False, indent=1).encode())
    escaped = json.dumps(signed(base), separators=(',', ':')).replace('"c-42"', '"c\\u002d42"')
    write('cmd', 'ok-escaped', escaped.encode())

    good = json.dumps(signed(base), separators=(',', ':'))
    broken = {
        'too-large': good + ' ' * (4097 - len(good)),
        'deep': '[' * 4096,
        'deep-object': '{"a":' * 5 + '1' + '}' * 5,
        'not-json': 'trip c-42 now',
        'truncated': good[:-10],
        'trailing': good + ' {}',
        'array': '[' + good + ']',
        'string': '"c-42"',
        'duplicate-id': good[:-1] + ',"id":"c-43"}',
        'duplicate-sig': good[:-1] + ',"sig":"%s"}' % ('0' * 64),
        'nul-escape': good.replace('"c-42"', '"c-42\\u0000x"'),
        'control': good.replace('"c-42"', '"c-\x0142"'),
        'id-syntax': good.replace('"c-42"', '"c 42"'),
        'id-long': good.replace('"c-42"', '"%s"' % ('c' * 65)),
        'meter-empty': good.replace('"m-0001"', '""'),
        'action-number': good.replace('"trip"', '7'),
        'ts-bad': good.replace('2026-11-22T03:45:00Z', '2026-02-29T03:45:00Z'),
        'expires-null': good.replace('"2026-11-22T04:45:00Z"', 'null'),
        'sig-short': good.replace(signed(base)['sig'], signed(base)['sig'][:63]),
        'block-odd': json.dumps(dict(signed(base), block='023')),
        'missing-ts': json.dumps({k: v for k, v in signed(base).items() if k != 'ts'}),
    }
    for name, text in broken.items():
        write('cmd', 'bad-' + name, text.encode())
    utf8 = {'overlong': b'\xc0\xaf', 'surrogate': b'\xed\xa0\x80', 'beyond': b'\xf4\x90\x80\x80',
            'cut': b'\xe4\xb8'}
    for name, seq in utf8.items():
        write('cmd', 'bad-utf8-' + name, b'{"x":"' + seq + b'",' + good[1:].encode())
    write('cmd', 'bad-nul', good[:20].encode() + b'\0' + good[20:].encode())


def main():
    if len(sys.argv) != 1:
        sys.exit(__doc__)
    dlt645()
    di()
    modbus()
    config()
    cmd()


if __name__ == '__main__':
    main()
