#!/usr/bin/env python3
"""DL/T 645-2007 multi-meter bus simulator (test peer for meterhub).

Serves many meters (addresses) on ONE serial port -- normally one end of a
socat pty pair standing in for the RS485 bus:

    socat -d -d pty,raw,echo=0 pty,raw,echo=0        # prints two /dev/pts/N
    python3 test/sim/dlt645_sim.py --port /dev/pts/N --config sim.json \
            [--log frames.jsonl]

* prints ``READY`` (flushed) on stdout once the port is open and serving;
* SIGTERM / SIGINT  -> exit 0;
* SIGHUP            -> re-read --config (faults, parameters, meters added or
                       removed) without closing the port;
* SIGUSR1           -> "press the button" on every meter waiting in
                       close-permit (remote control N1=1BH).

Pure python + pyserial.  This file is written independently of the project's
C codec on purpose (so a shared misunderstanding of the standard cannot hide):
it was written from DL/T 645-2007 as summarised below, from the public frames
in the project's shared vector list, and from public material found by search:

  [R1] DL/T 645-2007 link-layer description as republished in public vendor
       documents (e.g. "断路器 DL/T645-2007 协议 V2.4", lawinsider.com/zh/
       contracts/kHYv0S1Gpcd): frame layout, broadcast address 99..99,
       shortened addressing with AAH wildcards in the high bytes ("从站应答帧
       的地址域返回实际通信地址"), control-code bits D7/D6/D5, L <= 200 for
       reads.
  [R2] public DI lists in concentrator code (e.g. coyool/XXOO_000
       dd645_2007.c id table): 0001FF00, 0201FF00, 0202FF00, 02030000,
       04000503 (status word 3), 05060101 / 05060201 (daily frozen forward /
       reverse active energy).
  [R3] public remote-control code tables (N1 = 1AH trip, 1BH close permit,
       2AH/2BH alarm on/off, 3AH/3BH keep-power on/off; 1CH direct close) and
       a public meter-firmware remote-control handler that accepts password
       levels 02/04, checks the command deadline and answers both a bad
       password and an expired deadline with the "password error /
       unauthorised" ERR bit -- which is why ERR b2 is the default for those
       cases here.
No code was copied from any of those.

Protocol summary used here
--------------------------
Frame: [FE..] 68 A0..A5 68 C L DATA CS 16.  Address = 12 BCD digits, low byte
first.  Every DATA byte is +33H on the wire.  CS = sum mod 256 from the first
68 to the last DATA byte.  Replies: C|80H normal (D5=20H: follow-up frames
exist), C|C0H abnormal with one ERR byte (b0 other, b1 no requested data,
b2 password error/unauthorised, b3 baud cannot change, b4 year zones,
b5 daily periods, b6 tariffs exceeded).  DI is 4 bytes, DI0 first on the wire.
Values are BCD, low byte first; signed values carry the sign in the top bit of
the most significant byte (sign-magnitude).

Control codes served
--------------------
  11H read            -> 91H / B1H (+follow-up) / D1H
  12H read follow-up  -> 92H / B2H / D2H   (request data = DI + SEQ; reply =
                         DI + part + SEQ.  SEQ=k returns the k-th follow-up
                         part (k>=1), so a retried SEQ gets the same bytes.)
  13H read address    -> 93H, only when exactly ONE meter is configured on the
                         bus (with several meters every one would answer the
                         AA..AA wildcard at once and the frames would collide;
                         the simulator then stays silent and logs "collision").
  14H write           -> 94H / D4H  (04000101 date, 04000102 time only)
  08H broadcast time  -> no reply (address 99..99 sets every meter)
  16H freeze          -> 96H / no reply on 99..99 (data mmhhDDMM; 99999999 =
                         instant freeze, readable at 050100nn/050101nn/050102nn;
                         a scheduled-freeze time is acknowledged but not kept)
  17H change baud     -> D7H with ERR b3 (baud cannot change)
  1CH remote control  -> 9CH (no data) / DCH
  anything else       -> abnormal, ERR b0

A request whose address matches several meters (AA wildcards) gets no reply
(collision, logged).  Frames with the direction bit set are ignored.

Config file (JSON)
------------------
{
  "bus": {"echo": false,          # echo master bytes back first (RS485 adapter)
          "turnaround_ms": 0,     # delay before every reply
          "max_frame_data": 200,  # default for meters (L limit, DI/SEQ incl.)
          "wire": null,           # emulated line timing, below
          "log_times": false},    # log t_end without emulating the wire
  "defaults": { ...any meter key... },
  "meters": [ {"address": "000102030425", ...meter keys...}, ... ]
}
Wire emulation (see wire.py): "wire": {"baud": 9600, "bits_per_char": 11,
"turnaround_ms": 5} makes the pty as slow as a real line.  baud defaults to
2400, bits_per_char to 11 (8E1, DL/T 645's framing; 8N1 is 10),
turnaround_ms to the bus's turnaround_ms, which it then replaces.  One
character takes bits_per_char / baud s; t3.5 is 3.5 of them (1.75 ms above
19200 baud).  A request is received when its bytes (FE preamble and any
bytes passed over before it included) would have arrived: its first byte's
arrival + length x character time, or its last byte's arrival if later.
The reply starts no earlier than turnaround_ms after that (plus a fault's
delay_ms), nor before the line is free, and byte k of it is written no
earlier than its start + k x character time.  The echo, when on, stays
immediate.  A request whose first byte comes less than t3.5 after the end
of the previous frame on the line (the last reply, or the previous request
when nothing answered) is a gap violation, a protocol error on a real
RS485 line: it is still served, and counted.  A reload keeps the line's
state and its count.
Meter keys (default in brackets):
  address (required, 12 digits)          meter_number [= address] (04000402)
  phases [3] (1 = single phase: phase B/C DIs answer ERR b1, blocks carry A only)
  preamble [0] FE bytes before each reply (0..4)
  meter_type [0] status word 3 bits 8-9 (0 non-prepaid, 1 energy-, 2 money-prepaid)
  load_kw [0.0] signed total active power; > 0 imports, < 0 exports
  speedup [1.0] energy accrual multiplier (3600 -> one hour per second)
  import_kwh / export_kwh [0]: number (= total register, tariffs 0), list
      [total, t1, t2, t3, t4], or {"total":..,"t1":..}; missing total = sum.
  combination_word [5] 04000601 bits: b0 +fwd, b1 -fwd, b2 +rev, b3 -rev;
      combined active energy (0000xx00) = that combination (default fwd+rev).
  voltage_v [220.0] number or [A,B,C]; power_factor [1.0] number or [A,B,C];
  frequency_hz [50.0]; phase_share [null -> equal over phases with U>0];
  current_a [null -> derived P/(U*PF)] number or [A,B,C] (sign follows P)
  clock_offset_s [0] meter clock = host local time + offset
  max_broadcast_correction_s [300] a broadcast time (08H) that would move the
      clock by more is ignored (logged as a "note"); null: any is taken
  tariff_schedule [[["00:00",4],["08:00",3],["10:00",2],["11:00",1],
      ["13:00",3],["18:00",2],["21:00",3],["23:00",4]]]  (1 sharp 尖, 2 peak 峰,
      3 flat 平, 4 valley 谷); start times, wrapping over midnight.
  freeze_history_days [7] daily freezes synthesised before start (max 62)
  counter_max_kwh [null] energy registers roll over to 0 here (a meter with
      fewer digits); null: at 1 000 000 kWh, what XXXXXX.XX holds
  password_level [2], password ["000000"] (P2P1P0 as digits; sent P0 first)
  trip_delay_s [0] bit 4 follows bit 6 after this delay on trip
  auto_button_after_s [null] close-permit button pressed automatically
  relay_open [false], keep_power [false], alarm [false]  initial relay states
  err_password [4], err_keep_power [4], err_expired [4]  ERR bytes for 1CH
  max_frame_data [bus value] limit on L; longer read replies use follow-up
  answer_all [false] a meter that answers for every address: it also answers
      each request addressed to another meter (or to none), as if to itself,
      with its own address in the reply, before the addressed meter does (a
      real bus would garble both); logged as tx with fault "answer_all".
      Not for read-address (13H) or broadcasts.
  fault [{}]: any of
      "silence": true            no reply, command NOT executed
      "err": n                   abnormal reply with ERR n, NOT executed
      "delay_ms": n              reply n ms late
      "bad_checksum": true       CS+1
      "noise_before"/"noise_after": int (random bytes) or "hex string"
      "wrong_addr": true or "12 digits" (CS recomputed, only address wrong)
      "truncate": n or true(=4)  drop the last n bytes of the frame
      "relay_stuck": true        1A/1B/1C acknowledged and bit 6 follows the
                                 command, but the relay (bit 4) never moves
      "every": N                 request faults only on every Nth request to
                                 this meter (N, 2N, ...); counter reset on HUP
      "di": ["00010000", ...]    request faults only for these DIs
  Other than silence/err the command IS executed and only its reply damaged.

State-initialising keys (import_kwh, export_kwh, clock_offset_s, relay_open,
keep_power, alarm) are re-applied on SIGHUP only when their value in the file
changed; everything else is simply replaced.  Meters keep their registers.

Energy model: every ~20 ms, |load_kw| * speedup * dt is added to total and to
the tariff active at the meter clock, into import (load>0) or export (load<0).
An open relay stops the load (current and power read 0).  Daily freeze at each
meter-clock midnight; history before start is synthesised by running the
un-sped-up load backwards over the tariff schedule (clamped at 0).  Setting
the clock (08H, 14H) does not itself trigger a freeze, and the synthesised
history keeps the dates it was made with.
Energy is truncated to 0.01 kWh and rolls over at 1 000 000 kWh; the other
quantities are rounded.

Remote control (1CH) data: PA P0 P1 P2 | C0..C3 operator | N1 | N2 | N3..N8
deadline ss mm hh DD MM YY (BCD).  Checks in order: L=16, password
(err_password), deadline valid BCD (ERR b0) and not before the meter clock
(err_expired), N1 known (ERR b0), keep-power blocks 1AH (err_keep_power).
  1A trip: bit6=1 now; bit4=1 after trip_delay_s.  1B close permit: bit6=0,
  bit4 stays 1 until the button (SIGUSR1 / auto_button_after_s).  1C direct
  close: bit6=0, bit4=0 at once (cancels a pending trip).  2A/2B: bit7 pre-trip
  alarm on/off.  3A/3B: keep-power (保电) on/off (only blocks trips; bit12).
Status word 3 (04000503): bit4 relay actually open, bit6 relay command trip,
bit7 pre-trip alarm, bits 8-9 meter_type, bit12 keep-power state (set by
keep_power true or 3AH, cleared by 3BH); other bits 0.  Status words 1,2,4-7
read as 0000.

Log (--log, JSON lines, appended, flushed per line):
  {"t", "dir": "rx"|"tx"|"echo", "addr", "c", "di", "hex", "values", "fault"}
  rx: every complete master frame (addr as in the frame, AA kept as "AA").
  A remote-control request (c == 0x1C) also carries "control": {"level",
  "password" (P2P1P0 digits), "operator" (C3..C0 hex), "n1", "n2" (ints),
  "deadline" ("YYYY-MM-DD hh:mm:ss" as sent, or the raw hex when it is not
  BCD)}, or null when its length is not 16; it is logged whether or not
  a meter answers, so the rx entries with c == 0x1C count exactly the
  control frames that reached the bus.
  tx: every reply as written (hex = exact wire bytes incl. FE/noise; "" for
  silence); addr = the answering meter; values = the numbers encoded, after
  quantisation, with canonical names (energy_import_kwh, energy_import_t1_kwh
  .. _t4_kwh, energy_export_kwh[_tN], energy_combined_kwh[_tN], voltage_a_v..c,
  current_a_a..c, power_kw, power_a_kw..c, power_factor, power_factor_a..c,
  frequency_hz, date, weekday, time, comm_address, meter_number,
  status_word_3 (with relay_open, relay_cmd_trip, prealarm, keep_power
  decoded from it), freeze_time, ...).  For a split reply the first frame carries
  all values, follow-ups carry "part": k.  fault = null or a comma list.
  echo: bytes echoed by the "echo" bus option.
  With "wire", rx and tx entries also carry what they need on a real line,
  in seconds, and "t_end", the wall time the frame ended (rx: its emulated
  end; tx: its last byte written):
    rx: "wire": {"request_s", "gap_s"}, "wire_s", "gap_violation" (bool),
        "gap_violations" (count since start).  request_s is the request's
        bytes on the line, gap_s the t3.5 silence after the exchange.
    tx: "wire": {"turnaround_s", "reply_s"}, "wire_s".
  The physical limit of a sweep is the sum of "wire_s" over its rx and tx
  entries, less the last rx's gap_s.  With "log_times" (no "wire"), rx and
  tx entries carry "t_end" only.
The meter clock is the simulator's local time; set TZ to control it.
"""

