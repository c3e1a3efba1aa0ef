"""QEMU's own host CPU time, read from /proc/PID/stat (proc(5)).

A process's utime and stime (fields 14 and 15, in clock ticks) count every thread it has
or had: QEMU's vCPU thread under TCG, its main loop (slirp, block completions) and its
I/O workers. The bench reads them before and after a workload and reports the difference
per 1,000 requests (blk requests, datagrams, pings), for both guests alike.
"""
import os

TICK = os.sysconf('SC_CLK_TCK') if hasattr(os, 'sysconf') else 100
UTIME, STIME = 14, 15     # proc(5) field numbers, counting from 1 (pid is field 1)


def parse_stat(text, tick=TICK):
    """utime + stime in seconds from the text of /proc/PID/stat. The command name (field
    2) is in parentheses and may itself hold spaces and parentheses: the fields are
    counted after its last ')'."""
    end = text.rfind(')')
    if end < 0:
        raise ValueError('not a /proc/PID/stat line: %r' % text[:80])
    rest = text[end + 1:].split()
    # rest[0] is field 3 (state): field n is rest[n - 3].
    if len(rest) < STIME - 2:
        raise ValueError('/proc/PID/stat line too short: %r' % text[:80])
    return (int(rest[UTIME - 3]) + int(rest[STIME - 3])) / float(tick)


def cpu_seconds(pid, proc='/proc'):
    """The process's CPU seconds so far (all threads), or None when it is gone."""
    try:
        with open(os.path.join(proc, str(pid), 'stat')) as f:
            return parse_stat(f.read())
    except (OSError, ValueError):
        return None


class Meter:
    """CPU seconds of one process across a stretch of work:
        m = Meter(pid); ...work...; m.stop() -> seconds (None when unreadable)."""

    def __init__(self, pid, proc='/proc'):
        self.pid, self.proc = pid, proc
        self.start = cpu_seconds(pid, proc)

    def stop(self):
        end = cpu_seconds(self.pid, self.proc)
        if self.start is None or end is None:
            return None
        return end - self.start


def per_1000(cpu_s, requests):
    """CPU seconds per 1,000 requests, or None without both figures."""
    if cpu_s is None or not requests:
        return None
    return cpu_s * 1000.0 / requests


def requests_of(kind, result):
    """How many requests a workload's figure stands for: blk requests from its RESULT
    line's ops (reads; writes plus the final flush), or None."""
    if not result or 'ops' not in result:
        return None
    if kind == 'write':
        return result['ops'] + 1
    return result['ops']
