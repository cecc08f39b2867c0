#!/usr/bin/python3
"""Modbus RTU slave simulator: many meters on one serial line, with fault injection.

Test peer for meterhub. One process answers for every slave id listed in a
JSON config, on one serial port (in tests: one end of a socat pty pair that
stands in for the RS485 bus).

Usage (run with Debian's python, which has python3-pymodbus and python3-serial):

    /usr/bin/python3 test/sim/modbus_sim.py --port /dev/pts/N --baud 9600 \
        --parity N --config sim.json [--log requests.jsonl]

* Prints ``READY`` on stdout once it is serving.
* SIGHUP re-reads the config (values and faults; values written by the master
  since the last load are discarded) without closing the port. A config that
  fails to load is reported on stderr and the previous one stays active.
* SIGTERM / SIGINT stop it with exit status 0. A config error at start exits 2,
  losing the serial port exits 1.
* ``--log`` appends one JSON line per request frame with a valid CRC, also for
  slaves that are not answered::

      {"t": 1700000000.12, "slave": 1, "fc": 3, "address": 0, "count": 10,
       "answered": true, "fault": null, "hex": "01030000000AC5CD", "reply": "0103..."}

  ``answered`` tells whether any byte was sent back, ``fault`` names the fault
  injected into this request (null if none); ``intruders`` (only when some
  answered) lists the answer_all slaves that answered a request to another.
  ``hex`` is the request frame as received (CRC included), ``reply`` the
  bytes sent back exactly as written, faults included ("" when nothing was
  sent), both upper-case hex. Write requests also carry
  ``"values"``: the registers or bits (0/1) the master wrote. ``address`` and
  ``count`` are null for function codes other than 1-6, 15, 16. The writes a
  slave received are its entries with fc 5, 15 (coils) or 6, 16 (registers);
  every request is logged once, whether or not it was executed or answered.

  With ``wire`` (or ``log_times``) an entry also has ``t_end``: the wall
  time the last byte of the reply was written (for an unanswered request,
  when it was handled; with ``wire``, its emulated end). With ``wire`` it
  has what the exchange needs on a real line, in seconds, and the gap
  check::

      "wire": {"request_s": 0.00917, "silence_s": 0.00401, "turnaround_s": 0.005,
               "reply_s": 0.01031, "gap_s": 0.00401},
      "wire_s": 0.0325, "gap_violation": false, "gap_violations": 0

  ``request_s`` and ``reply_s`` are the bytes' wire time (every reply to the
  request, intruders included), ``silence_s`` the t3.5 that ends the request,
  ``gap_s`` the t3.5 the line needs after the reply before the next frame
  (the turnaround, reply and gap are 0 when nothing answered). ``wire_s`` is
  their sum: the physical limit of a sweep is the sum of its requests'
  ``wire_s``, less the last one's ``gap_s``. ``gap_violations`` counts the
  violations since start.

Config::

    {"echo": false,
     "slaves": {
       "1": {"holding": {"0": 17258}, "input": {"16": 2301},
             "coil": {"0": 0}, "discrete": {"0": 1},
             "typed": [{"table": "holding", "address": 100, "type": "float32",
                        "word_order": "big", "value": 1234.5}],
             "relay": {"coil": 0, "discrete": 0, "invert": false},
             "relay_delay_ms": 0,
             "fault": null},
       "2": {"holding": {"0": 1}, "fault": {"kind": "silent"}}}}

* Tables are sparse maps from decimal address to raw value (0..65535, bits 0/1).
  Any access touching an address that is not mapped gets exception 02.
  ``typed`` entries (holding/input only) are encoded with ``encode_typed`` and
  applied after the plain maps, overriding them where they overlap.
* Supported function codes: 1, 2, 3, 4, 5, 6, 15, 16; others get exception 01.
* ``relay``: a successful coil write covering ``coil`` sets discrete input
  ``discrete`` to the coil value (inverted if ``invert``). Missing relay
  addresses are created (coil 0, discrete mirrored from the coil).
* ``relay_delay_ms`` (needs ``relay``; default 0): the relay input moves this
  many ms after the coil write was executed (and answered), like a breaker
  that takes time to operate; reads in between see the old state. Each write
  schedules its own move, applied in order, so a coil written back before
  the delay ends leaves the input where the last write put it. Moves still
  pending are dropped by a reload.
* Slave ids not in the config are never answered. Broadcast (slave 0) writes
  are executed on every configured slave and never answered.
* ``echo`` (default false): every byte the master sends comes back at once,
  before any answer, as a half-duplex RS485 adapter that hears itself does it.
* ``wire`` (default none: a pty's timing, every byte at once): the line is
  made as slow as a real one (see wire.py)::

      "wire": {"baud": 9600, "bits_per_char": 11, "turnaround_ms": 5}

  ``baud`` defaults to ``--baud``, ``bits_per_char`` to 11 (8E1, 8O1, 8N2;
  8N1 is 10), ``turnaround_ms`` to 0. One character takes bits_per_char /
  baud s and t3.5 is 3.5 of them (1.75 ms above 19200 baud). A request is
  received when its bytes would have arrived (its first byte's arrival +
  length x character time, or its last byte's arrival if later); the reply
  starts no earlier than the t3.5 silence that ends the request plus
  ``turnaround_ms`` after that, nor before the line is free, and byte k of
  it is written no earlier than its start + k x character time. A ``late``
  fault's delay adds to that. The echo, when on, stays immediate (the
  master's own bytes). A request whose first byte comes less than t3.5
  after the end of the previous frame on the line (the last reply, or the
  previous request when nothing answered it) is a gap violation: a
  protocol error on a real RS485 line. It is still served, and counted.
  A reload keeps the line's state and its count.
* ``log_times`` (default false): log ``t_end`` without emulating the wire.

Faults (``"fault": {"kind": ...}``, at most one per slave):

    silent                      never answers (the request is not executed)
    late        delay_ms=1000   answers correctly after the delay
    bad_crc                     answers with both CRC bytes inverted
    noise       after=false     1-8 random bytes before (and after) the answer
    exception   code=4          answers with this exception code (not executed)
    truncated                   sends only the first half of the answer
    wrong_slave id=slave+1      answers with another slave id (valid CRC)
    stuck_relay                 acknowledges coil writes, relay input never moves
    answer_all                  also answers every request to another slave id
                                (configured or not), before that slave does:
                                executed on its own registers, sent with its own
                                id; its own requests are served normally. The
                                request's log line lists it in "intruders".

Optional ``"every": N`` injects the fault only into the Nth, 2Nth, ... request
to that slave (counted from start or from the last reload); the other requests
are served normally. Faults other than silent and exception execute the request
(writes take effect) and only spoil the answer on the wire.

Design: pymodbus (3.0) provides the Modbus semantics -- request PDU decoding,
the sparse datastores and request execution with its exception replies. The
RTU link layer (frame delimiting, CRC, resynchronisation, answering) is our own
on top of pyserial, because the faults corrupt the wire bytes, frames for
unknown slaves must still be logged, and the pymodbus 3.0 RTU framer discards
its whole receive buffer on a CRC error or a frame for another slave, losing
frames that follow back to back.
"""

