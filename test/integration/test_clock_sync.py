# SPDX-License-Identifier: MIT
"""DL/T 645 meter clocks: a meter 2 minutes off is reported by a clock_drift
event and corrected by broadcast time (0x08), read again to prove it; one 10
minutes off is reported and never "corrected" (meters refuse a broadcast
correction that large, and the simulator does too); a meter on time gives no
event. The meters' clocks are the simulator's, seen through its own log."""

import pytest

from conftest import check_complete, gateway_config, wait_until

PREFIX = 'meterhub/gw-test'
POINTS = [{'di': '00010000'}]


def dlt645_bus(name, device, ids):
    return {'name': name, 'device': device, 'baud': 2400, 'parity': 'even',
            'protocol': 'dlt645', 'timeout': '300ms',
            'meters': [{'id': i, 'address': a, 'profile': 'one'} for i, a in ids]}


def drift_events(sub):
    got = {p['seq']: p for _, p, _ in sub.snapshot(PREFIX + '/event')
           if isinstance(p, dict) and p.get('type') == 'clock_drift'}
    return [got[s] for s in sorted(got)]


def broadcasts(sim):
    return [f for f in sim.frames() if f.get('dir') == 'rx' and f.get('c') == 0x08]


@pytest.mark.slow
def test_drifting_meter_is_corrected_and_one_too_far_off_is_reported(
        broker, dlt645_sim, gateway, subscriber_factory, tmp_path, monkeypatch):
    # The meters keep the gateway's local time, as a meter it sets does.
    monkeypatch.setenv('TZ', 'Asia/Shanghai')
    near = dlt645_sim('near', {'meters': [
        {'address': '000000000001', 'clock_offset_s': 120},
        {'address': '000000000002'}]})
    far = dlt645_sim('far', {'meters': [{'address': '000000000003', 'clock_offset_s': 600}]})
    cfg = gateway_config(tmp_path, broker.port, [
        dlt645_bus('near', near.gateway_end, [('m-1', '000000000001'), ('m-2', '000000000002')]),
        dlt645_bus('far', far.gateway_end, [('m-3', '000000000003')])],
        interval='5s', profiles={'one': {'points': POINTS}},
        clock={'check_every': '10s', 'max_drift': '30s', 'require_synced': False})
    sub = subscriber_factory(broker.port, PREFIX + '/#')
    gw = gateway(cfg).start()

    def found():
        ev = drift_events(sub)
        return {e['meter'] for e in ev} >= {'m-1', 'm-3'} and ev
    events = wait_until(found, 40, what='clock_drift events for m-1 and m-3')

    m1 = [e for e in events if e['meter'] == 'm-1']
    assert len(m1) == 1, m1
    assert m1[0]['corrected'] is True and m1[0]['bus'] == 'near', m1
    assert 115 <= m1[0]['drift_s'] <= 125, m1
    assert abs(m1[0]['after_s']) <= 3, m1
    assert len(broadcasts(near)) == 1, broadcasts(near)

    m3 = [e for e in events if e['meter'] == 'm-3']
    assert m3[0]['corrected'] is False and 'max_correction' in m3[0]['reason'], m3
    assert 595 <= m3[0]['drift_s'] <= 605, m3
    assert not broadcasts(far), 'a broadcast went to a meter that would refuse it'

    # Read again at the next check: m-1 is on time now and gives no new event.
    wait_until(lambda: len([e for e in drift_events(sub) if e['meter'] == 'm-3']) >= 2, 30,
               what='the next check of m-3')
    assert len([e for e in drift_events(sub) if e['meter'] == 'm-1']) == 1
    assert not [e for e in drift_events(sub) if e['meter'] == 'm-2']
    assert gw.stop() == 0
    check_complete(sub.snapshot())