import argparse
import copy
import datetime as dt
import json
import math
import os
import random
import select
import signal
import sys
import termios
import time
from fractions import Fraction

import serial

from wire import Wire, wall

# ---------------------------------------------------------------------------
# constants
# ---------------------------------------------------------------------------
BROADCAST = bytes([0x99] * 6)
WILDCARD = 0xAA
UNITS = 1000000                 # energy registers are integers of 1e-6 kWh

ERR_OTHER = 0x01                # b0
ERR_NO_DATA = 0x02              # b1
ERR_PASSWORD = 0x04             # b2 password error / unauthorised
ERR_BAUD = 0x08                 # b3

DEFAULT_SCHEDULE = [["00:00", 4], ["08:00", 3], ["10:00", 2], ["11:00", 1],
                    ["13:00", 3], ["18:00", 2], ["21:00", 3], ["23:00", 4]]

DEFAULT_BUS = {"echo": False, "turnaround_ms": 0, "max_frame_data": 200,
               "wire": None, "log_times": False}
WIRE_DEFAULT_BAUD = 2400

DEFAULT_METER = {
    "address": None, "meter_number": None, "phases": 3, "preamble": 0,
    "meter_type": 0, "load_kw": 0.0, "speedup": 1.0,
    "import_kwh": 0, "export_kwh": 0, "combination_word": 0x05,
    "voltage_v": 220.0, "power_factor": 1.0, "frequency_hz": 50.0,
    "phase_share": None, "current_a": None,
    "clock_offset_s": 0.0, "max_broadcast_correction_s": 300,
    "tariff_schedule": DEFAULT_SCHEDULE,
    "freeze_history_days": 7, "counter_max_kwh": None,
    "password_level": 2, "password": "000000",
    "trip_delay_s": 0.0, "auto_button_after_s": None,
    "relay_open": False, "keep_power": False, "alarm": False,
    "err_password": ERR_PASSWORD, "err_keep_power": ERR_PASSWORD,
    "err_expired": ERR_PASSWORD,
    "max_frame_data": None, "answer_all": False, "fault": {},
}
STATE_KEYS = ("import_kwh", "export_kwh", "clock_offset_s", "relay_open",
              "keep_power", "alarm")