import argparse
import json
import os
import random
import select
import signal
import struct
import sys
import time
from dataclasses import dataclass, field

import serial
from pymodbus.datastore import ModbusSlaveContext, ModbusSparseDataBlock
from pymodbus.factory import ServerDecoder

from wire import Wire, wall

SUPPORTED_FCS = frozenset({1, 2, 3, 4, 5, 6, 15, 16})
WRITE_FCS = frozenset({5, 6, 15, 16})
COIL_WRITE_FCS = frozenset({5, 15})

ILLEGAL_FUNCTION = 0x01
ILLEGAL_DATA_VALUE = 0x03

# Config table name -> (pymodbus slave context keyword, read function code).
TABLES = {
    "coil": ("co", 1),
    "discrete": ("di", 2),
    "holding": ("hr", 3),
    "input": ("ir", 4),
}
BIT_TABLES = frozenset({"coil", "discrete"})

# Fault kind -> allowed optional parameters with their defaults.
FAULT_PARAMS = {
    "silent": {},
    "late": {"delay_ms": 1000},
    "bad_crc": {},
    "noise": {"after": False},
    "exception": {"code": 4},
    "truncated": {},
    "wrong_slave": {"id": None},
    "stuck_relay": {},
    "answer_all": {},
}

# encode_typed type -> big-endian struct format.
TYPE_FORMATS = {
    "u16": ">H",
    "s16": ">h",
    "u32": ">I",
    "s32": ">i",
    "u64": ">Q",
    "float32": ">f",
    "float64": ">d",
}

