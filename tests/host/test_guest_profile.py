"""tools/guest-profile.py's arithmetic on a made-up image and log: blocks counted up to
their first jump, given to the function they lie in, native code apart, callers found by
the block before an entry."""
import importlib.util
import os

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location(
    'guest_profile', os.path.join(HERE, '..', '..', 'tools', 'guest-profile.py'))
gp = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gp)

NM = '''00100000 T lookup
00100010 t interp
00100030 T alloc
00102000 D data
'''
OBJDUMP = '''
00100000 <lookup>:
  100000:	mov    %eax,%ebx
  100002:	cmp    %ecx,%ebx
  100004:	jne    100000 <lookup>
  100006:	ret
00100010 <interp>:
  100010:	add    $0x1,%eax
  100013:	call   100000 <lookup>
  100018:	mov    %eax,%edx
  10001a:	call   100030 <alloc>
  10001f:	jmp    100010 <interp>
00100030 <alloc>:
  100030:	rep movsl %ds:(%esi),%es:(%edi)
  100032:	ret
'''


def trace(pcs):
    return ['Trace 0: 0x7f0000 [00000000/%08x/00000000/ff000000] \n' % pc for pc in pcs]


@pytest.fixture
def image():
    return gp.Image(NM, OBJDUMP)


def test_a_block_runs_to_its_first_jump_call_or_return(image):
    assert image.block_size(0x100000) == 3          # mov, cmp, jne
    assert image.block_size(0x100006) == 1          # ret
    assert image.block_size(0x100010) == 2          # add, call
    assert image.block_size(0x100030) == 1          # rep ends a block too
    assert image.block_size(0x100001) is None       # not an instruction boundary
    assert image.block_size(0x500000) is None       # outside the image


def test_the_log_is_read_for_block_addresses_only():
    lines = trace([0x100010, 0x100000]) + ['IN: something else\n', 'Trace bogus\n']
    assert gp.block_pcs(lines) == [0x100010, 0x100000]


def test_flat_profile_per_run_with_native_code_apart(image):
    # two runs of: interp, lookup (looping once more), back in interp, alloc, native code
    one = [0x100010, 0x100000, 0x100000, 0x100006, 0x100018, 0x100030, 0x100032,
           0x9000000]
    rows = dict((f, n) for n, f in gp.flat(image, gp.block_pcs(trace(one * 2)), 2))
    assert rows == {'interp': 2 + 2, 'lookup': 3 + 3 + 1, 'alloc': 1 + 1,
                    gp.NATIVE: 6}


def test_callers_are_the_functions_of_the_blocks_before_an_entry(image):
    pcs = [0x100010, 0x100000, 0x100006, 0x100018, 0x100030, 0x100032, 0x9000000,
           0x100000, 0x100006]
    assert gp.callers(image, pcs, 'lookup', 1) == [(1.0, gp.NATIVE), (1.0, 'interp')]
    assert gp.callers(image, pcs, 'alloc', 1) == [(1.0, 'interp')]
