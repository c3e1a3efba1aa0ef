# Setup for tools/guest-profile.py: batches of 32 4 KiB reads through blk's batch
# interface (submit_batch, poll_batch), as the bench's depth-32 rows use it; batch()
# submits 32 and collects them all; with --packed the ring is a packed one.
#   .venv/bin/python tools/guest-profile.py --setup tools/profiles/blk_batch.py 'batch()'
from array import array
import virtio
import x86

b = virtio.find("blk")
DEPTH = 32
b.depth = max(b.depth, DEPTH)
bufs = [x86.bytearray_at(x86.dma_alloc(4096), 4096) for _ in range(DEPTH)]
where = array("I", [8 * k for k in range(DEPTH)])
tags = array("I", range(DEPTH))
out = array("I", [0] * DEPTH)


def batch():
    b.submit_batch(0, tags, DEPTH, where, bufs)
    got = 0
    while got < DEPTH:
        got += b.poll_batch(out, 1000)