FAULT_KEYS = ("silence", "err", "delay_ms", "bad_checksum", "noise_before",
              "noise_after", "wrong_addr", "truncate", "relay_stuck", "every",
              "di")


# ---------------------------------------------------------------------------
# BCD / frame helpers
# ---------------------------------------------------------------------------
def bcd_bytes(digits):
    """'002241020208' -> b'\\x08\\x02\\x02\\x41\\x22\\x00' (low byte first)."""
    return bytes.fromhex(digits)[::-1]


def bytes_digits(b):
    """Inverse of bcd_bytes; keeps non-BCD nibbles as hex (e.g. 'AA')."""
    return b[::-1].hex().upper()


def int_bcd(n, nbytes):
    s = "%0*d" % (nbytes * 2, n)
    if len(s) > nbytes * 2:
        raise ValueError("value %d does not fit %d BCD bytes" % (n, nbytes))
    return bcd_bytes(s)


def bcd_int(b):
    s = bytes_digits(b)
    return int(s) if s.isdigit() else None


def checksum(b):
    return sum(b) & 0xFF


def build_frame(addr6, c, data):
    body = bytes([0x68]) + addr6 + bytes([0x68, c, len(data)]) + \
        bytes((x + 0x33) & 0xFF for x in data)
    return body + bytes([checksum(body), 0x16])


class Frame:
    def __init__(self, raw):
        self.raw = bytes(raw)
        self.addr = self.raw[1:7]
        self.c = self.raw[8]
        self.data = bytes((x - 0x33) & 0xFF for x in self.raw[10:-2])
        # set by FrameParser: monotonic arrival of the first byte on the line
        # (preamble included) and of the last, and the bytes on the line
        self.rx_first = self.rx_last = time.monotonic()
        self.wire_len = len(self.raw)

    @property
    def di(self):
        if (self.c & 0x1F) in (0x11, 0x12, 0x14) and len(self.data) >= 4:
            return int.from_bytes(self.data[:4], "little")
        return None


class FrameParser:
    """Stream parser: finds 68 A6 68 C L .. CS 16 by L (never by scanning for
    16), verifies CS and end byte, skips anything else byte by byte."""

    STALE_S = 0.5

    def __init__(self):
        self.buf = bytearray()
        self.times = []            # monotonic arrival time of each byte in buf
        self.last = 0.0
        # bytes passed over since the last frame (FE preamble, noise) and
        # when the first of them came: they took wire time before the frame
        self.skipped = 0
        self.skip_t0 = 0.0

    def _skip(self, count):
        if count <= 0:
            return
        if not self.skipped:
            self.skip_t0 = self.times[0]
        self.skipped += count
        del self.buf[:count]
        del self.times[:count]

    def forget_skipped(self):
        """The line turned around (a reply went out): what was passed over
        before belongs to no request that follows."""
        self.skipped = 0

    def feed(self, data, now, mono=None):
        self.buf += data
        self.times += [time.monotonic() if mono is None else mono] * len(data)
        self.last = now
        out = []
        while True:
            i = self.buf.find(0x68)
            if i < 0:
                self._skip(len(self.buf))
                return out
            self._skip(i)
            if len(self.buf) < 10:
                return out
            if self.buf[7] != 0x68:
                self._skip(1)
                continue
            total = 12 + self.buf[9]
            if len(self.buf) < total:
                return out
            cand = self.buf[:total]
            if cand[-1] != 0x16 or checksum(cand[:-2]) != cand[-2]:
                self._skip(1)
                continue
            f = Frame(cand)
            f.rx_first = self.skip_t0 if self.skipped else self.times[0]
            f.rx_last = self.times[total - 1]
            f.wire_len = self.skipped + total
            self.skipped = 0
            out.append(f)
            del self.buf[:total]
            del self.times[:total]

    def expire(self, now):
        """Drop a partial frame that stopped arriving; rescan what follows."""
        if self.buf and now - self.last > self.STALE_S:
            self._skip(1)
            return self.feed(b"", now)
        return []


# ---------------------------------------------------------------------------
# data formats (DL/T 645-2007 appendix A)
# ---------------------------------------------------------------------------
class Num:
    """BCD number: nbytes, implied decimals, signed = sign in the top bit of
    the most significant byte; floor=True truncates (energy registers)."""

    def __init__(self, nbytes, decimals, signed=False, floor=False):
        self.nbytes, self.decimals = nbytes, decimals
        self.signed, self.floor = signed, floor

    def encode(self, value):
        v = Fraction(value) * 10 ** self.decimals
        neg = v < 0
        mag = abs(v)
        n = math.floor(mag) if self.floor else int(mag + Fraction(1, 2))
        if self.signed:
            n = min(n, 8 * 10 ** (self.nbytes * 2 - 1) - 1)
        elif self.floor:
            n %= 10 ** (self.nbytes * 2)         # register roll-over
        else:
            n = min(n, 10 ** (self.nbytes * 2) - 1)
        neg = neg and n != 0
        b = bytearray(int_bcd(n, self.nbytes))
        if neg:
            b[-1] |= 0x80
        shown = round((-n if neg else n) / 10 ** self.decimals, self.decimals)
        return bytes(b), shown


class Date4:
    """YYMMDDWW (WW 0 = Sunday)."""
    def encode(self, d):
        ww = (d.weekday() + 1) % 7
        s = "%02d%02d%02d%02d" % (d.year % 100, d.month, d.day, ww)
        return bcd_bytes(s), d.strftime("%Y-%m-%d")


class Time3:
    """hhmmss."""
    def encode(self, d):
        return bcd_bytes(d.strftime("%H%M%S")), d.strftime("%H:%M:%S")


class YMDhm5:
    """YYMMDDhhmm (freeze times)."""
    def encode(self, d):
        return bcd_bytes(d.strftime("%y%m%d%H%M")), d.strftime("%Y-%m-%d %H:%M")


class Digits6:
    """NNNNNNNNNNNN (addresses, meter number)."""
    def encode(self, s):
        return bcd_bytes(s), s


class Word:
    """Binary bit-string, low byte first (status words, characteristic words)."""
    def __init__(self, nbytes):
        self.nbytes = nbytes

    def encode(self, n):
        return int(n).to_bytes(self.nbytes, "little"), int(n)


F_ENERGY = Num(4, 2, floor=True)            # XXXXXX.XX kWh
F_ENERGY_S = Num(4, 2, signed=True, floor=True)  # combined: top bit = sign
F_VOLT = Num(2, 1)                          # XXX.X V
F_CURR = Num(3, 3, signed=True)             # XXX.XXX A
F_POWER = Num(3, 4, signed=True)            # XX.XXXX kW
F_PF = Num(2, 3, signed=True)               # X.XXX
F_FREQ = Num(2, 2)                          # XX.XX Hz

PHASES = "abc"
TARIFF_SUFFIX = ["", "_t1", "_t2", "_t3", "_t4"]
ENERGY_KIND = {0x00: ("combined", F_ENERGY_S),    # DI2 00 combined active
               0x01: ("import", F_ENERGY),        # DI2 01 forward active
               0x02: ("export", F_ENERGY)}        # DI2 02 reverse active


