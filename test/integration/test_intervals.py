# SPDX-License-Identifier: MIT
"""Interval tables end to end: the real daemon reads DL/T 645 meters whose
energy grows at a known rate (test/sim/dlt645_sim.py) and publishes
interval, daily and monthly records. The proofs: intervals are contiguous
and carry the period of the tariff; the energies published add up to the
meter's last cumulative minus its first, through a silent meter and a
SIGKILL; the daily and monthly freezes at local midnight add up their
intervals. The wall clock is placed with the LD_PRELOAD shim, never waited
for."""

import datetime as dt
import signal
import time
import zoneinfo

import pytest

from conftest import gateway_config, wait_until
from faults import clockshift, start_daemon  # noqa: F401  (fixture)

TZ = zoneinfo.ZoneInfo('Asia/Shanghai')
ADDR = '000000000001'
PREFIX = 'meterhub/gw-test'
# 7.2 kW at speedup 10: 72 kWh an hour, 0.02 kWh a second.
RATE_KWH_S = 7.2 * 10 / 3600


def sim_config(**fault):
    meter = {'address': ADDR, 'phases': 1, 'load_kw': 7.2, 'speedup': 10,
             'import_kwh': 1000.0}
    if fault:
        meter['fault'] = fault
    return {'meters': [meter]}


def config(tmp_path, port, device, interval, **extra):
    cfg = gateway_config(tmp_path, port, [{
        'name': 'rs485-645', 'device': device, 'baud': 2400, 'parity': 'even',
        'protocol': 'dlt645', 'timeout': '300ms',
        'meters': [{'id': 'm-1', 'address': ADDR, 'profile': 'dlt645-single-phase'}]}],
        interval=interval, **extra)
    return cfg


def epoch_local(y, mo, d, h, mi, s):
    return dt.datetime(y, mo, d, h, mi, s, tzinfo=TZ).timestamp()


def parse(ts):
    return dt.datetime.strptime(ts, '%Y-%m-%dT%H:%M:%SZ').replace(
        tzinfo=dt.timezone.utc).timestamp()


def records(sub, kind):
    return [p for t, p, _ in sub.snapshot(PREFIX + '/%s/' % kind)]


def unique(recs):
    """First arrival of each seq, in seq order (a reconnect may repeat some)."""
    seen = {}
    for r in recs:
        seen.setdefault(r['seq'], r)
    return [seen[s] for s in sorted(seen)]


def good_cumulatives(sub):
    """(boundary, energy_import_kwh) of every good on-time reading, by boundary."""
    out = {}
    for r in unique(records(sub, 'reading')):
        if r['quality'] == 'good':
            out.setdefault(parse(r['ts']), r['values']['energy_import_kwh'])
    return out


def check_contiguous(intervals):
    for a, b in zip(intervals, intervals[1:]):
        assert b['start'] == a['end'], 'gap or overlap between %s and %s' % (a, b)
        assert parse(b['end']) > parse(b['start']), b


def check_conservation(intervals, cumulatives):
    """The energies published add up to the last cumulative minus the first."""
    first = cumulatives[parse(intervals[0]['start'])]
    last = cumulatives[parse(intervals[-1]['end'])]
    total = sum(i['energy_import_kwh'] for i in intervals)
    assert abs(total - (last - first)) < 1e-6, (total, first, last)
    return total


def test_intervals_carry_the_period_and_add_up(broker, dlt645_sim, gateway, subscriber_factory,
                                               clockshift, tmp_path):  # noqa: F811
    """A 5 s interval across the 08:00 edge of a peak period: contiguous,
    complete, flat before and peak after, and the sum of the intervals is
    what the meter's register grew by, and what the simulator's load says."""
    sim = dlt645_sim('b645', sim_config())
    # The daemon's clock starts at 07:59:40 local, 20 s before the peak.
    clockshift.set_abs(epoch_local(2026, 11, 24, 7, 59, 40))
    cfg = config(tmp_path, broker.port, sim.gateway_end, '5s', tariff={
        'periods': [{'name': 'peak', 'from': '08:00', 'to': '11:00'},
                    {'name': 'valley', 'from': '23:00', 'to': '07:00'}],
        'default': 'flat'})
    sub = subscriber_factory(broker.port, PREFIX + '/#')
    gw = start_daemon(gateway(cfg), clockshift.env())
    wait_until(lambda: len(records(sub, 'interval')) >= 9, 70, what='9 intervals')
    assert gw.stop() == 0
    intervals = unique(records(sub, 'interval'))
    check_contiguous(intervals)
    edge = epoch_local(2026, 11, 24, 8, 0, 0)
    for i in intervals:
        assert i['complete'] is True, i
        assert parse(i['end']) - parse(i['start']) == 5, i
        assert i['period'] == ('peak' if parse(i['start']) >= edge else 'flat'), i
        assert i['energy_import_kwh'] >= 0
    assert any(i['period'] == 'flat' for i in intervals)
    assert any(i['period'] == 'peak' for i in intervals)
    total = check_conservation(intervals, good_cumulatives(sub))
    seconds = parse(intervals[-1]['end']) - parse(intervals[0]['start'])
    # The simulator's truth: its load over the same span, within the register's 0.01 kWh.
    assert abs(total - RATE_KWH_S * seconds) < 0.02 + 0.02 * RATE_KWH_S * seconds, total