# A pty has no real baud rate and the scheduler may pause a writer for longer
# than the 4 ms of t3.5 at 9600 baud, so the silence after which an incomplete
# frame is given up is never shorter than this. Complete frames are delimited
# by their length and never wait for the gap.
MIN_GAP_S = 0.02

# request_frame_length() result for function codes whose request length is not
# known: only a silence gap ends such a frame.
UNTIL_GAP = -1


class ConfigError(ValueError):
    """The simulator config is invalid."""


def frame_gap_s(baud):
    """Silence that ends an RTU frame: t3.5 (3.5 characters of 11 bits, fixed
    at 1.75 ms above 19200 baud), but at least MIN_GAP_S."""
    t35 = 3.5 * 11 / baud if baud <= 19200 else 0.00175
    return max(t35, MIN_GAP_S)


def crc16(data):
    """CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF) of data."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def with_crc(body):
    """Return body followed by its CRC, low byte first as RTU sends it."""
    return bytes(body) + crc16(body).to_bytes(2, "little")


def crc_ok(frame):
    """True if frame (at least id, fc and CRC) ends with its correct CRC."""
    return len(frame) >= 4 and crc16(frame[:-2]).to_bytes(2, "little") == frame[-2:]


def encode_typed(type, word_order, value):  # pylint: disable=redefined-builtin
    """Encode value as Modbus 16-bit register words.

    type: u16 s16 u32 s32 u64 float32 float64. word_order: "big" puts the most
    significant word first, "little" the least significant word first; bytes
    within a word are always big-endian, as Modbus transmits registers.
    Example: encode_typed("float32", "big", 1234.5) == [0x449A, 0x5000].
    Raises ValueError for an unknown type or word order, a non-integer value
    for an integer type, or a value out of the type's range.
    """
    if type not in TYPE_FORMATS:
        raise ValueError(f"unknown type {type!r}")
    if word_order not in ("big", "little"):
        raise ValueError(f"unknown word_order {word_order!r}")
    fmt = TYPE_FORMATS[type]
    if type.startswith("float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{type} value must be a number, not {value!r}")
        value = float(value)
    elif isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{type} value must be an integer, not {value!r}")
    try:
        raw = struct.pack(fmt, value)
    except (struct.error, OverflowError) as exc:
        raise ValueError(f"{value!r} does not fit {type}: {exc}") from None
    words = [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2)]
    if word_order == "little":
        words.reverse()
    return words


# --------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------

@dataclass
class Slave:
    """One simulated meter."""

    context: ModbusSlaveContext
    fault: dict | None = None  # validated fault with defaults filled in
    relay: dict | None = None  # {"coil", "discrete", "invert"}
    relay_delay_s: float = 0.0
    requests: int = 0  # requests addressed to it since the config was loaded
    pending: list = field(default_factory=list)  # [(monotonic due, discrete, value)]

    @property
    def stuck_relay(self):
        return bool(self.fault) and self.fault["kind"] == "stuck_relay"

    def active_fault(self):
        """Count one request; return the fault to inject into it, or None."""
        self.requests += 1
        if self.fault and self.requests % self.fault["every"] == 0:
            return self.fault
        return None

    def mirror_relay(self, address, count):
        """Update the relay's discrete input after a coil write of count coils at address."""
        relay = self.relay
        if relay and address <= relay["coil"] < address + count:
            coil = self.context.getValues(1, relay["coil"], 1)[0]
            value = int(bool(coil) != relay["invert"])
            if self.relay_delay_s > 0:
                self.pending.append((time.monotonic() + self.relay_delay_s, relay["discrete"], value))
            else:
                self.context.setValues(2, relay["discrete"], [value])

    def move_relay(self, now):
        """Apply the delayed relay moves due by monotonic time now."""
        while self.pending and self.pending[0][0] <= now:
            _, discrete, value = self.pending.pop(0)
            self.context.setValues(2, discrete, [value])

    def next_move(self):
        return self.pending[0][0] if self.pending else None