def _build_di_table():
    """THE DI table.  DI (as written DI3 DI2 DI1 DI0) -> list of
    (canonical name, format).  A block (DI1 or DI0 = FF) is a list of the
    members in reply order."""
    t = {}
    # 00 KK TT 00: energy, KK kind, TT 00 total / 01..04 tariff / FF block
    # (DI0 00 = current; previous settlement periods are not modelled)
    for kk, (kind, fmt) in ENERGY_KIND.items():
        block = []
        for tt in range(5):
            item = ("energy_%s%s_kwh" % (kind, TARIFF_SUFFIX[tt]), fmt)
            t[0x00000000 | kk << 16 | tt << 8] = [item]
            block.append(item)
        t[0x0000FF00 | kk << 16] = block
    # 02 01 PP 00 voltage, 02 02 PP 00 current (PP 01..03 = A..C, FF block)
    for di2, name, fmt in ((0x01, "voltage_%s_v", F_VOLT),
                           (0x02, "current_%s_a", F_CURR)):
        block = []
        for i, p in enumerate(PHASES):
            item = (name % p, fmt)
            t[0x02000000 | di2 << 16 | (i + 1) << 8] = [item]
            block.append(item)
        t[0x0200FF00 | di2 << 16] = block
    # 02 03 PP 00 active power, 02 06 PP 00 power factor (PP 00 = total)
    for di2, tot, ph, fmt in ((0x03, "power_kw", "power_%s_kw", F_POWER),
                              (0x06, "power_factor", "power_factor_%s", F_PF)):
        block = [(tot, fmt)]
        t[0x02000000 | di2 << 16] = [(tot, fmt)]
        for i, p in enumerate(PHASES):
            item = (ph % p, fmt)
            t[0x02000000 | di2 << 16 | (i + 1) << 8] = [item]
            block.append(item)
        t[0x0200FF00 | di2 << 16] = block
    t[0x02800002] = [("frequency_hz", F_FREQ)]            # grid frequency
    t[0x04000101] = [("date", Date4())]                   # YYMMDDWW
    t[0x04000102] = [("time", Time3())]                   # hhmmss
    t[0x04000401] = [("comm_address", Digits6())]         # 通信地址
    t[0x04000402] = [("meter_number", Digits6())]         # 表号
    sw = []
    for n in range(1, 8):                                 # status words 1..7
        item = ("status_word_%d" % n, Word(2))
        t[0x04000500 | n] = [item]
        sw.append(item)
    t[0x040005FF] = sw
    t[0x04000601] = [("combination_word", Word(1))]       # 有功组合方式特征字
    return t


DI_TABLE = _build_di_table()
FREEZE_DAILY_MAX = 62          # 050600nn..: nn = 01..3E
FREEZE_INSTANT_MAX = 3         # 050100nn..: nn = 01..03


def freeze_items(di):
    """05 FF II nn: FF 06 daily / 01 instant, II 00 time, 01 forward active
    block, 02 reverse active block, nn = n-th last record.  Returns
    (kind, n, items) or None."""
    di3, ff, ii, nn = di >> 24, (di >> 16) & 0xFF, (di >> 8) & 0xFF, di & 0xFF
    if di3 != 0x05 or ff not in (0x01, 0x06) or nn == 0:
        return None
    if ii == 0x00:
        items = [("freeze_time", YMDhm5())]
    elif ii in (0x01, 0x02):
        kind = "import" if ii == 0x01 else "export"
        items = [("freeze_energy_%s%s_kwh" % (kind, TARIFF_SUFFIX[tt]), F_ENERGY)
                 for tt in range(5)]
    else:
        return None
    return ("daily" if ff == 0x06 else "instant"), nn, items


# ---------------------------------------------------------------------------
# tariff schedule
# ---------------------------------------------------------------------------
def parse_schedule(sched):
    out = []
    for start, tariff in sched:
        hh, mm = (int(x) for x in str(start).split(":"))
        if not (0 <= hh < 24 and 0 <= mm < 60 and 1 <= int(tariff) <= 4):
            raise ValueError("bad tariff_schedule entry %r" % ([start, tariff],))
        out.append((hh * 60 + mm, int(tariff)))
    if not out:
        raise ValueError("empty tariff_schedule")
    return sorted(out)


def tariff_at(sched, d):
    m = d.hour * 60 + d.minute
    cur = sched[-1][1]                   # before the first start: wraps
    for start, tariff in sched:
        if start <= m:
            cur = tariff
    return cur


def tariff_seconds(sched, a, b):
    """Seconds spent in each tariff between naive datetimes a < b."""
    acc = {1: 0.0, 2: 0.0, 3: 0.0, 4: 0.0}
    cur = a
    while cur < b:
        tariff = tariff_at(sched, cur)
        day0 = dt.datetime.combine(cur.date(), dt.time())
        m = cur.hour * 60 + cur.minute
        nxt = [s for s, _ in sched if s > m]
        boundary = day0 + dt.timedelta(minutes=nxt[0]) if nxt \
            else day0 + dt.timedelta(days=1)
        end = min(boundary, b)
        acc[tariff] += (end - cur).total_seconds()
        cur = end
    return acc


# ---------------------------------------------------------------------------
# meter model
# ---------------------------------------------------------------------------
def _phase_list(v, n=3):
    if isinstance(v, (list, tuple)):
        v = list(v) + [v[-1] if v else 0] * (n - len(v))
        return [float(x) for x in v[:n]]
    return [float(v)] * n


def _energy_regs(v):
    """Config energy value -> [total, t1..t4] in 1e-6 kWh."""
    def u(x):
        return int(round(float(x) * UNITS))
    if isinstance(v, (int, float)):
        return [u(v), 0, 0, 0, 0]
    if isinstance(v, (list, tuple)):
        regs = [u(x) for x in v] + [0] * (5 - len(v))
        return regs[:5]
    if isinstance(v, dict):
        tar = [u(v.get("t%d" % i, 0)) for i in range(1, 5)]
        tot = u(v["total"]) if "total" in v else sum(tar)
        return [tot] + tar
    raise ValueError("bad energy value %r" % (v,))


class Reply:
    def __init__(self, c, data, di=None, values=None, part=None):
        self.c, self.data, self.di = c, bytes(data), di
        self.values, self.part = values, part


