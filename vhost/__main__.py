"""python -m vhost DEVICE --socket PATH [options]: serve one QEMU.

Prints 'vhost: listening on PATH' on stderr once the socket exists (the
launcher waits for it) and returns when QEMU disconnects."""

import argparse
import signal
import sys

from vhost.device import MISBEHAVIOURS, NOT_SIGNALLABLE
from vhost.server import Server


def make_device(args):
    common = {'misbehave': args.misbehave, 'after': args.after}
    if args.device == 'rng':
        from vhost.rng import RngDevice
        record = open(args.record, 'wb') if args.record else None
        return RngDevice(seed=args.seed, max_bytes=args.max_bytes, record=record, **common)
    if args.device == 'blk':
        from vhost.blk import BlkDevice
        if not args.image:
            raise SystemExit('vhost blk: --image FILE is required')
        return BlkDevice(args.image, serial=args.serial.encode(), read_only=args.read_only,
                         **common)
    if args.device == 'net':
        from vhost.net import NetDevice
        return NetDevice(**common)
    raise SystemExit('vhost: unknown device %r (rng, blk, net)' % args.device)


def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m vhost', description=__doc__)
    p.add_argument('device', choices=('rng', 'blk', 'net'))
    p.add_argument('--socket', required=True, help='Unix socket path to listen on')
    p.add_argument('--misbehave', choices=MISBEHAVIOURS + tuple(NOT_SIGNALLABLE),
                   help='misbehaviour switch (see vhost/device.py)')
    p.add_argument('--after', type=int, default=0,
                   help='good completions before the misbehaviour starts')
    p.add_argument('--seed', type=int, default=0, help='rng: the byte stream seed')
    p.add_argument('--max-bytes', type=int, help='rng: at most this many bytes per request')
    p.add_argument('--record', help='rng: write every byte given to this file')
    p.add_argument('--image', help='blk: the disk image file')
    p.add_argument('--serial', default='vhost-python', help='blk: the GET_ID serial')
    p.add_argument('--read-only', action='store_true', help='blk: offer VIRTIO_BLK_F_RO')
    p.add_argument('--control', help='a Unix socket taking "misbehave NAME [AFTER]" lines')
    p.add_argument('--verbose', action='store_true', help='log every message received')
    p.add_argument('--quiet', action='store_true', help='log nothing but errors')
    args = p.parse_args(argv)
    try:
        dev = make_device(args)
    except ValueError as e:
        raise SystemExit('vhost %s: %s' % (args.device, e))
    log = None
    if args.quiet:
        log = lambda msg: None      # noqa: E731
    server = Server(dev, args.socket, log, args.control, args.verbose)
    # SIGTERM ends the loop through the finally clauses: socket removed.
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))

    def ready():
        sys.stderr.write('vhost: listening on %s\n' % args.socket)
        sys.stderr.flush()
    server.serve(ready)
    return 0


if __name__ == '__main__':
    sys.exit(main())
