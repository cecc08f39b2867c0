# SPDX-License-Identifier: MIT
"""The timing of an RS485 line, for the meter simulators (modbus_sim.py, dlt645_sim.py).

A socat pty pair moves bytes at once, whatever baud rate is set on it. A
simulator with a ``"wire"`` option instead makes the line as slow as a real
one, so that what the gateway does with the bus can be compared with what
the bus allows:

    "wire": {"baud": 9600, "bits_per_char": 11, "turnaround_ms": 5}

* ``bits_per_char``: start bit, 8 data bits, parity and stop bits: 11 for
  8E1, 8O1 and 8N2, 10 for 8N1. One character takes bits_per_char / baud s.
* Reply pacing: byte k (k = 1..n) of a reply is written no earlier than
  start + k x char time, measured on the monotonic clock, so the last byte
  reaches the master when it would on a real line. Every byte that is due
  is written at once, so a coarse sleep never slows the line below its rate.
* A request counts as received when its bytes would have taken their wire
  time to arrive: at max(arrival of its last byte, arrival of its first
  byte + length x char time).
* The 3.5-character silence (t3.5) must separate frames on the line. A
  request whose first byte arrives less than t3.5 after the end of the
  previous frame (the last reply, or the previous request when nothing
  answered it) is a gap violation: counted, and flagged in the log.

The simulators log per request what the exchange needs on a real line, so
that a benchmark can add up the physical limit of a bus sweep.
"""

import time

# Above 19200 baud Modbus fixes t3.5 at 1.75 ms (Modbus over serial line
# V1.02, 2.5.1.1); it is used for both protocols here.
FIXED_T35_ABOVE_BAUD = 19200
FIXED_T35_S = 0.00175


class WireConfigError(ValueError):
    """The "wire" option is invalid."""


def _number(raw, key, default, low, integer=False):
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low or \
            (integer and int(value) != value):
        raise WireConfigError("wire.%s: expected a%s number >= %s, got %r" %
                              (key, "n integer" if integer else "", low, value))
    return value


class Wire:
    """One line's timing and the state of what was last on it (monotonic times)."""

    KEYS = ("baud", "bits_per_char", "turnaround_ms")

    def __init__(self, baud, bits_per_char=11, turnaround_s=0.0):
        self.baud = baud
        self.bits_per_char = bits_per_char
        self.char_s = bits_per_char / baud
        self.t35_s = FIXED_T35_S if baud > FIXED_T35_ABOVE_BAUD else 3.5 * self.char_s
        self.turnaround_s = turnaround_s
        self.line_end = 0.0  # monotonic end of the last frame on the line
        self.gap_violations = 0

    @classmethod
    def from_config(cls, raw, default_baud=9600, default_turnaround_ms=0):
        """Build from the "wire" object of a simulator config; None for none."""
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise WireConfigError("wire: expected an object")
        unknown = set(raw) - set(cls.KEYS)
        if unknown:
            raise WireConfigError("wire: unknown keys %s" % sorted(unknown))
        baud = _number(raw, "baud", default_baud, 1, integer=True)
        bits = _number(raw, "bits_per_char", 11, 7, integer=True)
        turnaround = _number(raw, "turnaround_ms", default_turnaround_ms, 0)
        return cls(int(baud), int(bits), turnaround / 1000.0)

    def adopt(self, old):
        """Carry the line's state over from the Wire a reload replaces."""
        if old is not None:
            self.line_end = old.line_end
            self.gap_violations = old.gap_violations

    def frame_s(self, nbytes):
        """Wire time of nbytes characters."""
        return nbytes * self.char_s

    def request_end(self, first, last, nbytes):
        """When a request whose bytes arrived from first to last would have been complete."""
        return max(last, first + self.frame_s(nbytes))

    def request_arrived(self, first, end):
        """Note a request that began at first and ended at end; True if it broke the t3.5 gap."""
        # A pty only ever delivers late, never early, so no tolerance is needed
        # beyond the float rounding of the sums.
        violation = first < self.line_end + self.t35_s - 1e-6
        if violation:
            self.gap_violations += 1
        self.line_end = max(self.line_end, end)
        return violation

    def send(self, data, not_before, write, wait):
        """Write data paced to the line, starting no earlier than not_before
        nor before the line is free; returns (start, end) monotonic times, or
        None if wait() returned False (a stop was asked for).

        write(bytes) writes to the port; wait(deadline) sleeps until the
        monotonic deadline, serving whatever else must go on, and returns
        False to abandon the frame.
        """
        start = max(not_before, self.line_end)
        if time.monotonic() < start and not wait(start):
            return None
        # A reply that could not start on time starts now: never a burst
        # faster than the line to catch up.
        start = max(start, time.monotonic())
        sent = 0
        n = len(data)
        while sent < n:
            due = min(n, int((time.monotonic() - start) / self.char_s + 1e-9))
            if due > sent:
                write(data[sent:due])
                sent = due
                continue
            if not wait(start + (sent + 1) * self.char_s):
                self.line_end = time.monotonic()
                return None
        end = max(time.monotonic(), start + self.frame_s(n))
        self.line_end = end
        return start, end


def wall(monotonic_t):
    """The wall-clock time of a monotonic time in the recent past."""
    return time.time() - (time.monotonic() - monotonic_t)
