# Split virtqueues (spec 2.7). virtio.split.ring owns every step of the
# split ring (set_desc, post, publish, kick, pop, ...: its header lists them
# with their sections), in plain Python and in viper; virtio.split.queue is
# the queue for the general path on top of those steps (SplitVirtqueue).
# Both are reached from here, as virtio.split.

from virtio.split.ring import *                # noqa: F401,F403 (the steps, the layout)
from virtio.split.queue import SplitVirtqueue  # noqa: F401
