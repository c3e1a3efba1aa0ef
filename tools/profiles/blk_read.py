# Setup for tools/guest-profile.py: one 4 KiB read at a time into DMA memory, as the
# bench's read_4k_d1 does; rd() reads the next 4 KiB.
#   .venv/bin/python tools/guest-profile.py --setup tools/profiles/blk_read.py -n 50 'rd()'
import virtio
import x86

b = virtio.find("blk")
buf = x86.bytearray_at(x86.dma_alloc(4096), 4096)
k = [0]


def rd():
    k[0] = (k[0] + 8) & 0xFFFF
    b.readinto(k[0], buf)
