"""tools/guest-profile.py end to end with the setups docs/performance.md quotes: each boots,
runs, and the profile names the interpreter and has the statement's work in it."""
import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.qemu

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize('setup, statement, at_least, extra', [
    ('udp_echo.py', 'ie()', 20000, []),      # a datagram in and out: tens of thousands
    ('blk_read.py', 'rd()', 5000, []),
    ('blk_batch.py', 'batch(); assert b.requestq.kind == "split"', 32 * 1000, []),
    ('blk_batch.py', 'batch(); assert b.requestq.kind == "packed"', 32 * 1000, ['--packed']),
])
def test_the_profiles_of_the_docs_run(setup, statement, at_least, extra):
    r = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'guest-profile.py'),
                        '--setup', os.path.join(ROOT, 'tools', 'profiles', setup), '-n', '3',
                        '--callers', 'mp_map_lookup'] + extra + [statement],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    m = re.search(r'~(\d+) guest instructions each', r.stdout)
    assert m and int(m.group(1)) >= at_least, r.stdout
    assert 'mp_execute_bytecode' in r.stdout
    assert 'calls of mp_map_lookup per run' in r.stdout
