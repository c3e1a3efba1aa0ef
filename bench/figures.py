"""Figures both guests share: UDP echo from the host side, ping replies, the written range."""
import os

import netclient
import pattern
import workloads as W


def udp(port, results):
    """Run the host UDP client; fill results[name] for the udp workloads."""
    r = netclient.rtt(port, W.UDP_RTT_COUNT, W.UDP_SIZES)
    ok = r['lost'] == 0 and r['bad'] == 0 and r['rtt_ms']
    err = None if ok else 'lost %d, altered %d of %d' % (r['lost'], r['bad'], W.UDP_RTT_COUNT)
    results['udp_rtt'] = {'value': W.median(r['rtt_ms']) if ok else None, 'error': err,
                          'detail': {'n': len(r['rtt_ms']), 'min_ms': min(r['rtt_ms'] or [0])}}
    results['udp_rtt_p99'] = {'value': W.percentile(r['rtt_ms'], 99) if ok else None,
                              'error': err}
    q = netclient.rate(port, W.UDP_RATE_COUNT, W.UDP_SIZES, W.UDP_WINDOW)
    ok = q['lost'] == 0 and q['bad'] == 0
    results['udp_rate'] = {'value': q['per_s'] if ok else None,
                           'error': None if ok else 'lost %d, altered %d of %d' % (
                               q['lost'], q['bad'], W.UDP_RATE_COUNT),
                           'detail': q}


def ping(entry):
    if entry is None or not entry['ping_ms']:
        return {'value': None, 'error': 'no replies'}
    got = entry['ping_ms']
    return {'value': W.median(got), 'error': None,
            'detail': {'n': len(got), 'min_ms': min(got), 'max_ms': max(got)}}


def check_written(disk, w, results):
    """The written range must read back as the WRIT pattern from the host, and the
    sectors just outside it must be untouched."""
    p = w.params
    bad = pattern.verify_file(disk, p['offset'], p['total'], pattern.WRITE_MAGIC,
                              pattern.WRITE_SALT)
    end = p['offset'] + p['total']
    if end < os.path.getsize(disk):
        bad += pattern.verify_file(disk, end, pattern.SECTOR * 8, pattern.READ_MAGIC,
                                   pattern.READ_SALT)
    if bad:
        results[w.name] = {'value': None, 'error': 'image check after power-off: %d bad sectors, '
                           'first %d' % (len(bad), bad[0])}
