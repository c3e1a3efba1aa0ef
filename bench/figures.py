"""Figures both guests share: UDP echo and TCP from the host side, ping replies, the
written range."""
import os
import time

import netclient
import tcpclient
import pattern
import workloads as W


def udp(port, results, meter=None):
    """Run the host UDP client; fill results[name] for the udp workloads. meter: None, or
    a function starting a hostcpu.Meter on the guest's QEMU; each figure then carries
    that QEMU's CPU seconds over its part (cpu_s) and the datagrams it stands for."""
    m = meter() if meter else None
    r = netclient.rtt(port, W.UDP_RTT_COUNT, W.UDP_SIZES)
    cpu = m.stop() if m else None
    ok = r['lost'] == 0 and r['bad'] == 0 and r['rtt_ms']
    err = None if ok else 'lost %d, altered %d of %d' % (r['lost'], r['bad'], W.UDP_RTT_COUNT)
    results['udp_rtt'] = {'value': W.median(r['rtt_ms']) if ok else None, 'error': err,
                          'detail': {'n': len(r['rtt_ms']), 'min_ms': min(r['rtt_ms'] or [0])}}
    results['udp_rtt_p99'] = {'value': W.percentile(r['rtt_ms'], 99) if ok else None,
                              'error': err}
    m = meter() if meter else None
    q = netclient.rate(port, W.UDP_RATE_COUNT, W.UDP_SIZES, W.UDP_WINDOW)
    ok = q['lost'] == 0 and q['bad'] == 0
    results['udp_rate'] = {'value': q['per_s'] if ok else None,
                           'error': None if ok else 'lost %d, altered %d of %d' % (
                               q['lost'], q['bad'], W.UDP_RATE_COUNT),
                           'detail': q}
    if meter:
        for name in ('udp_rtt', 'udp_rtt_p99'):
            results[name].update(cpu_s=cpu, requests=W.UDP_RTT_COUNT)
        results['udp_rate'].update(cpu_s=m.stop(), requests=W.UDP_RATE_COUNT)


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


TCP_NAMES = ('tcp_rx', 'tcp_tx', 'http_rps')


def tcp(q, ports, sink, results, linux=False, timeout=180):
    """Run the host side of the TCP workloads against a guest whose server printed
    TCP READY (see tcpclient); fill results for tcp_rx, tcp_tx and http_rps."""
    n = W.TCP_BYTES
    data = tcpclient.pattern(n)
    t0 = tcpclient.send_bulk(ports['rx'], data, timeout)
    secs = time.monotonic() - t0
    m, _ = q.expect(rb'RESULT op=tcprx bytes=(\d+)\r?\n', timeout)   # the whole line
    got = int(m.group(1))
    results['tcp_rx'] = {'value': n / secs / 1e6 if got == n else None,
                         'error': None if got == n else 'guest got %d of %d bytes' % (got, n),
                         'detail': {'bytes': got, 'seconds': secs}}
    r = sink.receive(n, timeout)
    ok = r['bytes'] == n and not r['bad']
    results['tcp_tx'] = {'value': n / r['seconds'] / 1e6 if ok else None,
                         'error': None if ok else 'host got %d of %d bytes, %d wrong' % (
                             r['bytes'], n, r['bad']), 'detail': r}
    q.expect(rb'TCPTX DONE', timeout)
    if not tcpclient.wait_http(ports['http']):
        results['http_rps'] = {'value': None, 'error': 'the HTTP server did not answer'}
    else:
        h = tcpclient.http_rate(ports['http'], W.SECONDS)
        ok = h['bad'] == 0 and h['ok'] > 0
        results['http_rps'] = {'value': h['per_s'] if ok else None, 'detail': h,
                               'error': None if ok else '%d failed requests' % h['bad']}
    if linux:
        tcpclient.quit(ports['quit'])
    q.expect(rb'HTTPD DONE', 60)
