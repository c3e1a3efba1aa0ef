"""The transcripts in README.md and docs/ are what the commands print today: each is
replayed (the same commands, in a guest with the same devices) and compared line by
line, the values the docs name as varying (timings, random bytes, ring addresses,
sizes that follow the image's size, the build date, the TSC) masked."""
import os
import re
import select
import subprocess
import sys
import tempfile
import time

import pytest

from tests.qemu.harness import ROOT, Guest, default_devices, make_disk, run_script

pytestmark = pytest.mark.qemu

DISK_SIZE = 64 << 20        # the Makefile's DISK_SIZE
PROMPT = '>>> '
VARIES = '<varies>'

# Values that change from run to run or build to build (the docs say which).
MASKS = [
    r'(heap )\d+( KiB)', r'(DMA )\d+( KiB)', r'(TSC )\d+( MHz)',
    r'(MicroPython v1\.23\.0 on )\d{4}-\d\d-\d\d()',
    r"(')\d+\.\d\d( ms')",                                           # ping times
    r'(queue_address <- )0x[0-9a-f]+ ring at 0x[0-9a-f]+()',           # ring addresses
    r'(queue_(?:desc|driver|device)\.lo <- )0x[0-9a-f]+()',
    r'((?:desc|avail|used) )0x[0-9a-f]+()', r'(^ {5}\d  )0x[0-9a-f]{16}()',
    r'(used_event )\d+()',                 # where the last sleep left it (virtio.wait)
]
# Lines that come or not with the host's speed: while waiting, the driver reads the
# device status now and then (a device that asks for a reset is noticed), and a wait
# that went to sleep ends with its queue's interrupt (traced: virtio.interrupts).
OPTIONAL = re.compile(r'^\S+ (modern device_status -> 0x0f ACKNOWLEDGE\|DRIVER\|DRIVER_OK'
                      r'\|FEATURES_OK|interrupt msix vector \d+ entry \d+ \(queue [\d-]+\))$')
# Whole output lines that vary, after a command containing the key.
VARYING_OUTPUT = {'ticks_diff(': r'\d+', "('rng').read(": r"""b(?:'.*'|".*")"""}


def mask(line):
    for pattern in MASKS:
        line = re.sub(pattern, r'\1' + VARIES + r'\2', line)
    return line


def doc_lines(name):
    with open(os.path.join(ROOT, name)) as f:
        return f.read().splitlines()


def transcript(name, first):
    """The lines of the indented (4 spaces) or fenced block of doc `name` that holds
    the line `first`, from that line on, dedented."""
    lines = doc_lines(name)
    start = next(i for i, line in enumerate(lines) if line.strip() == first)
    fenced = not lines[start].startswith('    ')
    block = []
    for line in lines[start:]:
        if fenced and line.startswith('```') or not fenced and line and not line.startswith('    '):
            break
        block.append(line if fenced else line[4:])
    while block and not block[-1].strip():
        block.pop()
    return block


def steps(lines):
    """[(command, [expected output lines])] from a `>>> ` transcript."""
    out = []
    for line in lines:
        if line.startswith(PROMPT):
            out.append((line[len(PROMPT):], []))
        elif out:
            out[-1][1].append(line)
    return out


def expected_output(command, lines):
    for key, pattern in VARYING_OUTPUT.items():
        if key in command:
            lines = [VARIES if re.fullmatch(pattern, line) else line for line in lines]
    return [mask(line) for line in lines if not OPTIONAL.match(line)]


def replay(guest, lines):
    """Type each command at the friendly REPL; compare what it printed with the doc."""
    for command, expected in steps(lines):
        if command.strip() == 'x86.poweroff()':
            guest.write(command + '\r')
            assert guest.wait(30) == 0
            continue
        guest.write(command + '\r')
        got = guest.read_until(PROMPT.encode(), 60).decode('utf-8', 'replace')
        got = got.replace('\r\n', '\n')[:-len(PROMPT)].split('\n')
        assert got[0] == command            # the REPL's echo
        got = [line for line in got[1:] if line != '' or expected]
        while got and got[-1] == '' and (not expected or expected[-1] != ''):
            got.pop()
        assert expected_output(command, got) == expected_output(command, expected), \
            'after >>> %s' % command


@pytest.fixture
def make_run_guest(image):
    """A guest with `make run`'s devices and disk (its size, formatted FAT as the
    Makefile's disk rule does), at its REPL."""
    with tempfile.TemporaryDirectory(prefix='x86virt-docs-') as d:
        disk = make_disk(d, DISK_SIZE)
        subprocess.run(['mformat', '-i', disk, '-v', 'SCRATCH', '::'], check=True)
        with Guest(devices=default_devices(disk), image=image) as g:
            g.start(wait_banner=False)
            yield g