class Meter:
    def __init__(self, cfg, bus, now):
        self.addr_str = cfg["address"]
        self.addr = bcd_bytes(self.addr_str)
        self.rng = random.Random(int(self.addr_str))
        self.cfg = None
        self.open = self.cmd_trip = self.alarm = self.keep_power = False
        self.trip_due = self.button_due = None
        self.permit_pending = False
        self.last_tick = now
        self.acc = 0.0
        self.freezes = []          # newest first: (datetime, imp, exp)
        self.instant = []
        self.followup = None       # (di, [parts])
        self.req_count = 0
        self.last_mdt = None
        self.configure(cfg, bus, now, initial=True)

    # -- configuration -----------------------------------------------------
    def configure(self, cfg, bus, now, initial=False):
        old = self.cfg or {}
        self.cfg = cfg
        self.bus = bus
        self.sched = parse_schedule(cfg["tariff_schedule"])
        self.req_count = 0
        changed = lambda k: initial or old.get(k) != cfg.get(k)
        if changed("clock_offset_s"):
            self.offset = float(cfg["clock_offset_s"])
        if changed("relay_open"):
            self.open = self.cmd_trip = bool(cfg["relay_open"])
            self.trip_due = None
        if changed("import_kwh") or changed("export_kwh"):
            self.imp = _energy_regs(cfg["import_kwh"])
            self.exp = _energy_regs(cfg["export_kwh"])
            self.synth_history(now)
        if changed("keep_power"):
            self.keep_power = bool(cfg["keep_power"])
        if changed("alarm"):
            self.alarm = bool(cfg["alarm"])
        self.last_mdt = self.meter_dt(now)

    @property
    def fault(self):
        return self.cfg.get("fault") or {}

    @property
    def max_data(self):
        v = self.cfg.get("max_frame_data") or self.bus["max_frame_data"]
        return max(6, min(255, int(v)))

    @property
    def single(self):
        return int(self.cfg["phases"]) == 1

    # -- clock -----------------------------------------------------------
    def meter_dt(self, now):
        return dt.datetime.fromtimestamp(now + self.offset)

    def set_clock(self, target, now):
        self.offset = target.timestamp() - now
        self.last_mdt = self.meter_dt(now)

    # -- energy ----------------------------------------------------------
    def effective_kw(self):
        return 0.0 if self.open else float(self.cfg["load_kw"])

    def synth_history(self, now):
        days = max(0, min(FREEZE_DAILY_MAX, int(self.cfg["freeze_history_days"])))
        mnow = self.meter_dt(now)
        mid0 = dt.datetime.combine(mnow.date(), dt.time())
        load = self.effective_kw()
        self.freezes = []
        for k in range(days):
            m = mid0 - dt.timedelta(days=k)
            secs = tariff_seconds(self.sched, m, mnow)
            back = {t: int(abs(load) * s / 3600.0 * UNITS) for t, s in secs.items()}
            imp, exp = list(self.imp), list(self.exp)
            regs = imp if load > 0 else exp
            if load:
                regs[0] = max(0, regs[0] - sum(back.values()))
                for t in range(1, 5):
                    regs[t] = max(0, regs[t] - back[t])
            self.freezes.append((m, imp, exp))

    def tick(self, now):
        d = now - self.last_tick
        self.last_tick = now
        if self.trip_due is not None and now >= self.trip_due:
            self.trip_due = None
            self.open = True
        if self.button_due is not None and now >= self.button_due:
            self.button_due = None
            self.press_button()
        mnow = self.meter_dt(now)
        if d > 0:
            load = self.effective_kw()
            if load:
                self.acc += abs(load) * float(self.cfg["speedup"]) * d / 3600.0 * UNITS
                inc = int(self.acc)
                self.acc -= inc
                regs = self.imp if load > 0 else self.exp
                regs[0] += inc
                regs[tariff_at(self.sched, mnow)] += inc
                cmax = self.cfg.get("counter_max_kwh")
                if cmax:
                    for t in range(5):
                        regs[t] %= int(Fraction(cmax) * UNITS)
        if self.last_mdt is not None and mnow.date() > self.last_mdt.date():
            m = dt.datetime.combine(mnow.date(), dt.time())
            self.freezes.insert(0, (m, list(self.imp), list(self.exp)))
            del self.freezes[FREEZE_DAILY_MAX:]
        self.last_mdt = mnow

    def press_button(self):
        if self.permit_pending and not self.fault.get("relay_stuck"):
            self.open = False
            self.permit_pending = False

    # -- snapshot of everything readable -----------------------------------
    def snapshot(self, now):
        s = {}
        cw = int(self.cfg["combination_word"])
        for t in range(5):
            sfx = TARIFF_SUFFIX[t]
            s["energy_import%s_kwh" % sfx] = Fraction(self.imp[t], UNITS)
            s["energy_export%s_kwh" % sfx] = Fraction(self.exp[t], UNITS)
            comb = 0
            comb += self.imp[t] if cw & 1 else 0
            comb -= self.imp[t] if cw & 2 else 0
            comb += self.exp[t] if cw & 4 else 0
            comb -= self.exp[t] if cw & 8 else 0
            s["energy_combined%s_kwh" % sfx] = Fraction(comb, UNITS)
        nph = 1 if self.single else 3
        volts = _phase_list(self.cfg["voltage_v"])[:nph]
        pfs = _phase_list(self.cfg["power_factor"])[:nph]
        p = self.effective_kw()
        share = self.cfg.get("phase_share")
        if share is not None:
            share = _phase_list(share)[:nph]
        else:
            live = [1.0 if u > 0 else 0.0 for u in volts]
            if not any(live):
                live = [1.0] * nph
            share = [x / sum(live) for x in live]
        sign = -1 if p < 0 else 1
        cur_cfg = self.cfg.get("current_a")
        for i in range(3):
            ph = PHASES[i]
            if i >= nph:
                for k in ("voltage_%s_v", "current_%s_a", "power_%s_kw",
                          "power_factor_%s"):
                    s[k % ph] = None
                continue
            pp = p * share[i]
            s["voltage_%s_v" % ph] = volts[i]
            s["power_%s_kw" % ph] = pp
            s["power_factor_%s" % ph] = sign * abs(pfs[i])
            if cur_cfg is not None:
                cur = 0.0 if self.open else sign * abs(_phase_list(cur_cfg)[i])
            else:
                den = volts[i] * abs(pfs[i])
                cur = pp * 1000.0 / den if den else 0.0
            s["current_%s_a" % ph] = cur
        s["power_kw"] = p
        s["power_factor"] = sign * abs(pfs[0] if nph == 1 else
                                       sum(pfs) / len(pfs))
        s["frequency_hz"] = float(self.cfg["frequency_hz"])
        mdt = self.meter_dt(now)
        s["date"] = s["time"] = mdt
        s["comm_address"] = self.addr_str
        s["meter_number"] = str(self.cfg.get("meter_number") or self.addr_str)
        for n in range(1, 8):
            s["status_word_%d" % n] = 0
        s["status_word_3"] = self.status_word_3()
        s["combination_word"] = int(self.cfg["combination_word"]) & 0xFF
        return s

    def status_word_3(self):
        w = 0
        w |= 0x0010 if self.open else 0
        w |= 0x0040 if self.cmd_trip else 0
        w |= 0x0080 if self.alarm else 0
        w |= (int(self.cfg["meter_type"]) & 3) << 8
        w |= 0x1000 if self.keep_power else 0
        return w

    # -- reading -----------------------------------------------------------
    def read_items(self, di, now):
        """-> (payload bytes, values dict) or None (no requested data)."""
        fr = freeze_items(di)
        if fr is not None:
            kind, n, items = fr
            recs = self.freezes if kind == "daily" else self.instant
            if n > len(recs):
                return None
            when, imp, exp = recs[n - 1]
            src = {"freeze_time": when}
            for t in range(5):
                src["freeze_energy_import%s_kwh" % TARIFF_SUFFIX[t]] = Fraction(imp[t], UNITS)
                src["freeze_energy_export%s_kwh" % TARIFF_SUFFIX[t]] = Fraction(exp[t], UNITS)
        else:
            items = DI_TABLE.get(di)
            if items is None:
                return None
            src = self.snapshot(now)
        payload, values = b"", {}
        for name, fmt in items:
            v = src.get(name)
            if v is None:
                continue                       # phase B/C of single phase
            b, shown = fmt.encode(v)
            payload += b
            values[name] = shown
        if not values:
            return None
        if "date" in values:
            values["weekday"] = (src["date"].weekday() + 1) % 7
        if "status_word_3" in values:
            w = values["status_word_3"]
            values.update(relay_open=bool(w & 0x10), relay_cmd_trip=bool(w & 0x40),
                          prealarm=bool(w & 0x80), keep_power=bool(w & 0x1000))
        return payload, values

    def do_read(self, f, now):
        if len(f.data) < 4:
            return Reply(0xD1, [ERR_OTHER], values={"err": ERR_OTHER})
        di = f.di
        r = self.read_items(di, now)
        if r is None:
            return Reply(0xD1, [ERR_NO_DATA], di, {"err": ERR_NO_DATA})
        payload, values = r
        full = f.data[:4] + payload
        limit = self.max_data
        if len(full) <= limit:
            self.followup = None
            return Reply(0x91, full, di, values)
        first, rest = full[:limit], full[limit:]
        step = limit - 5                       # DI + part + SEQ <= limit
        parts = [rest[i:i + step] for i in range(0, len(rest), step)]
        self.followup = (di, parts)
        return Reply(0xB1, first, di, values)

    def do_read_followup(self, f, now):
        if len(f.data) < 5:
            return Reply(0xD2, [ERR_OTHER], values={"err": ERR_OTHER})
        di, seq = f.di, f.data[4]
        if not self.followup or self.followup[0] != di or \
                not 1 <= seq <= len(self.followup[1]):
            return Reply(0xD2, [ERR_NO_DATA], di, {"err": ERR_NO_DATA})
        parts = self.followup[1]
        more = seq < len(parts)
        return Reply(0xB2 if more else 0x92, f.data[:4] + parts[seq - 1] + bytes([seq]),
                     di, None, part=seq)

    # -- password ------------------------------------------------------------
    def password_ok(self, pa_p):
        """PA P0 P1 P2 against password_level + password (digits P2P1P0)."""
        pw = str(self.cfg["password"]).zfill(6)
        want = bytes([int(self.cfg["password_level"]) & 0xFF]) + bcd_bytes(pw)
        return bytes(pa_p) == want

    # -- write ---------------------------------------------------------------
    def do_write(self, f, now):
        d = f.data
        if len(d) < 12:
            return Reply(0xD4, [ERR_OTHER], values={"err": ERR_OTHER})
        di = f.di
        if not self.password_ok(d[4:8]):
            e = int(self.cfg["err_password"])
            return Reply(0xD4, [e], di, {"err": e})
        val = d[12:]
        cur = self.meter_dt(now)
        try:
            if di == 0x04000101 and len(val) == 4:      # YYMMDDWW
                yy, mm, dd = bcd_int(val[3:4]), bcd_int(val[2:3]), bcd_int(val[1:2])
                target = cur.replace(year=2000 + yy, month=mm, day=dd)
            elif di == 0x04000102 and len(val) == 3:    # hhmmss
                hh, mi, ss = bcd_int(val[2:3]), bcd_int(val[1:2]), bcd_int(val[0:1])
                target = cur.replace(hour=hh, minute=mi, second=ss, microsecond=0)
            else:
                return Reply(0xD4, [ERR_NO_DATA], di, {"err": ERR_NO_DATA})
        except (TypeError, ValueError):
            return Reply(0xD4, [ERR_OTHER], di, {"err": ERR_OTHER})
        self.set_clock(target, now)
        return Reply(0x94, b"", di, {"clock": target.isoformat()})

    # -- freeze --------------------------------------------------------------
    def do_freeze(self, f, now):
        if len(f.data) != 4:
            return Reply(0xD6, [ERR_OTHER], values={"err": ERR_OTHER})
        if f.data == b"\x99\x99\x99\x99":
            m = self.meter_dt(now).replace(second=0, microsecond=0)
            self.instant.insert(0, (m, list(self.imp), list(self.exp)))
            del self.instant[FREEZE_INSTANT_MAX:]
        return Reply(0x96, b"", values={"freeze": f.data[::-1].hex()})

    # -- remote control --------------------------------------------------------
    def do_remote(self, f, now):
        d = f.data

        def abn(e, why):
            return Reply(0xDC, [e], values={"err": e, "reason": why})

        if len(d) != 16:
            return abn(ERR_OTHER, "length")
        if not self.password_ok(d[0:4]):
            return abn(int(self.cfg["err_password"]), "password")
        n1 = d[8]
        dl = d[10:16]                          # ss mm hh DD MM YY
        try:
            ss, mi, hh, dd, mo, yy = (bcd_int(dl[i:i + 1]) for i in range(6))
            deadline = dt.datetime(2000 + yy, mo, dd, hh, mi, ss)
        except (TypeError, ValueError):
            return abn(ERR_OTHER, "deadline format")
        if deadline < self.meter_dt(now):
            return abn(int(self.cfg["err_expired"]), "deadline expired")
        stuck = bool(self.fault.get("relay_stuck"))
        if n1 == 0x1A:                                   # trip
            if self.keep_power:
                return abn(int(self.cfg["err_keep_power"]), "keep power")
            self.cmd_trip = True
            self.permit_pending = False
            self.button_due = None
            if not stuck and not self.open:
                delay = float(self.cfg["trip_delay_s"])
                if delay > 0:
                    if self.trip_due is None:
                        self.trip_due = now + delay
                else:
                    self.open = True
        elif n1 == 0x1B:                                 # close permit
            self.cmd_trip = False
            self.trip_due = None
            if self.open:
                self.permit_pending = True
                auto = self.cfg.get("auto_button_after_s")
                if auto is not None:
                    self.button_due = now + float(auto)
        elif n1 == 0x1C:                                 # direct close
            self.cmd_trip = False
            self.trip_due = None
            self.permit_pending = False
            self.button_due = None
            if not stuck:
                self.open = False
        elif n1 in (0x2A, 0x2B):                         # pre-trip alarm
            self.alarm = n1 == 0x2A
        elif n1 in (0x3A, 0x3B):                         # keep power
            self.keep_power = n1 == 0x3A
        else:
            return abn(ERR_OTHER, "unknown N1")
        return Reply(0x9C, b"", values={
            "n1": n1, "operator": d[4:8][::-1].hex().upper(),
            "status_word_3": self.status_word_3()})

    # -- dispatch ----------------------------------------------------------
    def handle(self, f, now):
        fn = f.c & 0x1F
        if fn == 0x11:
            return self.do_read(f, now)
        if fn == 0x12:
            return self.do_read_followup(f, now)
        if fn == 0x14:
            return self.do_write(f, now)
        if fn == 0x16:
            return self.do_freeze(f, now)
        if fn == 0x1C:
            return self.do_remote(f, now)
        if fn == 0x17:
            return Reply(0xD7, [ERR_BAUD], values={"err": ERR_BAUD})
        return Reply(0xC0 | fn, [ERR_OTHER], values={"err": ERR_OTHER})

    def matches(self, addr6):
        return all(a == WILDCARD or a == b for a, b in zip(addr6, self.addr))

    def request_fault(self, di):
        """Fault dict active for this request ({} if none)."""
        fl = {k: v for k, v in self.fault.items() if k != "relay_stuck"}
        if not fl:
            return {}
        self.req_count += 1
        every = int(fl.pop("every", 1) or 1)
        only = fl.pop("di", None)
        if only is not None:
            wanted = {int(x, 16) for x in only}
            if di not in wanted:
                return {}
        if self.req_count % every:
            return {}
        return fl


