"""Guest RAM sizes (make run MEM=): one minimum, refused at boot in one line below it;
at the minimum make run's devices work; at any size QEMU gives an i686 guest (up to
the 32-bit hole) the sizes Python sees are right (no wrap at 2**30 or 2**31)."""
import re

import pytest

from tests.qemu.harness import EXIT_FATAL, default_devices, run_script

pytestmark = pytest.mark.qemu

RAM_MIN_MIB = 8         # ports/x86_virt/main.c
REFUSAL = ('FATAL: not enough memory: %d MiB of RAM, the minimum is 8 MiB '
           '(QEMU -m 8, make run MEM=8)')

# What a user does first: the devices again, a read, DHCP, entropy.
USE_THE_DEVICES = '''
import virtio, inet, time
print(len(virtio.probe()), "devices")
print(len(virtio.find("blk").read(0, 8)), "bytes read")
print(inet.Stack(virtio.find("net"), time).dhcp())
print(len(virtio.find("rng").read(16)), "random bytes")
'''

SIZES = '''
import gc, micropython
gc.collect()
free, alloc = gc.mem_free(), gc.mem_alloc()
print("gc", free, alloc)
micropython.mem_info()
n = %d
print("len", len(bytearray(n)), n)
'''


@pytest.mark.parametrize('mem', [4, RAM_MIN_MIB - 1])
def test_below_the_minimum_the_boot_refuses_in_one_line(image, mem):
    r = run_script('print("should not run")\n', mem=mem, image=image, timeout=30)
    assert r.code == EXIT_FATAL
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert lines == [REFUSAL % mem]


@pytest.mark.parametrize('mem', [RAM_MIN_MIB, 16])
def test_at_the_minimum_make_runs_devices_work(image, tmp_disk, mem):
    r = run_script(USE_THE_DEVICES, mem=mem, image=image, devices=default_devices(tmp_disk(1 << 20)))
    assert r.status == 0, r.output
    assert 'virtio: 4 devices' in r.output
    assert '4 devices\n4096 bytes read\n10.0.2.15/24 router 10.0.2.2' in r.output
    assert '16 random bytes' in r.output


@pytest.mark.parametrize('machine, mem, unused_mib', [
    ('pc', 128, None),
    ('q35', 3072, 959),     # q35 keeps 2 GiB below 4 GiB from 2816 MiB on: 1023 heap, 64 DMA
    ('pc', 4096, 1983),     # pc keeps 3 GiB below 4 GiB from 3.5 GiB on
])
def test_sizes_are_right_at_every_ram_size(image, machine, mem, unused_mib):
    big = 512 << 20 if mem > 1024 else 64 << 20
    r = run_script(SIZES % big, machine=machine, mem=mem, image=image, timeout=60)
    assert r.status == 0, r.output
    free, alloc = map(int, re.search(r'^gc (\S+) (\S+)$', r.output, re.M).groups())
    total, used, free_info = map(int, re.search(
        r'GC: total: (\d+), used: (\d+), free: (\d+)', r.output).groups())
    # The two agree but for what printing the first allocated in between.
    assert abs(free - free_info) < 1024 and abs(alloc - used) < 1024
    assert free + alloc == total
    assert 0 < total < 2 ** 30
    heap_kib = int(re.search(r'heap (\d+) KiB', r.output).group(1))
    assert abs(total - heap_kib * 1024) < heap_kib * 1024 // 16     # less the GC's tables
    assert re.search(r'^len %d %d$' % (big, big), r.output, re.M)
    unused = re.search(r'x86_virt: (\d+) MiB of RAM above the heap unused', r.output)
    assert (int(unused.group(1)) if unused else None) == unused_mib