def make_run_command():
    """The QEMU command line `make run` runs, with the Makefile's defaults."""
    with tempfile.NamedTemporaryFile(prefix='x86virt-cmd-') as f:
        subprocess.run(['make', '-s', '--no-print-directory', 'run-command',
                        'RUN_COMMAND_FILE=' + f.name], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
        return f.read().decode().split('\0')[:-1]


def load_runner():
    import importlib.machinery
    import importlib.util
    loader = importlib.machinery.SourceFileLoader('tools_run', os.path.join(ROOT, 'tools', 'run'))
    spec = importlib.util.spec_from_loader('tools_run', loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_readme_session(make_run_guest):
    lines = transcript('README.md', '$ make run')
    command, hint, banner = lines[1], lines[2], lines[3:]
    args = make_run_command()
    assert command == ' '.join(args)
    assert hint == load_runner().hint(args)
    banner_end = banner.index('Type "help()" for more information.') + 1
    g = make_run_guest
    got = g.read_until(b'Type "help()" for more information.\r\n', 30).decode()
    assert [mask(line) for line in got.replace('\r\n', '\n').splitlines()] == \
        [mask(line) for line in banner[:banner_end]]
    g.read_until(PROMPT.encode())
    session = banner[banner_end:]
    assert session[-1] == '$'
    replay(g, session[:-1])


def test_readme_using_the_devices(make_run_guest):
    make_run_guest.read_until(b'Type "help()" for more information.\r\n' + PROMPT.encode(), 30)
    replay(make_run_guest, transcript('README.md', '>>> import virtio, inet, time'))


def test_blk_md_using_it(make_run_guest):
    make_run_guest.read_until(b'Type "help()" for more information.\r\n' + PROMPT.encode(), 30)
    replay(make_run_guest, transcript('docs/blk.md', '>>> import virtio'))


WALKTHROUGH = 'docs/virtio-walkthrough.md'
TRACE_LINE = re.compile(r'^ {4}(00:02\.0 (?:legacy|modern) .*|00:02\.0 virtio-rng queue .*|  .*)$')


def in_order(wanted, got):
    """The lines of `wanted` that are not, in order, among `got` (masked both)."""
    got = iter([mask(line) for line in got])
    return [line for line in wanted if not any(mask(line) == g for g in got)]


def walkthrough_trace():
    """The walkthrough's trace and dump lines, from its indented blocks."""
    lines, in_block = [], False
    for line in doc_lines(WALKTHROUGH):
        if line.startswith('    00:02.0 legacy') or line.startswith('    00:02.0 modern') \
                or line.startswith('    00:02.0 virtio-rng queue'):
            in_block = True
        elif not line.startswith('    ') or line.strip() == '...':
            in_block = False
            continue
        if in_block:
            lines.append(line[4:])
    return lines


def walkthrough_script():
    lines = doc_lines(WALKTHROUGH)
    start = lines.index('```python') + 1
    return '\n'.join(lines[start:lines.index('```', start)]) + '\n'


def test_walkthrough_trace_is_what_the_image_prints(image):
    trace = walkthrough_trace()
    assert len(trace) > 40
    r = run_script(walkthrough_script(), devices=['-device', 'virtio-rng-pci'], image=image)
    assert r.status == 0, r.output
    assert in_order(trace, r.output.splitlines()) == []


def test_walkthrough_host_snippet_runs_as_documented():
    lines = doc_lines(WALKTHROUGH)
    i = lines.index('# PYTHONPATH=.:drivers .venv/bin/python')
    snippet = '\n'.join(lines[i + 1:lines.index('```', i)]) + '\n'
    env = dict(os.environ, PYTHONPATH='.:drivers')
    p = subprocess.run([os.path.join(ROOT, '.venv', 'bin', 'python'), '-c', snippet], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    # The same lines as the image's legacy bring-up, the model's slot (00:03.0) aside.
    legacy = [line for line in walkthrough_trace() if line.startswith('00:02.0 legacy')]
    got = [line.replace('00:03.0', '00:02.0', 1) for line in p.stdout.splitlines()]
    assert in_order(legacy, got) == []


def test_readme_console_repl_with_socat(boot, sockdir):
    # README: x86.dupterm(virtio.find('console').console()), then on the host
    # `socat - UNIX-CONNECT:build/virtconsole.sock` (set-up installs socat).
    readme = '\n'.join(doc_lines('README.md'))
    assert "`x86.dupterm(virtio.find('console').console())`" in readme
    command = re.search(r'`(socat - UNIX-CONNECT:build/virtconsole\.sock)`', readme).group(1)
    path = os.path.join(sockdir, 'vcon.sock')
    g = boot(devices=['-device', 'virtio-serial-pci',
                      '-chardev', 'socket,id=vcon0,path=%s,server=on,wait=off' % path,
                      '-device', 'virtconsole,chardev=vcon0'])
    argv = command.replace('build/virtconsole.sock', path).split()
    host = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        g.exec("import virtio, x86\nx86.dupterm(virtio.find('console').console())")
        g.exit_raw_repl()
        host.stdin.write(b'print(6 * 7)\r')
        host.stdin.flush()          # socat sends it once connected
        deadline = time.monotonic() + 10
        got = b''
        while b'42\r\n>>> ' not in got:
            assert time.monotonic() < deadline, 'no answer through socat: %r' % got
            ready, _, _ = select.select([host.stdout], [], [], 0.5)
            if ready:
                chunk = os.read(host.stdout.fileno(), 4096)
                assert chunk, 'socat ended: %r' % got
                got += chunk
    finally:
        host.kill()
        host.wait()