def decode_control(d):
    """The fields of a 1CH request's data (PA P0 P1 P2 C0..C3 N1 N2 N3..N8),
    for the log; None unless it is 16 bytes long."""
    if len(d) != 16:
        return None
    dl = d[10:16]                                       # ss mm hh DD MM YY
    digits = [bcd_int(dl[i:i + 1]) for i in range(6)]
    if None in digits:
        deadline = hexs(dl)
    else:
        ss, mi, hh, dd, mo, yy = digits
        deadline = "20%02d-%02d-%02d %02d:%02d:%02d" % (yy, mo, dd, hh, mi, ss)
    return {"level": d[0], "password": bytes_digits(d[1:4]),
            "operator": bytes_digits(d[4:8]), "n1": d[8], "n2": d[9],
            "deadline": deadline}


# ---------------------------------------------------------------------------
# bus / simulator
# ---------------------------------------------------------------------------
def load_config(path):
    with open(path) as fh:
        raw = json.load(fh)
    bus = dict(DEFAULT_BUS)
    bus.update(raw.get("bus") or {})
    make_wire(bus)                   # raises on a bad "wire"
    defaults = dict(DEFAULT_METER)
    defaults.update(raw.get("defaults") or {})
    meters = []
    seen = set()
    for m in raw.get("meters") or []:
        cfg = copy.deepcopy(defaults)
        cfg.update(m)
        a = str(cfg.get("address") or "")
        if len(a) != 12 or not a.isdigit():
            raise ValueError("meter address must be 12 digits: %r" % a)
        if a in seen:
            raise ValueError("duplicate meter address %s" % a)
        seen.add(a)
        cfg["address"] = a
        for k in m:
            if k not in DEFAULT_METER:
                warn("unknown meter key %r (meter %s)" % (k, a))
        for k in (cfg.get("fault") or {}):
            if k not in FAULT_KEYS:
                warn("unknown fault key %r (meter %s)" % (k, a))
        if not 0 <= int(cfg["preamble"]) <= 4:
            raise ValueError("preamble must be 0..4")
        parse_schedule(cfg["tariff_schedule"])
        _energy_regs(cfg["import_kwh"])
        _energy_regs(cfg["export_kwh"])
        meters.append(cfg)
    return bus, meters