def test_silent_meter_gives_one_incomplete_span(broker, dlt645_sim, gateway,
                                                subscriber_factory, tmp_path):
    """A meter silent across two boundaries: one complete:false interval
    spanning the gap, no invented split, and the totals still add up. (No
    retries here, the default of these tests: a retry that catches the meter
    ends the span early, at its real read time; see the retry test.)"""
    sim = dlt645_sim('b645', sim_config())
    cfg = config(tmp_path, broker.port, sim.gateway_end, '2s')
    sub = subscriber_factory(broker.port, PREFIX + '/#')
    gw = gateway(cfg).start()
    wait_until(lambda: len(records(sub, 'interval')) >= 2, 20, what='first intervals')
    sim.reload(sim_config(silence=True))
    wait_until(lambda: len({r['ts'] for r in records(sub, 'reading')
                            if r['quality'] == 'timeout'}) >= 2,
               20, what='two silent boundaries (their retries too)')
    sim.reload(sim_config())
    wait_until(lambda: any(not i['complete'] for i in records(sub, 'interval')), 20,
               what='the interval over the gap')
    n = len(unique(records(sub, 'interval')))
    wait_until(lambda: len(unique(records(sub, 'interval'))) >= n + 2, 20,
               what='intervals after the gap')
    assert gw.stop() == 0
    intervals = unique(records(sub, 'interval'))
    check_contiguous(intervals)
    gaps = [i for i in intervals if not i['complete']]
    assert len(gaps) == 1, gaps
    assert parse(gaps[0]['end']) - parse(gaps[0]['start']) >= 6, gaps[0]
    assert all(parse(i['end']) - parse(i['start']) == 2 for i in intervals if i['complete'])
    check_conservation(intervals, good_cumulatives(sub))


def test_sigkill_mid_window_continues_without_gap(broker, dlt645_sim, gateway,
                                                  subscriber_factory, tmp_path):
    """SIGKILL in the middle of a window, restart: the tables go on from the
    stored state, with no gap and no double count."""
    sim = dlt645_sim('b645', sim_config())
    cfg = config(tmp_path, broker.port, sim.gateway_end, '2s')
    sub = subscriber_factory(broker.port, PREFIX + '/#')
    for i in range(3):
        gw = gateway(cfg, name='meterhub-%d' % i).start()
        n = len(unique(records(sub, 'interval')))
        wait_until(lambda: len(unique(records(sub, 'interval'))) >= n + 2, 20,
                   what='intervals of run %d' % i)
        time.sleep(0.9)  # mid-window
        gw.proc.send_signal(signal.SIGKILL)
        gw.proc.wait()
    gw = gateway(cfg, name='meterhub-last').start()
    n = len(unique(records(sub, 'interval')))
    wait_until(lambda: len(unique(records(sub, 'interval'))) >= n + 2, 20,
               what='intervals after the last restart')
    assert gw.stop() == 0
    intervals = unique(records(sub, 'interval'))
    check_contiguous(intervals)
    check_conservation(intervals, good_cumulatives(sub))


def test_daily_and_monthly_freeze_at_local_midnight(broker, dlt645_sim, gateway,
                                                    subscriber_factory, clockshift,
                                                    tmp_path):  # noqa: F811
    """The daemon's clock crosses local midnight from 30 November to
    1 December: a daily record dated the 30th and a monthly one for
    November, each adding up the intervals before the freeze, with the
    registers read at the freeze."""
    sim = dlt645_sim('b645', sim_config())
    clockshift.set_abs(epoch_local(2026, 11, 30, 23, 59, 44))
    cfg = config(tmp_path, broker.port, sim.gateway_end, '2s')
    sub = subscriber_factory(broker.port, PREFIX + '/#')
    gw = start_daemon(gateway(cfg), clockshift.env())
    wait_until(lambda: records(sub, 'monthly'), 40, what='the monthly freeze')
    wait_until(lambda: len(records(sub, 'interval')) >= 12, 20, what='intervals after it')
    assert gw.stop() == 0
    midnight = epoch_local(2026, 12, 1, 0, 0, 0)
    daily = unique(records(sub, 'daily'))
    monthly = unique(records(sub, 'monthly'))
    assert len(daily) == 1 and len(monthly) == 1, (daily, monthly)
    d, m = daily[0], monthly[0]
    assert d['date'] == '2026-11-30' and m['month'] == '2026-11'
    assert parse(d['end']) == midnight == parse(m['end'])
    before = [i for i in unique(records(sub, 'interval')) if parse(i['end']) <= midnight]
    assert before
    day_total = sum(i['energy_import_kwh'] for i in before)
    assert abs(d['energy_import_kwh'] - day_total) < 1e-6, (d, day_total)
    assert abs(m['energy_import_kwh'] - day_total) < 1e-6, (m, day_total)
    # Started mid-day: the gateway did not see the whole day, and says so.
    assert d['complete'] is False and d['source'] == 'gateway'
    assert d['cumulative']['energy_import_kwh'] == good_cumulatives(sub)[midnight]
    assert abs(d['unattributed_kwh'] - day_total) < 1e-6  # no tariff: nothing attributed
    # The daily record comes after the interval that ends at the freeze.
    seq_last_interval = max(i['seq'] for i in before)
    assert d['seq'] > seq_last_interval and m['seq'] > d['seq']


