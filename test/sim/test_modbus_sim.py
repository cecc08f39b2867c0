"""Self-test of the Modbus RTU simulator (modbus_sim.py).

Run with Debian's python (it has pymodbus, pyserial and pytest):

    /usr/bin/python3 -m pytest test/sim/test_modbus_sim.py

Each test gets its own socat pty pair: the simulator serves one end, a plain
pyserial master with its own CRC code talks on the other. Every process a test
starts is stopped by fixture finalizers.
"""

import copy
import json
import os
import re
import select
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial

SIM_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(SIM_DIR))
from modbus_sim import encode_typed  # noqa: E402  pylint: disable=wrong-import-position

SIM = SIM_DIR / "modbus_sim.py"

CONFIG = {
    "slaves": {
        "1": {
            "holding": {"0": 17258, "1": 0, "2": 65535},
            "input": {"16": 2301},
            "coil": {"0": 0, "1": 0, "2": 0},
            "discrete": {"0": 1},
            "typed": [
                {"table": "holding", "address": 100, "type": "float32", "word_order": "big", "value": 1234.5},
                {"table": "input", "address": 200, "type": "float32", "word_order": "little", "value": -0.25},
            ],
            # discrete 1 is created by the relay, mirroring coil 0
            "relay": {"coil": 0, "discrete": 1},
        },
        "2": {"holding": {"0": 1}, "fault": {"kind": "silent"}},
        "3": {"holding": {"0": 1}, "fault": {"kind": "bad_crc"}},
        "4": {"holding": {"0": 1}, "fault": {"kind": "bad_crc", "every": 2}},
        "5": {"holding": {"0": 1}, "fault": {"kind": "late", "delay_ms": 400}},
        "6": {"holding": {"0": 1}, "fault": {"kind": "exception", "code": 4}},
        "7": {"holding": {"0": 1, "1": 2, "2": 3}, "fault": {"kind": "truncated"}},
        "8": {"holding": {"0": 1}, "fault": {"kind": "wrong_slave"}},
        "9": {"holding": {"0": 1}, "fault": {"kind": "noise", "after": True}},
        "10": {"coil": {"0": 0}, "relay": {"coil": 0, "discrete": 0}, "fault": {"kind": "stuck_relay"}},
        "11": {"coil": {"0": 0}, "relay": {"coil": 0, "discrete": 0}, "relay_delay_ms": 400},
    }
}


# -- Modbus helpers, deliberately independent of modbus_sim -------------------

def crc16(data):
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def rtu(body):
    """body + CRC (low byte first)."""
    crc = crc16(body)
    return bytes(body) + bytes([crc & 0xFF, crc >> 8])


def crc_valid(frame):
    return len(frame) >= 4 and rtu(frame[:-2]) == frame


def req(slave, fc, address, count_or_value):
    return rtu(struct.pack(">BBHH", slave, fc, address, count_or_value))


def registers_reply(slave, fc, *words):
    return rtu(struct.pack(f">BBB{len(words)}H", slave, fc, 2 * len(words), *words))


# -- process plumbing ----------------------------------------------------------

def read_line(fd, timeout):
    """Read one line from a raw fd; b"" on EOF or timeout."""
    line = b""
    deadline = time.monotonic() + timeout
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return b""
        chunk = os.read(fd, 1)
        if not chunk:
            return b""
        line += chunk
    return line