def make_wire(bus):
    """The bus's emulated line timing (wire.py), or None for a pty's."""
    return Wire.from_config(bus.get("wire"), WIRE_DEFAULT_BAUD,
                            float(bus.get("turnaround_ms") or 0))


def warn(msg):
    sys.stderr.write("dlt645_sim: %s\n" % msg)
    sys.stderr.flush()


def hexs(b):
    return bytes(b).hex().upper()


def open_port(port):
    """Open 8E1 (baud is irrelevant on a pty).  A Linux pty cannot keep PARENB:
    the first tcsetattr succeeds because the other changes apply, but opening
    the same pty slave a second time (e.g. simulator restarted on the same
    socat pair) fails with EINVAL when parity is the only change left; fall
    back to 8N1 then -- a pty carries no parity bit either way."""
    kw = dict(baudrate=2400, bytesize=serial.EIGHTBITS,
              stopbits=serial.STOPBITS_ONE, timeout=0)
    try:
        return serial.Serial(port, parity=serial.PARITY_EVEN, **kw)
    except (serial.SerialException, OSError, termios.error) as e:
        if not os.path.exists(port):
            raise
        warn("8E1 not accepted on %s (%s); using 8N1" % (port, e))
        return serial.Serial(port, parity=serial.PARITY_NONE, **kw)