if __name__ == '__main__':
    pytest.main([__file__])


def test_backfill_from_the_meters_frozen_days(broker, dlt645_sim, gateway, subscriber_factory,
                                              tmp_path, monkeypatch):
    """A gateway that was not there: the last three daily freezes come from
    the meter's own frozen records (0506xxxx), each day's energy the
    difference of two consecutive freezes, and they say they came from the
    meter."""
    monkeypatch.setenv('TZ', 'Asia/Shanghai')  # the simulated meter's clock
    sim = dlt645_sim('b645', {'meters': [{'address': ADDR, 'phases': 1, 'load_kw': 7.2,
                                          'import_kwh': 5000.0, 'freeze_history_days': 7}]})
    cfg = config(tmp_path, broker.port, sim.gateway_end, '2s')
    cfg['schedule'].update(backfill_days=3, backfill_at='00:00')
    sub = subscriber_factory(broker.port, PREFIX + '/#')
    gw = gateway(cfg).start()
    wait_until(lambda: len([d for d in records(sub, 'daily') if d['source'] == 'meter']) >= 3,
               30, what='three daily records read back from the meter')
    assert gw.stop() == 0
    backfilled = unique([d for d in records(sub, 'daily') if d['source'] == 'meter'])
    today = dt.datetime.now(TZ).date()
    assert sorted(d['date'] for d in backfilled) == sorted(
        str(today - dt.timedelta(days=k)) for k in (1, 2, 3))
    frozen = {}
    for f in sim.frames():
        if f.get('dir') == 'tx' and f.get('di', '').upper().startswith('050601') and f.get('values'):
            frozen[int(f['di'][-2:], 16)] = f['values']
    for d in backfilled:
        back = (today - dt.date.fromisoformat(d['date'])).days
        # A whole day of the meter's 7.2 kW load, from its own registers.
        assert abs(d['energy_import_kwh'] - 7.2 * 24) < 0.02, d
        assert d['complete'] is True and d['periods'] == {}, d
        assert d['cumulative']['energy_import_kwh'] == pytest.approx(
            float(frozen[back]['freeze_energy_import_kwh']), abs=1e-9), (d, frozen[back])
        assert parse(d['end']) - parse(d['start']) == 86400
    # The meter was asked for the freezes 1 to 4 days back, and nothing older.
    asked = {f['di'].upper() for f in sim.frames() if f.get('dir') == 'rx' and f.get('di')}
    assert {'05060101', '05060102', '05060103', '05060104'} <= asked
    assert '05060105' not in asked


def test_backfill_of_a_silent_meter_fails_with_an_event(broker, dlt645_sim, gateway,
                                                        subscriber_factory, tmp_path):
    """A meter that does not answer its frozen data: after its retries, one
    backfill_failed event per day, naming the meter and why."""
    sim = dlt645_sim('b645', sim_config(silence=True))
    cfg = config(tmp_path, broker.port, sim.gateway_end, '2s')
    cfg['schedule'].update(backfill_days=2, backfill_at='00:00')
    sub = subscriber_factory(broker.port, PREFIX + '/event')
    gw = gateway(cfg).start()

    def failed():
        return [p for _, p, _ in sub.snapshot() if p.get('type') == 'backfill_failed']
    wait_until(lambda: len(failed()) >= 2, 30, what='two backfill_failed events')
    assert gw.stop() == 0
    events = failed()
    assert sorted(e['days_back'] for e in events) == [1, 2]
    for e in events:
        assert e['meter'] == 'm-1' and 'no reply' in e['reason'], e