def stop_process(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Bench:
    """socat pty pair + simulator + pyserial master for one test."""

    def __init__(self, request, tmp_path):
        self.request = request
        self.config_path = tmp_path / "sim.json"
        self.log_path = tmp_path / "requests.jsonl"
        socat = subprocess.Popen(
            ["socat", "-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0"],
            stderr=subprocess.PIPE, bufsize=0)
        request.addfinalizer(lambda: stop_process(socat))
        ptys = []
        while True:
            line = read_line(socat.stderr.fileno(), 5).decode()
            assert line, "socat did not start"
            match = re.search(r"PTY is (\S+)", line)
            if match:
                ptys.append(match.group(1))
            if "starting data transfer loop" in line:
                break
        self.sim_port, master_port = ptys
        self.master = serial.Serial(master_port, 9600, timeout=0)
        request.addfinalizer(self.master.close)
        self.proc = None

    def start(self, config):
        self.write_config(config)
        self.proc = subprocess.Popen(
            [sys.executable, str(SIM), "--port", self.sim_port, "--baud", "9600", "--parity", "N",
             "--config", str(self.config_path), "--log", str(self.log_path)],
            stdout=subprocess.PIPE, bufsize=0)
        self.request.addfinalizer(lambda: stop_process(self.proc))
        assert read_line(self.proc.stdout.fileno(), 5) == b"READY\n"

    def write_config(self, config):
        self.config_path.write_text(json.dumps(config))

    def transact(self, frame, wait=1.0, gap=0.05):
        """Send frame, return all bytes received until `gap` s of silence after the first."""
        self.master.reset_input_buffer()
        self.master.write(frame)
        reply = b""
        deadline = time.monotonic() + wait
        while True:
            timeout = gap if reply else deadline - time.monotonic()
            if timeout <= 0 or not select.select([self.master.fileno()], [], [], timeout)[0]:
                return reply
            reply += self.master.read(256)

    def log_entries(self, count, timeout=2.0):
        """Wait until the log holds `count` lines and return them decoded."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.log_path.read_text().splitlines() if self.log_path.exists() else []
            if len(lines) >= count or time.monotonic() > deadline:
                return [json.loads(line) for line in lines]
            time.sleep(0.02)


@pytest.fixture
def bench(request, tmp_path):
    return Bench(request, tmp_path)


@pytest.fixture
def sim(bench):
    bench.start(CONFIG)
    return bench


# -- tests ---------------------------------------------------------------------

def test_encode_typed():
    assert encode_typed("u16", "big", 513) == [513]
    assert encode_typed("s16", "big", -2) == [0xFFFE]
    assert encode_typed("u32", "big", 0x12345678) == [0x1234, 0x5678]
    assert encode_typed("u32", "little", 0x12345678) == [0x5678, 0x1234]
    assert encode_typed("s32", "big", -1) == [0xFFFF, 0xFFFF]
    assert encode_typed("u64", "little", 0x0102030405060708) == [0x0708, 0x0506, 0x0304, 0x0102]
    assert encode_typed("float32", "big", 1234.5) == [0x449A, 0x5000]
    assert encode_typed("float64", "big", 1.0) == [0x3FF0, 0, 0, 0]
    for bad in (("u16", "big", 65536), ("s16", "big", 1.5), ("u32", "middle", 1), ("i8", "big", 1)):
        with pytest.raises(ValueError):
            encode_typed(*bad)


def test_reads_return_configured_values(sim):
    assert sim.transact(req(1, 3, 0, 3)) == registers_reply(1, 3, 17258, 0, 65535)
    assert sim.transact(req(1, 4, 16, 1)) == registers_reply(1, 4, 2301)
    assert sim.transact(req(1, 2, 0, 2)) == rtu(bytes([1, 2, 1, 0b01]))  # discrete 0 = 1, relay input 1 = 0
    assert sim.transact(req(1, 1, 0, 3)) == rtu(bytes([1, 1, 1, 0]))


def test_typed_float32_decodes_back(sim):
    reply = sim.transact(req(1, 3, 100, 2))
    assert crc_valid(reply) and reply[:3] == bytes([1, 3, 4])
    assert struct.unpack(">f", reply[3:7])[0] == 1234.5
    reply = sim.transact(req(1, 4, 200, 2))
    assert crc_valid(reply) and reply[:3] == bytes([1, 4, 4])
    assert struct.unpack(">f", reply[5:7] + reply[3:5])[0] == -0.25  # little word order


def test_exceptions_for_unmapped_address_and_unsupported_function(sim):
    assert sim.transact(req(1, 3, 0, 4)) == rtu(bytes([1, 0x83, 2]))  # address 3 unmapped
    assert sim.transact(req(1, 4, 17, 1)) == rtu(bytes([1, 0x84, 2]))
    assert sim.transact(req(1, 6, 50, 7)) == rtu(bytes([1, 0x86, 2]))
    assert sim.transact(req(1, 8, 0, 0x1234)) == rtu(bytes([1, 0x88, 1]))  # diagnostics: not supported


def test_silent_and_unknown_slaves_send_nothing(sim):
    assert sim.transact(req(2, 3, 0, 1), wait=0.3) == b""
    assert sim.transact(req(99, 3, 0, 1), wait=0.3) == b""
    assert sim.transact(req(1, 3, 0, 1)) == registers_reply(1, 3, 17258)  # bus still alive


def test_bad_crc(sim):
    reply = sim.transact(req(3, 3, 0, 1))
    assert len(reply) == 7 and reply[:5] == registers_reply(3, 3, 1)[:5]
    assert not crc_valid(reply)
    # "every": 2 spoils only the 2nd, 4th, ... request
    results = [crc_valid(sim.transact(req(4, 3, 0, 1))) for _ in range(4)]
    assert results == [True, False, True, False]


def test_other_faults(sim):
    started = time.monotonic()
    assert sim.transact(req(5, 3, 0, 1), wait=1.5) == registers_reply(5, 3, 1)
    assert time.monotonic() - started >= 0.4
    assert sim.transact(req(6, 3, 0, 1)) == rtu(bytes([6, 0x83, 4]))
    full = registers_reply(7, 3, 1, 2, 3)
    assert sim.transact(req(7, 3, 0, 3)) == full[:len(full) // 2]
    assert sim.transact(req(8, 3, 0, 1)) == registers_reply(9, 3, 1)
    reply = sim.transact(req(9, 3, 0, 1))
    good = registers_reply(9, 3, 1)
    assert good in reply and not reply.startswith(good) and not reply.endswith(good)


def test_writes_and_relay(sim):
    # fc 5 switches coil 0 on; the relay mirrors it into discrete input 1
    assert sim.transact(req(1, 5, 0, 0xFF00)) == req(1, 5, 0, 0xFF00)
    assert sim.transact(req(1, 2, 1, 1)) == rtu(bytes([1, 2, 1, 1]))
    assert sim.transact(req(1, 5, 0, 0x1234)) == rtu(bytes([1, 0x85, 3]))  # invalid coil value
    # fc 15 writes coils 0..2 = 0, 1, 1
    write_coils = rtu(struct.pack(">BBHHBB", 1, 15, 0, 3, 1, 0b110))
    assert sim.transact(write_coils) == req(1, 15, 0, 3)
    assert sim.transact(req(1, 1, 0, 3)) == rtu(bytes([1, 1, 1, 0b110]))
    assert sim.transact(req(1, 2, 1, 1)) == rtu(bytes([1, 2, 1, 0]))
    # fc 6 and fc 16
    assert sim.transact(req(1, 6, 1, 0x1234)) == req(1, 6, 1, 0x1234)
    write_regs = rtu(struct.pack(">BBHHBHH", 1, 16, 1, 2, 4, 7, 8))
    assert sim.transact(write_regs) == req(1, 16, 1, 2)
    assert sim.transact(req(1, 3, 0, 3)) == registers_reply(1, 3, 17258, 7, 8)
    # a stuck relay acknowledges the write but its input never moves
    assert sim.transact(req(10, 5, 0, 0xFF00)) == req(10, 5, 0, 0xFF00)
    assert sim.transact(req(10, 1, 0, 1)) == rtu(bytes([10, 1, 1, 1]))
    assert sim.transact(req(10, 2, 0, 1)) == rtu(bytes([10, 2, 1, 0]))


def test_delayed_relay_moves_after_its_delay(sim):
    # the write is acknowledged at once; the relay input follows 400 ms later
    written = time.monotonic()
    assert sim.transact(req(11, 5, 0, 0xFF00)) == req(11, 5, 0, 0xFF00)
    assert sim.transact(req(11, 1, 0, 1)) == rtu(bytes([11, 1, 1, 1]))  # coil set at once
    assert sim.transact(req(11, 2, 0, 1)) == rtu(bytes([11, 2, 1, 0]))  # relay not yet
    assert time.monotonic() - written < 0.4, "the master was too slow to see the delay"
    while sim.transact(req(11, 2, 0, 1)) != rtu(bytes([11, 2, 1, 1])):
        assert time.monotonic() - written < 2.0, "the delayed relay never moved"
    assert time.monotonic() - written >= 0.4
    # written back and forth within the delay: the input ends where the last write put it
    written = time.monotonic()
    sim.transact(req(11, 5, 0, 0x0000))
    sim.transact(req(11, 5, 0, 0xFF00))
    sim.transact(req(11, 5, 0, 0x0000))
    while time.monotonic() - written < 0.6:
        time.sleep(0.05)
    assert sim.transact(req(11, 2, 0, 1)) == rtu(bytes([11, 2, 1, 0]))
    # the log tells how many coil writes the slave received, and what they wrote
    writes = [e for e in sim.log_entries(0) if e["slave"] == 11 and e["fc"] in (5, 6, 15, 16)]
    assert [(e["fc"], e["address"], e["values"]) for e in writes] == [
        (5, 0, [1]), (5, 0, [0]), (5, 0, [1]), (5, 0, [0])]


def test_relay_delay_needs_a_relay(bench):
    bench.write_config({"slaves": {"1": {"coil": {"0": 0}, "relay_delay_ms": 100}}})
    proc = subprocess.run(
        [sys.executable, str(SIM), "--port", bench.sim_port, "--config", str(bench.config_path)],
        capture_output=True, timeout=10, check=False)
    assert proc.returncode == 2 and b"needs a relay" in proc.stderr


def test_resync_after_garbage_and_back_to_back_frames(sim):
    garbage = bytes([0x00, 0x01, 0x10, 0x7F])
    reply = sim.transact(garbage + req(1, 3, 0, 1) + req(1, 4, 16, 1))
    assert reply == registers_reply(1, 3, 17258) + registers_reply(1, 4, 2301)
    # broadcast write: executed, not answered
    assert sim.transact(req(0, 6, 0, 5), wait=0.3) == b""
    assert sim.transact(req(1, 3, 0, 1)) == registers_reply(1, 3, 5)


def test_sighup_reloads_values_and_faults(sim):
    assert sim.transact(req(1, 3, 0, 1)) == registers_reply(1, 3, 17258)
    config = copy.deepcopy(CONFIG)
    config["slaves"]["1"]["holding"]["0"] = 42
    config["slaves"]["2"]["fault"] = None
    sim.write_config(config)
    sim.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 2
    while sim.transact(req(1, 3, 0, 1)) != registers_reply(1, 3, 42):
        assert time.monotonic() < deadline, "SIGHUP did not reload the config"
    assert sim.transact(req(2, 3, 0, 1)) == registers_reply(2, 3, 1)
    # a broken config is rejected and the running one kept
    sim.config_path.write_text("{broken")
    sim.proc.send_signal(signal.SIGHUP)
    time.sleep(0.2)
    assert sim.proc.poll() is None
    assert sim.transact(req(1, 3, 0, 1)) == registers_reply(1, 3, 42)


def test_log_records_requests(sim):
    first = sim.transact(req(1, 3, 0, 2))
    sim.transact(req(2, 3, 0, 1), wait=0.3)
    sim.transact(req(99, 4, 16, 1), wait=0.3)
    last = sim.transact(rtu(struct.pack(">BBHHBH", 1, 16, 1, 1, 2, 9)))
    entries = sim.log_entries(4)
    assert all(isinstance(e.pop("t"), float) for e in entries)
    # The frames as they were on the line: the request received, the reply sent.
    assert [(e.pop("hex"), e.pop("reply")) for e in entries] == [
        (req(1, 3, 0, 2).hex().upper(), registers_reply(1, 3, 17258, 0).hex().upper()),
        (req(2, 3, 0, 1).hex().upper(), ""),
        (req(99, 4, 16, 1).hex().upper(), ""),
        (rtu(struct.pack(">BBHHBH", 1, 16, 1, 1, 2, 9)).hex().upper(),
         rtu(struct.pack(">BBHH", 1, 16, 1, 1)).hex().upper()),
    ]
    assert (first, last) == (registers_reply(1, 3, 17258, 0), rtu(struct.pack(">BBHH", 1, 16, 1, 1)))
    assert entries == [
        {"slave": 1, "fc": 3, "address": 0, "count": 2, "answered": True, "fault": None},
        {"slave": 2, "fc": 3, "address": 0, "count": 1, "answered": False, "fault": "silent"},
        {"slave": 99, "fc": 4, "address": 16, "count": 1, "answered": False, "fault": None},
        {"slave": 1, "fc": 16, "address": 1, "count": 1, "values": [9], "answered": True, "fault": None},
    ]


def test_slave_that_answers_for_every_id(bench):
    bench.start({"slaves": {"1": {"holding": {"0": 11}, "fault": {"kind": "answer_all"}},
                            "2": {"holding": {"0": 22}}}})
    # A request to slave 2: slave 1 answers first, from its own registers and
    # with its own id, then slave 2 answers.
    assert bench.transact(req(2, 3, 0, 1)) == registers_reply(1, 3, 11) + registers_reply(2, 3, 22)
    # An id nobody has: slave 1 answers all the same.
    assert bench.transact(req(7, 3, 0, 1)) == registers_reply(1, 3, 11)
    # Its own requests get its answer once.
    assert bench.transact(req(1, 3, 0, 1)) == registers_reply(1, 3, 11)
    log = bench.log_entries(3)
    assert [(e["slave"], e.get("intruders"), e["fault"]) for e in log] == \
        [(2, [1], None), (7, [1], None), (1, None, None)]


def test_echo_sends_the_request_back_first(bench):
    bench.start({"echo": True, "slaves": {"1": {"holding": {"0": 11}}}})
    request = req(1, 3, 0, 1)
    assert bench.transact(request) == request + registers_reply(1, 3, 11)


def test_sigterm_exits_zero(sim):
    sim.proc.send_signal(signal.SIGTERM)
    assert sim.proc.wait(5) == 0


def test_invalid_config_exits_2(bench):
    config = {"slaves": {"1": {"holding": {"0": 70000}}}}
    bench.write_config(config)
    proc = subprocess.run(
        [sys.executable, str(SIM), "--port", bench.sim_port, "--config", str(bench.config_path)],
        capture_output=True, timeout=10, check=False)
    assert proc.returncode == 2 and b"0..65535" in proc.stderr


# -- wire emulation (the simulator's own timing is what is tested here) -------

WIRE = {"baud": 9600, "bits_per_char": 11, "turnaround_ms": 5}
CHAR_S = 11 / 9600
T35_S = 3.5 * CHAR_S


def timed_transact(bench, frame, wait=3.0, gap=0.2):
    """Send frame; return (monotonic time written, [(monotonic time, bytes)] received)."""
    bench.master.reset_input_buffer()
    bench.master.write(frame)
    sent = time.monotonic()
    chunks = []
    deadline = sent + wait
    while True:
        timeout = gap if chunks else deadline - time.monotonic()
        if timeout <= 0 or not select.select([bench.master.fileno()], [], [], timeout)[0]:
            return sent, chunks
        chunks.append((time.monotonic(), bench.master.read(256)))


def test_wire_paces_replies_at_the_line_rate(bench):
    # 48 registers: a reply of 3 + 96 + 2 = 101 bytes, 100 of them after the first
    bench.start({"wire": WIRE, "slaves": {"1": {"holding": {str(a): a for a in range(48)}}}})
    request = req(1, 3, 0, 48)
    sent, chunks = timed_transact(bench, request)
    reply = b"".join(c for _, c in chunks)
    assert reply == registers_reply(1, 3, *range(48))
    # request + t3.5 + turnaround + reply: the master cannot have it sooner
    least = (len(request) + len(reply)) * CHAR_S + T35_S + 0.005
    assert chunks[-1][0] - sent >= least
    assert chunks[-1][0] - sent < least + 1.0
    # byte k no sooner than byte 1 + (k - 1) characters: the reply is spread out
    # (half of that at least, so that a late first read on a loaded machine passes)
    assert chunks[-1][0] - chunks[0][0] >= (len(reply) - 1) * CHAR_S * 0.5
    assert len(chunks) > 5, "the reply came in a few bursts, not at the line rate"
    entry = bench.log_entries(1)[0]
    assert entry["wire"] == pytest.approx({
        "request_s": 8 * CHAR_S, "silence_s": T35_S, "turnaround_s": 0.005,
        "reply_s": 101 * CHAR_S, "gap_s": T35_S}, abs=1e-6)
    assert entry["wire_s"] == pytest.approx(109 * CHAR_S + 2 * T35_S + 0.005, abs=1e-6)
    assert entry["t_end"] - entry["t"] >= 101 * CHAR_S
    assert entry["gap_violation"] is False and entry["gap_violations"] == 0


def test_wire_counts_requests_that_break_the_gap(bench):
    bench.start({"wire": {"baud": 9600}, "slaves": {"1": {"holding": {"0": 7}}, "3": {"holding": {"0": 9}}}})
    # Two requests in one write: the second starts while the first is still
    # on the line. Both are served; the second is a violation.
    reply = bench.transact(req(1, 3, 0, 1) + req(3, 3, 0, 1), wait=2.0, gap=0.2)
    assert reply == registers_reply(1, 3, 7) + registers_reply(3, 3, 9)
    time.sleep(0.1)  # far more than t3.5
    assert bench.transact(req(1, 3, 0, 1)) == registers_reply(1, 3, 7)
    # An unanswered request occupies the line too: only t3.5 after its end
    # may the next one start.
    bench.transact(req(2, 3, 0, 1), wait=0.3)
    entries = bench.log_entries(4)
    assert [(e["slave"], e["gap_violation"], e["gap_violations"]) for e in entries] == [
        (1, False, 0), (3, True, 1), (1, False, 1), (2, False, 1)]
    silent = entries[3]
    assert silent["wire"]["reply_s"] == 0 and silent["wire"]["turnaround_s"] == 0
    assert silent["wire_s"] == pytest.approx(8 * CHAR_S + T35_S, abs=1e-6)


def test_wire_adds_a_late_faults_delay(bench):
    bench.start({"wire": WIRE, "slaves": {"5": {"holding": {"0": 1}, "fault": {"kind": "late", "delay_ms": 300}}}})
    sent, chunks = timed_transact(bench, req(5, 3, 0, 1))
    assert b"".join(c for _, c in chunks) == registers_reply(5, 3, 1)
    assert chunks[-1][0] - sent >= 0.3 + (8 + 7) * CHAR_S + T35_S + 0.005


def test_log_times_without_wire(bench):
    bench.start({"log_times": True, "slaves": {"1": {"holding": {"0": 1}}}})
    bench.transact(req(1, 3, 0, 1))
    entry = bench.log_entries(1)[0]
    assert entry["t_end"] >= entry["t"] and "wire" not in entry


def test_invalid_wire_exits_2(bench):
    bench.write_config({"wire": {"baud": 0}, "slaves": {"1": {"holding": {"0": 1}}}})
    proc = subprocess.run(
        [sys.executable, str(SIM), "--port", bench.sim_port, "--config", str(bench.config_path)],
        capture_output=True, timeout=10, check=False)
    assert proc.returncode == 2 and b"wire.baud" in proc.stderr