class Simulator:
    def __init__(self, port, config_path, log_path):
        self.config_path = config_path
        self.ser = open_port(port)
        self.fd = self.ser.fileno()
        self.log_fh = open(log_path, "a", buffering=1) if log_path else None
        self.parser = FrameParser()
        self.meters = {}
        self.bus = dict(DEFAULT_BUS)
        self.txq = []                 # (due, seq, bytes, record, monotonic not before)
        self.txseq = 0
        self.wire = None              # the emulated line, when the bus has "wire"
        self.rx_backlog = []          # (wall, monotonic, bytes) read while sending
        self.request_end = None       # monotonic emulated end of the request in hand
        self.stop = self.hup = self.usr1 = False
        self.apply_config(*load_config(config_path), initial=True)

    # -- config --------------------------------------------------------------
    def apply_config(self, bus, meter_cfgs, initial=False):
        now = time.time()
        self.bus = bus
        wire = make_wire(bus)
        if wire is not None:
            wire.adopt(self.wire)
        self.wire = wire
        new = {}
        for cfg in meter_cfgs:
            a = cfg["address"]
            m = self.meters.get(a)
            if m is None:
                m = Meter(cfg, bus, now)
            else:
                m.tick(now)
                m.configure(cfg, bus, now)
            new[a] = m
        self.meters = new
        if not initial:
            warn("config reloaded: %d meter(s)" % len(new))

    def reload(self):
        try:
            self.apply_config(*load_config(self.config_path))
        except Exception as e:                       # keep the old config
            warn("reload failed, keeping old config: %s" % e)

    # -- logging ---------------------------------------------------------------
    def log(self, rec):
        if self.log_fh:
            rec.setdefault("t", time.time())
            self.log_fh.write(json.dumps(rec, sort_keys=False) + "\n")

    # -- io --------------------------------------------------------------------
    def write(self, data):
        view = memoryview(bytes(data))
        while view:
            try:
                n = os.write(self.fd, view)
            except BlockingIOError:
                select.select([], [self.fd], [], 0.1)
                continue
            view = view[n:]

    def queue_tx(self, due, wire, rec, not_before=None):
        self.txseq += 1
        self.txq.append((due, self.txseq, wire, rec, not_before))
        self.txq.sort(key=lambda x: (x[0], x[1]))

    def flush_due(self, now):
        while self.txq and self.txq[0][0] <= now:
            _, _, wire, rec, not_before = self.txq.pop(0)
            if self.wire is not None:
                self.parser.forget_skipped()
                rec = dict(rec)
                end = time.monotonic()
                if wire:
                    sent = self.wire.send(wire, not_before or 0.0, self.write, self.wire_wait)
                    if sent is None:
                        return
                    end = sent[1]
                rec["t_end"] = wall(end)
                parts = {"turnaround_s": round(self.wire.turnaround_s, 7) if wire else 0.0,
                         "reply_s": round(self.wire.frame_s(len(wire)), 7)}
                rec["wire"] = parts
                rec["wire_s"] = round(sum(parts.values()), 7)
                self.log(dict({"t": time.time()}, **rec))
                continue
            if wire:
                self.write(wire)
            if self.bus.get("log_times"):
                rec = dict(rec, t_end=time.time())
            self.log(dict({"t": time.time()}, **rec))

    def wire_wait(self, deadline):
        """Wait for a paced reply: bytes the master sends meanwhile are kept
        with their arrival time for the main loop. False on a stop."""
        while not self.stop:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            r, _, _ = select.select([self.fd], [], [], left)
            if r:
                try:
                    data = os.read(self.fd, 4096)
                except (BlockingIOError, OSError):
                    data = b""
                if data:
                    self.rx_backlog.append((time.time(), time.monotonic(), data))
        return False

    # -- frame handling -----------------------------------------------------------
    def handle_frame(self, f, now):
        di = f.di
        rec = {"t": now, "dir": "rx", "addr": bytes_digits(f.addr), "c": f.c,
               "di": "%08X" % di if di is not None else None,
               "hex": hexs(f.raw), "values": None, "fault": None}
        if f.c == 0x1C:
            rec["control"] = decode_control(f.data)
        self.request_end = None
        if self.wire is not None:
            w = self.wire
            end = w.request_end(f.rx_first, f.rx_last, f.wire_len)
            violation = w.request_arrived(f.rx_first, end)
            self.request_end = end
            parts = {"request_s": round(w.frame_s(f.wire_len), 7),
                     "gap_s": round(w.t35_s, 7)}
            rec.update({"t_end": wall(end), "wire": parts,
                        "wire_s": round(sum(parts.values()), 7),
                        "gap_violation": violation,
                        "gap_violations": w.gap_violations})
        elif self.bus.get("log_times"):
            rec["t_end"] = now
        self.log(rec)
        if f.c & 0x80:
            return                                   # not a master frame
        fn = f.c & 0x1F
        for m in self.meters.values():
            m.tick(now)
        if f.addr == BROADCAST:
            if fn == 0x08:
                self.broadcast_time(f, list(self.meters.values()), now)
            elif fn == 0x16 and len(f.data) == 4:
                for m in self.meters.values():
                    m.do_freeze(f, now)
            return
        if fn == 0x13:
            # read address: only a lone meter may answer (see docstring)
            matched = list(self.meters.values())
            if len(matched) == 1 and not matched[0].matches(f.addr):
                return
        else:
            matched = [m for m in self.meters.values() if m.matches(f.addr)]
            for m in self.meters.values():
                if m.cfg.get("answer_all") and m not in matched and fn != 0x08:
                    self.respond(m, f, m.handle(f, now), now, {"answer_all": True})
        if len(matched) > 1:
            self.log({"dir": "tx", "addr": None, "c": None, "di": None, "hex": "",
                      "values": None, "fault": "collision"})
            return
        if not matched:
            return
        m = matched[0]
        if fn == 0x08:                               # addressed time set
            self.broadcast_time(f, [m], now)
            return
        fault = m.request_fault(di)
        if fault.get("silence"):
            self.log({"dir": "tx", "addr": m.addr_str, "c": None,
                      "di": "%08X" % di if di is not None else None, "hex": "",
                      "values": None, "fault": "silence"})
            return
        if fault.get("err") is not None and fault.get("err") is not False:
            e = int(fault["err"]) & 0xFF
            rep = Reply(0xC0 | fn, [e], di, {"err": e})
        elif fn == 0x13:
            rep = Reply(0x93, m.addr, values={"comm_address": m.addr_str})
        else:
            rep = m.handle(f, now)
        self.respond(m, f, rep, now, fault)

    def broadcast_time(self, f, meters, now):
        d = f.data
        if len(d) != 6:
            return
        try:
            ss, mi, hh, dd, mo, yy = (bcd_int(d[i:i + 1]) for i in range(6))
            target = dt.datetime(2000 + yy, mo, dd, hh, mi, ss)
        except (TypeError, ValueError):
            return
        for m in meters:
            # Meters refuse a broadcast correction beyond their limit (about
            # 5 minutes in the field): the clock stays as it was.
            limit = m.cfg["max_broadcast_correction_s"]
            if limit is not None and abs(target.timestamp() - now - m.offset) > limit:
                self.log({"dir": "note", "addr": m.addr_str,
                          "note": "broadcast time refused: correction beyond %s s" % limit})
                continue
            m.set_clock(target, now)

    def respond(self, m, f, rep, now, fault=None):
        fault = fault or {}
        faults = []
        addr = m.addr
        wa = fault.get("wrong_addr")
        if wa:
            if isinstance(wa, str):
                addr = bcd_bytes(wa)
            else:
                addr = bytes([m.addr[0] ^ 0x01]) + m.addr[1:]
            faults.append("wrong_addr")
        if fault.get("err") is not None and fault.get("err") is not False:
            faults.append("err=%d" % (int(fault["err"]) & 0xFF))
        if fault.get("answer_all"):
            faults.append("answer_all")
        frame = bytearray(build_frame(addr, rep.c, rep.data))
        if fault.get("bad_checksum"):
            frame[-2] = (frame[-2] + 1) & 0xFF
            faults.append("bad_checksum")
        tr = fault.get("truncate")
        if tr:
            n = 4 if tr is True else int(tr)
            frame = frame[:max(1, len(frame) - n)]
            faults.append("truncate=%d" % n)
        wire = bytes([0xFE] * int(m.cfg["preamble"]))
        for key in ("noise_before", "noise_after"):
            nz = fault.get(key)
            if nz:
                noise = bytes.fromhex(nz.replace(" ", "")) if isinstance(nz, str) \
                    else bytes(m.rng.randrange(256) for _ in range(int(nz)))
                faults.append(key)
                if key == "noise_before":
                    wire = noise + wire
                else:
                    frame = frame + noise
        wire += bytes(frame)
        delay = float(self.bus.get("turnaround_ms") or 0) / 1000.0
        if self.wire is not None:
            delay = self.wire.turnaround_s   # counted from the request's end
        if fault.get("delay_ms"):
            delay += float(fault["delay_ms"]) / 1000.0
            faults.append("delay_ms=%g" % float(fault["delay_ms"]))
        rec = {"dir": "tx", "addr": m.addr_str, "c": rep.c,
               "di": "%08X" % rep.di if rep.di is not None else None,
               "hex": hexs(wire), "values": rep.values,
               "fault": ",".join(faults) if faults else None}
        if rep.part is not None:
            rec["part"] = rep.part
        if self.wire is not None and self.request_end is not None:
            not_before = self.request_end + delay
            self.queue_tx(wall(not_before), wire, rec, not_before)
            return
        self.queue_tx(now + delay, wire, rec)

    # -- main loop ---------------------------------------------------------------
    def run(self):
        sys.stdout.write("READY\n")
        sys.stdout.flush()
        while not self.stop:
            timeout = 0.02
            if self.txq:
                timeout = max(0.0, min(timeout, self.txq[0][0] - time.time()))
            if self.rx_backlog:
                timeout = 0.0
            try:
                r, _, _ = select.select([self.fd], [], [], timeout)
            except InterruptedError:
                r = []
            chunks, self.rx_backlog = self.rx_backlog, []
            if r:
                try:
                    data = os.read(self.fd, 4096)
                    chunks.append((time.time(), time.monotonic(), data))
                except BlockingIOError:
                    pass
                except OSError as e:                 # peer gone (EIO)
                    warn("read error: %s" % e)
                    time.sleep(0.05)
            now = time.time()
            frames = []
            for _, mono, data in chunks:
                if not data:
                    continue
                if self.bus.get("echo"):
                    self.write(data)
                    self.log({"t": now, "dir": "echo", "addr": None, "c": None,
                              "di": None, "hex": hexs(data), "values": None,
                              "fault": None})
                frames += self.parser.feed(data, now, mono)
            frames += self.parser.expire(now)
            for f in frames:
                self.handle_frame(f, now)
            for m in self.meters.values():
                m.tick(now)
            self.flush_due(time.time())
            if self.hup:
                self.hup = False
                self.reload()
            if self.usr1:
                self.usr1 = False
                for m in self.meters.values():
                    m.press_button()
        if self.log_fh:
            self.log_fh.close()
        self.ser.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", required=True, help="serial device (pty end)")
    ap.add_argument("--config", required=True, help="JSON config file")
    ap.add_argument("--log", help="append JSON-lines frame log here")
    args = ap.parse_args(argv)
    sim = Simulator(args.port, args.config, args.log)

    def on_stop(signum, frame):
        sim.stop = True

    def on_hup(signum, frame):
        sim.hup = True

    def on_usr1(signum, frame):
        sim.usr1 = True

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)
    signal.signal(signal.SIGUSR1, on_usr1)
    sim.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
