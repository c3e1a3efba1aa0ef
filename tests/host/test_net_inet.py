"""The inet stack on the virtio-net driver on the device model, with the slirp-like
Gateway of test_inet_sim behind the device: the driver is the link the stack expects.
And random traffic, with random device faults mixed in, never loses count."""

from hypothesis import given, settings, strategies as st

import inet

from tests.host.models.net import DEFAULT_MAC, F_MRG_RXBUF, QEMU_FEATURES, NetModel, Reflector
from tests.host.test_inet_sim import Gateway
from tests.host.test_net import full, up


def test_stack_leases_pings_and_echoes_through_the_driver():
    model = NetModel(mode='modern')
    m, dev = up(model)
    gw = Gateway(model)
    s = inet.Stack(dev, m)
    lease = s.dhcp(timeout_ms=2000)
    assert str(lease) == '10.0.2.15/24 router 10.0.2.2 dns 10.0.2.3 lease 86400 s from 10.0.2.2'
    rtts = s.ping('10.0.2.2', count=3, timeout_ms=500)
    assert len(rtts) == 3 and None not in rtts
    u = s.socket()
    for n in (1, 100, 1472):
        data = bytes((i * 31 + n) & 0xFF for i in range(n))
        u.sendto(data, ('10.0.2.2', 7))
        assert u.recvfrom(500) == (data, ('10.0.2.2', 7))
    assert gw.errors == [] and model.errors == []
    assert s.dropped() == 0 and dev.rx_errors == 0 and dev.rx_dropped == 0
    assert dev.rx_packets == s.stats['rx_frames'] and dev.tx_packets == s.stats['tx_frames']


def test_the_stack_sees_the_driver_mtu():
    model = NetModel(mode='legacy', mtu=1400)
    m, dev = up(model)
    Gateway(model)
    s = inet.Stack(dev, m, '10.0.2.15', gateway='10.0.2.2')
    u = s.socket()
    u.sendto(bytes(1372), ('10.0.2.2', 7))
    assert u.recvfrom(500)[0] == bytes(1372)
    try:
        u.sendto(bytes(1373), ('10.0.2.2', 7))
    except ValueError as e:
        assert 'MTU 1400' in str(e)
    else:
        raise AssertionError('no ValueError over the MTU')


FAULTS = [None, None, None, 'rx_short', 'rx_oversized', 'bad_num_buffers']


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(14, 1600), st.sampled_from(FAULTS)), max_size=40),
       st.sampled_from(['legacy', 'modern']), st.booleans())
def test_random_traffic_and_faults_are_all_accounted_for(items, mode, mrg):
    """Each good frame the device hands over is received intact, or dropped when it is a
    runt or over the MTU; each bad completion is counted as an error (a packet spread over
    several buffers may count once per buffer); the receiveq is full again after each."""
    feats = QEMU_FEATURES if mrg else QEMU_FEATURES & ~F_MRG_RXBUF
    model = NetModel(mode=mode, features=feats, chunk=700 if mrg else None)
    m, dev = up(model)
    good = faulty = 0
    for k, (n, fault) in enumerate(items):
        if not mrg:
            n = min(n, dev.rx_size - dev.hdr_len)   # a device cannot send more then
            if fault == 'bad_num_buffers':
                fault = None                        # num_buffers means nothing then
        f = DEFAULT_MAC + bytes([k & 0xFF] * (n - 6))
        model.misbehave = fault
        model.deliver(f)
        errors = dev.rx_errors
        got = dev.recv(0)
        if fault is not None:
            assert got is None and dev.rx_errors > errors
            faulty += 1
        else:
            assert got == (f if n <= 1514 else None) and dev.rx_errors == errors
            good += 1
        assert full(dev)
    assert dev.recv(0) is None
    assert dev.rx_packets + dev.rx_dropped == good and dev.rx_errors >= faulty


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(14, 1514), min_size=1, max_size=80))
def test_random_frames_round_trip(sizes):
    model = NetModel(mode='modern', peer=Reflector())
    m, dev = up(model, rx_buffers=8, tx_buffers=4)
    for k, n in enumerate(sizes):
        out = bytes([0x02, 0, 0, 0, 0, 1]) + DEFAULT_MAC + bytes([(k + i) & 0xFF
                                                                   for i in range(n - 12)])
        dev.send(out)
        assert dev.recv(100) == out[6:12] + out[0:6] + out[12:]
    assert dev.tx_packets == dev.rx_packets == len(sizes) and model.errors == []
