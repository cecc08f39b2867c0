# SPDX-License-Identifier: MIT
"""The head-end's half of the remote command contract: key files, signatures
and command payloads, written from the contract (README "Remote commands", DESIGN.md
"Commands") with Python's hmac and hashlib, never from the daemon's C code,
so that a misreading of the contract in one cannot hide in the other.

    sig = lowercase hex HMAC-SHA256(key, "id\\nmeter\\naction\\nts\\nexpires")
          (+ "\\nblock" when the command carries a block), over the strings
          exactly as they are after JSON unescaping, no trailing newline.

A key file holds the raw key bytes; when the whole file, after stripping one
trailing newline, is 64 or more hex digits of even length, it holds the key
hex-encoded. Keys are at least 16 bytes.
"""

import datetime as dt
import hashlib
import hmac
import json
import os
import string
import time

HEX = frozenset(string.hexdigits.encode())


def key_from_file_bytes(raw):
    """The key a key file holding @raw stands for."""
    text = raw[:-1] if raw.endswith(b'\n') else raw
    if len(text) >= 64 and len(text) % 2 == 0 and all(c in HEX for c in text):
        return bytes.fromhex(text.decode('ascii'))
    return raw


def write_key_file(path, key, hex_encoded=True):
    """Writes @key to @path, mode 0600 (the daemon refuses a key file that group
    or others can read); returns the path."""
    data = (key.hex() + '\n').encode() if hex_encoded else key
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(str(path), 0o600)
    return path


def signed_string(cid, meter, action, ts, expires, block=None):
    fields = [cid, meter, action, ts, expires]
    if block is not None:
        fields.append(block)
    return '\n'.join(fields).encode('utf-8')


def sign(key, cid, meter, action, ts, expires, block=None):
    return hmac.new(key, signed_string(cid, meter, action, ts, expires, block),
                    hashlib.sha256).hexdigest()


def rfc3339(t, offset_minutes=0, frac_digits=0):
    """Epoch seconds @t as RFC 3339: "...Z" at offset 0, else "...+08:00"; with
    @frac_digits digits of fractional seconds."""
    tz = dt.timezone(dt.timedelta(minutes=offset_minutes))
    d = dt.datetime.fromtimestamp(t, tz)
    s = d.strftime('%Y-%m-%dT%H:%M:%S')
    if frac_digits:
        s += '.' + ('%06d' % d.microsecond)[:frac_digits].ljust(frac_digits, '0')
    if offset_minutes == 0:
        return s + 'Z'
    sign_ = '+' if offset_minutes > 0 else '-'
    m = abs(offset_minutes)
    return s + '%s%02d:%02d' % (sign_, m // 60, m % 60)


def command(key, cid, meter, action, ts=None, expires=None, ttl=3600.0, block=None, now=None,
            **extra):
    """A signed command. @ts and @expires are RFC 3339 strings or epoch seconds
    (default: now and now + @ttl). @extra fields are added unsigned (e.g.
    sig=None drops the signature, sig='...' replaces it)."""
    now = time.time() if now is None else now
    ts = rfc3339(now) if ts is None else ts
    expires = rfc3339(now + ttl) if expires is None else expires
    ts = rfc3339(ts) if isinstance(ts, (int, float)) else ts
    expires = rfc3339(expires) if isinstance(expires, (int, float)) else expires
    cmd = {'id': cid, 'meter': meter, 'action': action, 'ts': ts, 'expires': expires}
    if block is not None:
        cmd['block'] = block
    cmd['sig'] = sign(key, cid, meter, action, ts, expires, block)
    for k, v in extra.items():
        if k == 'sig' and v is None:
            del cmd['sig']
        else:
            cmd[k] = v
    return cmd


def encode(cmd):
    return json.dumps(cmd, separators=(',', ':')).encode('utf-8')
