# Packed virtqueues (spec 2.8). virtio.packed.ring owns every step of the
# packed ring (set_desc, post, publish, kick, pop, ...: its header lists
# them with their sections), in plain Python and in viper;
# virtio.packed.queue is the queue for the general path on top of those
# steps (PackedVirtqueue). Both are reached from here, as virtio.packed.

from virtio.packed.ring import *                 # noqa: F401,F403 (the steps, the layout)
from virtio.packed.queue import PackedVirtqueue  # noqa: F401