def test_register_wrap_continues_and_a_drop_is_a_reset(broker, dlt645_sim, gateway,
                                                       subscriber_factory, tmp_path):
    """XXXXXX.XX kWh wraps at 1 000 000: the intervals go on across the wrap,
    all positive, adding up through it. A meter whose register drops
    otherwise (here one that rolls over at 1000 kWh, as a replaced or
    non-standard meter looks) gives meter_reset and a new baseline, never a
    negative interval."""
    wrapping = {'address': ADDR, 'phases': 1, 'load_kw': 7.2, 'speedup': 10,
                'import_kwh': 999999.80}
    small = {'address': '000000000002', 'phases': 1, 'load_kw': 7.2, 'speedup': 10,
             'import_kwh': 999.84, 'counter_max_kwh': 1000}
    sim = dlt645_sim('b645', {'meters': [wrapping, small]})
    cfg = config(tmp_path, broker.port, sim.gateway_end, '2s')
    cfg['buses'][0]['meters'].append(
        {'id': 'm-2', 'address': '000000000002', 'profile': 'dlt645-single-phase'})
    sub = subscriber_factory(broker.port, PREFIX + '/#')
    gw = gateway(cfg).start()

    def wrapped():
        return [r for r in records(sub, 'reading') if r['meter'] == 'm-1' and
                r['quality'] == 'good' and r['values']['energy_import_kwh'] < 1000]
    wait_until(lambda: len(wrapped()) >= 2, 40, what='the register to wrap')
    wait_until(lambda: [p for _, p, _ in sub.snapshot(PREFIX + '/event')
                        if p.get('type') == 'meter_reset'], 20, what='a meter_reset')
    assert gw.stop() == 0
    intervals = unique([i for i in records(sub, 'interval') if i['meter'] == 'm-1'])
    check_contiguous(intervals)
    assert all(i['energy_import_kwh'] >= 0 for i in intervals)
    cum = {parse(r['ts']): r['values']['energy_import_kwh'] for r in unique(records(sub, 'reading'))
           if r['meter'] == 'm-1' and r['quality'] == 'good'}
    first, last = cum[parse(intervals[0]['start'])], cum[parse(intervals[-1]['end'])]
    total = sum(i['energy_import_kwh'] for i in intervals)
    assert last < first  # it did wrap
    assert abs(total - (last + 1000000 - first)) < 1e-6, (total, first, last)

    resets = [p for _, p, _ in sub.snapshot(PREFIX + '/event') if p.get('type') == 'meter_reset']
    assert all(r['meter'] == 'm-2' for r in resets), resets
    assert resets[0]['point'] == 'energy_import_kwh'
    assert resets[0]['before'] > 999 and resets[0]['after'] < 1
    other = unique([i for i in records(sub, 'interval') if i['meter'] == 'm-2'])
    assert all(i['energy_import_kwh'] >= 0 for i in other)


def test_failed_boundary_is_retried_within_its_window(broker, dlt645_sim, gateway,
                                                      subscriber_factory, tmp_path):
    """A meter silent at a boundary and back a moment later: the read is
    retried within the window (补抄), the reading and the interval ending at
    it say late, and the tables still add up."""
    sim = dlt645_sim('b645', sim_config())
    cfg = config(tmp_path, broker.port, sim.gateway_end, '6s')
    cfg['schedule']['retries'] = 2
    sub = subscriber_factory(broker.port, PREFIX + '/#')
    gw = gateway(cfg).start()
    wait_until(lambda: len(records(sub, 'interval')) >= 1, 30, what='a first interval')
    sim.reload(sim_config(silence=True))
    wait_until(lambda: any(r['quality'] == 'timeout' for r in records(sub, 'reading')), 20,
               what='a silent boundary')
    sim.reload(sim_config())

    def late_good():
        return [r for r in records(sub, 'reading') if r.get('late') and r['quality'] == 'good']
    wait_until(late_good, 20, what='a retried reading')
    n = len(unique(records(sub, 'interval')))
    wait_until(lambda: len(unique(records(sub, 'interval'))) >= n + 2, 30,
               what='intervals after the retry')
    assert gw.stop() == 0
    retried = late_good()[0]
    # Read within its window: after the boundary, before the next one.
    assert 0 < parse(retried['read_at'][:19] + 'Z') - parse(retried['ts']) < 6, retried
    intervals = unique(records(sub, 'interval'))
    check_contiguous(intervals)
    late = [i for i in intervals if i.get('late')]
    assert len(late) == 1 and late[0]['complete'] is False, late
    assert late[0]['end'] == retried['read_at'][:19] + 'Z' or \
        abs(parse(late[0]['end']) - parse(retried['read_at'][:19] + 'Z')) <= 1, (late, retried)
    total = sum(i['energy_import_kwh'] for i in intervals)
    first = good_cumulatives(sub)[parse(intervals[0]['start'])]
    last = good_cumulatives(sub)[parse(intervals[-1]['end'])]
    assert abs(total - (last - first)) < 1e-6