def _check_keys(obj, allowed, where):
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: expected an object")
    unknown = set(obj) - set(allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")


def _int_in(value, low, high, where):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{where}: expected an integer {low}..{high}, got {value!r}")
    return value


def _parse_table(raw, table, where):
    """Sparse map {"address": value} -> {int address: int value}."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected an object")
    high = 1 if table in BIT_TABLES else 0xFFFF
    values = {}
    for key, value in raw.items():
        if not key.isdigit():
            raise ConfigError(f"{where}: address {key!r} is not a decimal number")
        address = _int_in(int(key), 0, 0xFFFF, f"{where}[{key}]")
        if isinstance(value, bool):  # allow true/false for bits
            value = int(value)
        values[address] = _int_in(value, 0, high, f"{where}[{key}]")
    return values


def _apply_typed(entries, tables, where):
    if not isinstance(entries, list):
        raise ConfigError(f"{where}: expected a list")
    for i, entry in enumerate(entries):
        at = f"{where}[{i}]"
        _check_keys(entry, ("table", "address", "type", "word_order", "value"), at)
        table = entry.get("table")
        if table not in ("holding", "input"):
            raise ConfigError(f"{at}: table must be holding or input")
        try:
            words = encode_typed(entry.get("type"), entry.get("word_order", "big"), entry.get("value"))
        except ValueError as exc:
            raise ConfigError(f"{at}: {exc}") from None
        address = _int_in(entry.get("address"), 0, 0x10000 - len(words), f"{at}.address")
        for offset, word in enumerate(words):
            tables[table][address + offset] = word


def _parse_fault(raw, where):
    if raw is None:
        return None
    if not isinstance(raw, dict) or raw.get("kind") not in FAULT_PARAMS:
        raise ConfigError(f"{where}: kind must be one of {sorted(FAULT_PARAMS)}")
    params = FAULT_PARAMS[raw["kind"]]
    _check_keys(raw, ("kind", "every", *params), where)
    fault = {"kind": raw["kind"], "every": _int_in(raw.get("every", 1), 1, 1 << 31, f"{where}.every")}
    fault.update(params)
    fault.update({k: v for k, v in raw.items() if k in params})
    if fault["kind"] == "late":
        delay = fault["delay_ms"]
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay < 0:
            raise ConfigError(f"{where}.delay_ms: expected a number >= 0")
    elif fault["kind"] == "noise" and not isinstance(fault["after"], bool):
        raise ConfigError(f"{where}.after: expected true or false")
    elif fault["kind"] == "exception":
        _int_in(fault["code"], 1, 255, f"{where}.code")
    elif fault["kind"] == "wrong_slave" and fault["id"] is not None:
        _int_in(fault["id"], 0, 255, f"{where}.id")
    return fault


def _parse_relay(raw, tables, where):
    if raw is None:
        return None
    _check_keys(raw, ("coil", "discrete", "invert"), where)
    relay = {
        "coil": _int_in(raw.get("coil", 0), 0, 0xFFFF, f"{where}.coil"),
        "discrete": _int_in(raw.get("discrete", 0), 0, 0xFFFF, f"{where}.discrete"),
        "invert": raw.get("invert", False),
    }
    if not isinstance(relay["invert"], bool):
        raise ConfigError(f"{where}.invert: expected true or false")
    coil = tables["coil"].setdefault(relay["coil"], 0)
    tables["discrete"].setdefault(relay["discrete"], int(bool(coil) != relay["invert"]))
    return relay


@dataclass
class BusConfig:
    """What one config file says: the slaves and the options of the line."""

    slaves: dict
    echo: bool = False
    wire: Wire | None = None  # the line's emulated timing, None: a pty's
    log_times: bool = False


def parse_bus(doc, default_baud=9600):
    """Build a BusConfig from a decoded config document."""
    slaves = parse_config(doc)
    for key in ("echo", "log_times"):
        if not isinstance(doc.get(key, False), bool):
            raise ConfigError(f"{key}: expected true or false")
    return BusConfig(slaves=slaves, echo=doc.get("echo", False),
                     wire=Wire.from_config(doc.get("wire"), default_baud),
                     log_times=doc.get("log_times", False))


def parse_config(doc):
    """Build {slave id: Slave} from a decoded config document."""
    _check_keys(doc, ("slaves", "echo", "wire", "log_times"), "config")
    if not isinstance(doc.get("echo", False), bool):
        raise ConfigError("echo: expected true or false")
    slaves_raw = doc.get("slaves", {})
    if not isinstance(slaves_raw, dict):
        raise ConfigError("slaves: expected an object")
    slaves = {}
    for key, raw in slaves_raw.items():
        where = f"slaves[{key}]"
        if not key.isdigit():
            raise ConfigError(f"{where}: slave id is not a decimal number")
        slave_id = _int_in(int(key), 1, 247, where)
        _check_keys(raw, (*TABLES, "typed", "relay", "relay_delay_ms", "fault"), where)
        tables = {name: _parse_table(raw.get(name, {}), name, f"{where}.{name}") for name in TABLES}
        _apply_typed(raw.get("typed", []), tables, f"{where}.typed")
        relay = _parse_relay(raw.get("relay"), tables, f"{where}.relay")
        delay = raw.get("relay_delay_ms", 0)
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay < 0:
            raise ConfigError(f"{where}.relay_delay_ms: expected a number >= 0")
        if delay and relay is None:
            raise ConfigError(f"{where}.relay_delay_ms: needs a relay")
        blocks = {kw: ModbusSparseDataBlock(tables[name]) for name, (kw, _) in TABLES.items()}
        slaves[slave_id] = Slave(
            context=ModbusSlaveContext(zero_mode=True, **blocks),
            fault=_parse_fault(raw.get("fault"), f"{where}.fault"),
            relay=relay,
            relay_delay_s=delay / 1000,
        )
    return slaves


def load_config(path, default_baud=9600):
    """Read and parse the config file into a BusConfig; raises OSError or ValueError."""
    with open(path, encoding="utf-8") as handle:
        doc = json.load(handle)
    return parse_bus(doc, default_baud)


# --------------------------------------------------------------------------
# RTU link layer
# --------------------------------------------------------------------------

def request_frame_length(buf):
    """Length of the RTU request frame starting at buf[0].

    None if more bytes are needed to tell, UNTIL_GAP if the function code does
    not determine it.
    """
    if len(buf) < 2:
        return None
    fc = buf[1]
    if 1 <= fc <= 6:
        return 8  # id, fc, address, count/value, crc
    if fc in (15, 16):
        return 9 + buf[6] if len(buf) >= 7 else None  # ... byte count, data, crc
    return UNTIL_GAP


class RtuReceiver:
    """Cuts a received byte stream into request frames with a valid CRC."""

    def __init__(self, gap_s):
        self.gap_s = gap_s
        self.buf = bytearray()
        self.times = []  # monotonic arrival time of each byte in buf
        self.last_rx = 0.0
        # arrival of the first and the last byte of the frame next_frame() returned
        self.frame_first = self.frame_last = 0.0

    def feed(self, data, now):
        self.buf += data
        self.times += [now] * len(data)
        self.last_rx = now

    def _drop(self, count):
        del self.buf[:count]
        del self.times[:count]

    def gap_deadline(self):
        """Monotonic time at which buffered bytes count as a finished (or stale) frame."""
        return self.last_rx + self.gap_s if self.buf else None

    def next_frame(self, now):
        """Return the next complete frame, or None until more bytes or the gap come.

        A candidate whose CRC fails costs its first byte only, so the search
        resumes one byte later: garbage before a good frame is skipped. An
        incomplete candidate is dropped the same way once the line has been
        silent for the gap, so a stray byte never blocks the receiver.
        """
        silent = now - self.last_rx >= self.gap_s
        while self.buf:
            length = request_frame_length(self.buf)
            if length == UNTIL_GAP:
                if not silent:
                    return None
                length = len(self.buf)
            elif length is None or length > len(self.buf):
                if not silent:
                    return None
                self._drop(1)
                continue
            frame = bytes(self.buf[:length])
            if crc_ok(frame):
                self.frame_first, self.frame_last = self.times[0], self.times[length - 1]
                self._drop(length)
                return frame
            self._drop(1)
        return None


def describe_request(pdu):
    """Log fields (address, count, written values) of a request PDU."""
    fc = pdu[0]
    fields = {"address": None, "count": None}
    if fc not in SUPPORTED_FCS:
        return fields
    address, word = struct.unpack(">HH", pdu[1:5])
    fields["address"] = address
    fields["count"] = 1 if fc in (5, 6) else word
    if fc == 5:
        fields["values"] = [int(word == 0xFF00)]
    elif fc == 6:
        fields["values"] = [word]
    elif fc == 15:
        data = pdu[6:]
        fields["values"] = [(data[i // 8] >> (i % 8)) & 1 for i in range(min(word, 8 * len(data)))]
    elif fc == 16:
        data = pdu[6:]
        fields["values"] = [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data) - 1, 2)]
    return fields


def exception_pdu(fc, code):
    return bytes([fc | 0x80, code])


# --------------------------------------------------------------------------
# Simulator
# --------------------------------------------------------------------------

class Simulator:
    """Serves the configured slaves on one serial port until stopped by a signal."""

    def __init__(self, port, config_path, config, log_file):
        self.port = port
        self.config_path = config_path
        self.slaves, self.echo, self.wire, self.log_times = None, False, None, False
        self._apply(config)
        self.log_file = log_file
        self.decoder = ServerDecoder()
        self.sent = b""  # the bytes of the last reply, for the log
        self.sent_total = 0  # bytes of every reply to the request (intruders too)
        self.end = 0.0  # monotonic end of the last reply to the request
        self.reply_not_before = 0.0  # with wire: when the reply to the request may start
        self.rx = RtuReceiver(frame_gap_s(port.baudrate))
        self.stop_requested = False
        self.reload_requested = False
        # Signal handlers only set flags; the wake-up pipe makes a blocking
        # select() return so the flags are acted on at once.
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGHUP, self._on_reload_signal)
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)

    def _on_reload_signal(self, _signum, _frame):
        self.reload_requested = True

    def _on_stop_signal(self, _signum, _frame):
        self.stop_requested = True

    def _apply(self, config):
        if config.wire is not None:
            config.wire.adopt(self.wire)
        self.slaves, self.echo, self.wire, self.log_times = \
            config.slaves, config.echo, config.wire, config.log_times

    def _handle_signals(self):
        os.read(self.wake_r, 512)
        if self.reload_requested:
            self.reload_requested = False
            try:
                self._apply(load_config(self.config_path, self.port.baudrate))
                print("modbus_sim: config reloaded", file=sys.stderr, flush=True)
            except (OSError, ValueError) as exc:
                print(f"modbus_sim: reload failed, keeping old config: {exc}", file=sys.stderr, flush=True)

    def serve(self):
        port_fd = self.port.fileno()
        while not self.stop_requested:
            self.move_relays()
            deadlines = [d for d in [self.rx.gap_deadline()] + [s.next_move() for s in self.slaves.values()]
                         if d is not None]
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            readable, _, _ = select.select([port_fd, self.wake_r], [], [], timeout)
            if self.wake_r in readable:
                self._handle_signals()
            if port_fd in readable:
                self._receive()
            while not self.stop_requested:
                frame = self.rx.next_frame(time.monotonic())
                if frame is None:
                    break
                self.handle_frame(frame)

    def _receive(self):
        data = self.port.read(4096)
        if self.echo and data:
            self.port.write(data)
            self.port.flush()
        self.rx.feed(data, time.monotonic())

    def _wire_wait(self, deadline):
        """Wait for a paced reply: bytes the master sends meanwhile are taken
        in with their arrival time, signals are acted on. False on a stop."""
        port_fd = self.port.fileno()
        while not self.stop_requested:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            readable, _, _ = select.select([port_fd, self.wake_r], [], [], left)
            if self.wake_r in readable:
                self._handle_signals()
            if port_fd in readable:
                self._receive()
        return False

    def _wire_write(self, data):
        self.port.write(data)
        self.port.flush()

    def move_relays(self):
        now = time.monotonic()
        for slave in self.slaves.values():
            slave.move_relay(now)

    def _pause(self, seconds):
        """Sleep, still acting on signals; False if a stop was requested meanwhile."""
        deadline = time.monotonic() + seconds
        while not self.stop_requested:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            readable, _, _ = select.select([self.wake_r], [], [], left)
            if readable:
                self._handle_signals()
        return False

    def handle_frame(self, frame):
        received = time.time()
        self.move_relays()
        slave_id, pdu = frame[0], frame[1:-2]
        fc = pdu[0]
        fault = None
        answered = False
        self.sent = b""
        self.sent_total = 0
        wire = self.wire
        timing = None
        if wire is not None:
            # The request is in when its bytes would have arrived; the slave
            # knows it has ended only after the t3.5 silence, and answers a
            # turnaround after that.
            request_end = wire.request_end(self.rx.frame_first, self.rx.frame_last, len(frame))
            violation = wire.request_arrived(self.rx.frame_first, request_end)
            self.reply_not_before = request_end + wire.t35_s + wire.turnaround_s
            self.end = request_end
            timing = (len(frame), violation)
        if slave_id == 0:
            if fc in WRITE_FCS:
                for slave in self.slaves.values():
                    # a stuck relay stays stuck whatever its "every" says
                    self.execute(slave, pdu, mirror=not slave.stuck_relay)
        intruders = []
        if slave_id != 0:
            for other_id, other in self.slaves.items():
                if other_id != slave_id and other.fault and other.fault["kind"] == "answer_all":
                    reply_pdu = self.execute(other, pdu, mirror=True)
                    if self.send_reply(other_id, reply_pdu, None):
                        intruders.append(other_id)
        if slave_id != 0 and slave_id in self.slaves:
            slave = self.slaves[slave_id]
            fault = slave.active_fault()
            if fault and fault["kind"] == "answer_all":
                fault = None  # its own requests are served as they should be
            kind = fault["kind"] if fault else None
            if kind != "silent":
                if kind == "exception":
                    reply_pdu = exception_pdu(fc, fault["code"])
                else:
                    reply_pdu = self.execute(slave, pdu, mirror=kind != "stuck_relay")
                answered = self.send_reply(slave_id, reply_pdu, fault)
        if timing is None and self.log_times:
            self.end = time.monotonic()
        self.write_log(received, slave_id, pdu, answered, fault, frame, intruders, timing)

    def execute(self, slave, pdu, mirror):
        """Run a request PDU against slave's datastore; return the reply PDU."""
        fc = pdu[0]
        if fc not in SUPPORTED_FCS:
            return exception_pdu(fc, ILLEGAL_FUNCTION)
        # pymodbus maps any value other than 0xFF00 to "off"; the spec allows
        # only 0x0000 and 0xFF00.
        if fc == 5 and pdu[3:5] not in (b"\x00\x00", b"\xff\x00"):
            return exception_pdu(fc, ILLEGAL_DATA_VALUE)
        try:
            request = self.decoder.decode(pdu)
        except (struct.error, IndexError):
            request = None
        if request is None:  # malformed, e.g. fc 16 byte count not matching the count
            return exception_pdu(fc, ILLEGAL_DATA_VALUE)
        response = request.execute(slave.context)
        if mirror and fc in COIL_WRITE_FCS and not response.isError():
            address, count = struct.unpack(">HH", pdu[1:5])
            slave.mirror_relay(address, 1 if fc == 5 else count)
        return bytes([response.function_code]) + response.encode()

    def send_reply(self, slave_id, reply_pdu, fault):
        """Frame reply_pdu, spoil it as the fault says, send it; True if bytes were sent."""
        kind = fault["kind"] if fault else None
        if kind == "wrong_slave":
            slave_id = fault["id"] if fault["id"] is not None else slave_id % 247 + 1
        frame = with_crc(bytes([slave_id]) + reply_pdu)
        if kind == "bad_crc":
            frame = frame[:-2] + bytes(b ^ 0xFF for b in frame[-2:])
        elif kind == "truncated":
            frame = frame[:len(frame) // 2]
        elif kind == "noise":
            frame = random.randbytes(random.randint(1, 8)) + frame
            if fault["after"]:
                frame += random.randbytes(random.randint(1, 8))
        elif kind == "late" and self.wire is None and not self._pause(fault["delay_ms"] / 1000):
            return False
        if self.wire is not None:
            not_before = self.reply_not_before
            if kind == "late":
                not_before += fault["delay_ms"] / 1000
            sent = self.wire.send(frame, not_before, self._wire_write, self._wire_wait)
            if sent is None:
                return False
            self.end = sent[1]
        else:
            self.port.write(frame)
            self.port.flush()
        self.sent = frame
        self.sent_total += len(frame)
        return True

    def write_log(self, received, slave_id, pdu, answered, fault, frame, intruders=(),
                  timing=None):
        if self.log_file is None:
            return
        entry = {"t": received, "slave": slave_id, "fc": pdu[0]}
        entry.update(describe_request(pdu))
        entry["answered"] = answered
        entry["fault"] = fault["kind"] if fault else None
        entry["hex"] = bytes(frame).hex().upper()
        entry["reply"] = self.sent.hex().upper()
        if intruders:
            entry["intruders"] = list(intruders)
        if timing is not None or self.log_times:
            entry["t_end"] = wall(self.end)
        if timing is not None:
            request_len, violation = timing
            entry.update(self.wire_entry(request_len))
            entry["gap_violation"] = violation
            entry["gap_violations"] = self.wire.gap_violations
        self.log_file.write(json.dumps(entry) + "\n")
        self.log_file.flush()


    def wire_entry(self, request_len):
        """What the request needs on a real line: its bytes and the t3.5
        silence that ends it, and when answered the turnaround, the reply's
        bytes and the silence before the next frame."""
        w = self.wire
        parts = {"request_s": w.frame_s(request_len), "silence_s": w.t35_s,
                 "turnaround_s": 0.0, "reply_s": 0.0, "gap_s": 0.0}
        if self.sent_total:
            parts.update(turnaround_s=w.turnaround_s, reply_s=w.frame_s(self.sent_total),
                         gap_s=w.t35_s)
        parts = {k: round(v, 7) for k, v in parts.items()}
        return {"wire": parts, "wire_s": round(sum(parts.values()), 7)}


def main(argv=None):
    parser = argparse.ArgumentParser(description="Modbus RTU multi-slave simulator with fault injection.")
    parser.add_argument("--port", required=True, help="serial device, e.g. one end of a socat pty pair")
    parser.add_argument("--baud", type=int, default=9600)
    parser.add_argument("--parity", choices=("N", "E", "O"), default="N")
    parser.add_argument("--config", required=True, help="JSON config, re-read on SIGHUP")
    parser.add_argument("--log", help="append one JSON line per received request to this file")
    args = parser.parse_args(argv)

    try:
        config = load_config(args.config, args.baud)
    except (OSError, ValueError) as exc:
        print(f"modbus_sim: cannot load config: {exc}", file=sys.stderr)
        return 2
    log_file = open(args.log, "a", encoding="utf-8") if args.log else None  # pylint: disable=consider-using-with
    try:
        with serial.Serial(args.port, args.baud, bytesize=8, parity=args.parity,
                           stopbits=1, timeout=0) as port:
            simulator = Simulator(port, args.config, config, log_file)
            print("READY", flush=True)
            simulator.serve()
    except serial.SerialException as exc:
        print(f"modbus_sim: serial port failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if log_file:
            log_file.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
