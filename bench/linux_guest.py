"""One boot of the Linux reference guest running every workload; returns its figures.

The workloads become /etc/bench.sh (appended to the cached initramfs), the helper does the
block I/O, busybox ping the ICMP, and the helper's echo server the UDP; the host runs the
UDP client (netclient) while the guest waits in its echo server.
"""
import os
import shutil

import figures
import linuxref
import netclient
import qemu
import tcpclient
import workloads as W

KERNEL_CMDLINE = 'console=ttyS0 quiet panic=-1'
# Linux's best here: no I/O scheduler on the virtio disk (mq-deadline merges and adds work).
SCHEDULER = os.environ.get('BENCH_LINUX_SCHEDULER', 'none')


def tcp_script(sink_port):
    """The TCP workloads (bench/tcpclient.py): busybox nc counts what the host sends, sends
    zeros to the host's sink, busybox httpd serves the same 1 KiB page as ours."""
    return [
        'echo "@@ tcp_server"',
        'mkdir -p /www',
        'i=0; while [ $i -lt 63 ]; do printf 0123456789abcdef; i=$((i+1)); done > /www/1k',
        "printf '0123456789abcd\\r\\n' >> /www/1k",
        'httpd -p %d -h /www' % tcpclient.HTTP_GUEST_PORT,
        # Listening before TCP READY: a host connection that slirp forwards before nc
        # listens is reset by the guest (seen once in five boots).
        'nc -l -p %d | wc -c > /rx.count &' % tcpclient.RX_GUEST_PORT,
        'usleep 300000',
        'echo "TCP READY"',
        'wait',
        'echo "RESULT op=tcprx bytes=$(cat /rx.count)"',
        'dd if=/dev/zero bs=65536 count=%d 2>/dev/null | nc 10.0.2.2 %d'
        % (W.TCP_BYTES // 65536, sink_port),
        'echo "TCPTX DONE"',
        'nc -l -p %d > /dev/null' % tcpclient.QUIT_GUEST_PORT,
        'echo "HTTPD DONE"']


SCHEDULER_LINE = 'echo %s > /sys/block/vda/queue/scheduler' % SCHEDULER
UDP_SERVER = ['echo "@@ udp_server"', 'bhelper udpecho %d' % qemu.UDP_GUEST_PORT]


def workload_lines(w):
    """The shell lines that run one read, write or ping workload."""
    p = w.params
    if w.kind == 'read':
        return ['echo "@@ %s"' % w.name,
                'bhelper read /dev/vda %d %d %s %d %d %d' % (
                    p['bs'], p['depth'], p['mode'], p['region'], p['max_ops'], p['max_ms'])]
    if w.kind == 'write':
        return ['echo "@@ %s"' % w.name,
                'bhelper write /dev/vda %d %d %d' % (p['bs'], p['offset'], p['total'])]
    if w.kind == 'ping':
        return ['echo "@@ %s"' % w.name, 'ping -c %d -i 0.2 -W 2 10.0.2.2' % p['count']]
    return []


def script(selected, sink_port=None):
    lines = [SCHEDULER_LINE]
    for w in selected:
        lines += workload_lines(w)
    lines += fs_script([w for w in selected if w.kind == 'fs'])
    if any(w.kind == 'udp' for w in selected):
        lines += UDP_SERVER
    if sink_port is not None and any(w.kind == 'tcp' for w in selected):
        lines += tcp_script(sink_port)
    return '\n'.join(lines) + '\n'


FS_MOUNT = '/tmp'


def fs_script(fs):
    """The file workloads on the second disk (/dev/vdb, FAT made on the host), through
    vfat; before the read, the page cache is dropped (after a sync)."""
    if not fs:
        return []
    big = FS_MOUNT + '/big.bin'
    lines = ['mount -t vfat /dev/vdb %s || echo "BENCH ERROR mount vfat /dev/vdb"' % FS_MOUNT]
    for w in fs:
        p = w.params
        if p['op'] == 'fsread' and not any(x.params['op'] == 'fswrite' for x in fs):
            lines += ['bhelper fswrite %s %d %d > /dev/null' % (big, p['bs'], p['total'])]
        if p['op'] == 'fsread':
            lines += ['sync', 'echo 3 > /proc/sys/vm/drop_caches']
        lines += ['echo "@@ %s"' % w.name]
        if p['op'] == 'fsfiles':
            lines += ['bhelper fsfiles %s %d %d' % (FS_MOUNT, p['count'], p['size'])]
        else:
            lines += ['bhelper %s %s %d %d' % (p['op'], big, p['bs'], p['total'])]
    return lines


def run(info, master_disk, work_dir, selected, timeout=150, log=print, machine='pc'):
    """Boot once, run the selected workloads; {name: {'value', 'error', ...}}. On
    microvm the devices are virtio-mmio (QEMU lists them on the kernel command line)
    and the boot figure is boot_microvm."""
    if machine == qemu.MICROVM and not info.get('virtio_mmio_cmdline'):
        # Tried: with ACPI on instead, this kernel stalls early in boot under TCG.
        why = 'the reference kernel reads no virtio_mmio.device= (no VIRTIO_MMIO_CMDLINE_DEVICES)'
        return {w.name: {'value': None, 'error': why, 'na': True} for w in selected}
    disk = os.path.join(work_dir, 'linux-disk.img')
    shutil.copyfile(master_disk, disk)
    tcp = any(w.kind == 'tcp' for w in selected)
    ports = qemu.tcp_forwards() if tcp else None
    sink = tcpclient.Sink() if tcp else None
    try:
        return _run(info, disk, work_dir, selected, timeout, log, machine, ports, sink)
    finally:
        if sink is not None:
            sink.close()


def _run(info, disk, work_dir, selected, timeout, log, machine, ports, sink):
    initrd = linuxref.with_script(info['initramfs'], script(selected, sink and sink.port),
                                  os.path.join(work_dir, 'linux-initrd.cpio'))
    port = qemu.free_udp_port()
    fs_selected = [w for w in selected if w.kind == 'fs']
    fs_disk = fs_selected and qemu.make_fs_disk(os.path.join(work_dir, 'linux-fs.img'), W.FS_DISK_BYTES)
    args = (qemu.machine_flags(machine) +
            qemu.devices(disk, port, machine, fs_disk or None, ports and qemu.tcp_fwd_map(ports)) +
            ['-kernel', info['kernel'], '-initrd', initrd, '-append', KERNEL_CMDLINE])
    results = {}
    with qemu.Qemu(args, timeout) as q:
        _, t_init = q.expect(rb'BENCH INIT[^\n]*\n')
        m, t_ready = q.expect(rb'BENCH READY[^\n]*\n')
        results[W.boot_name(machine)] = {'value': t_ready, 'error': None,
                           'detail': {'to_init_s': t_init, 'marker': m.group(0).decode().strip()}}
        if any(w.kind == 'udp' for w in selected):
            q.expect(rb'UDPECHO READY')
            figures.udp(port, results)
            if not netclient.quit(port):
                log('linux: the echo server did not stop')
        if ports is not None:
            q.expect(rb'TCP READY')
            figures.tcp(q, ports, sink, results, linux=True)
        q.expect(rb'BENCH DONE')
        q.wait_exit(30)
        text = q.output()
    parsed = W.parse_output(text)
    for w in selected:
        if w.kind in ('read', 'write'):
            entry = parsed.get(w.name)
            value, err = W.disk_figure(w, entry and entry['result'])
            results[w.name] = {'value': value, 'error': err,
                               'detail': entry and entry['result']}
        elif w.kind == 'fs':
            entry = parsed.get(w.name)
            value, err = W.fs_figure(w, entry and entry['result'])
            if not fs_disk:
                value, err = None, 'no FAT disk (mformat missing)'
            results[w.name] = {'value': value, 'error': err,
                               'detail': entry and entry['result']}
        elif w.kind == 'ping':
            results[w.name] = figures.ping(parsed.get(w.name))
    for w in selected:
        if w.kind == 'write' and results[w.name]['value'] is not None:
            figures.check_written(disk, w, results)
    if fs_disk:
        os.remove(fs_disk)
    if 'ERROR' in text:
        results['_errors'] = [l for l in text.splitlines() if 'BENCH ERROR' in l]
    os.remove(disk)
    return results
