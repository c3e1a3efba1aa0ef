"""Floats and the math module, computed by our x87 libm, against the host's CPython."""
import math
import struct

import pytest

from tests.qemu.harness import GuestError

pytestmark = pytest.mark.qemu


@pytest.fixture(scope='module')
def g(guest):
    guest.exec('import math, struct')
    return guest


def bits(g, expr):
    """The exact IEEE double the guest computes for expr (MicroPython's repr
    shows 16 digits, so compare bits, not text)."""
    raw = g.eval('struct.pack("<d", %s)' % expr)
    return struct.unpack('<d', raw)[0]


def test_what_people_type_first(g):
    assert g.exec('print(1/3)') == '0.3333333333333333\n'
    assert g.eval('int(2.5)') == 2
    assert g.eval('"%.2f" % 3.14159') == '3.14'
    assert g.eval('"%.3e" % 12345.678') == '1.235e+04'
    assert g.eval('round(2.5), round(3.5), round(-2.5)') == (2, 4, -2)
    assert g.eval('7 // 2.0, 7 % 2.5, -7 % 2.5') == (3.0, 2.0, 0.5)
    assert g.eval('divmod(-7.5, 2), 1e300 // 1.0') == ((-4.0, 0.5), 1e300)
    assert g.eval('float("1e-5") == 10 ** -5') is True
    assert g.eval('f"{2/3:.4f}"') == '0.6667'


def test_arithmetic_rounds_like_an_ieee_double_machine(g):
    # Double (53-bit) precision control: no extended-precision surprises.
    assert bits(g, '0.1 + 0.2') == 0.1 + 0.2
    assert bits(g, '1e16 + 1.0') == 1e16 + 1.0
    assert bits(g, '1 / 3 * 3') == 1 / 3 * 3
    assert bits(g, '2.0 ** 0.5') == 2.0 ** 0.5


@pytest.mark.parametrize('n', [-22, -10, -5, -1, 0, 1, 5, 10, 15, 22])
def test_powers_of_ten_are_exact(g, n):
    # The float formatter depends on pow(10, n) being exact.
    assert bits(g, '10.0 ** %d' % n) == 10.0 ** n


CASES = [
    ('sqrt', (2.0,)), ('sqrt', (1e-300,)), ('exp', (1.0,)), ('exp', (-20.5,)), ('exp', (700.0,)),
    ('expm1', (1e-10,)), ('expm1', (3.0,)), ('log', (10.0,)), ('log', (1e-300,)),
    ('log2', (1024.0,)), ('log2', (3.0,)), ('log10', (1e-7,)), ('log10', (2.0,)),
    ('pow', (2.0, 0.5)), ('pow', (1.0001, 10000.0)), ('pow', (-2.0, 3.0)), ('pow', (7.5, -3.25)),
    ('sin', (1.0,)), ('sin', (-0.5,)), ('sin', (100.0,)), ('cos', (1.0,)), ('cos', (3.0,)),
    ('tan', (0.7,)), ('asin', (0.3,)), ('acos', (-0.7,)), ('atan', (5.0,)),
    ('atan2', (1.0, -1.0)), ('atan2', (-0.0, -1.0)), ('sinh', (0.5,)), ('sinh', (-30.0,)),
    ('cosh', (2.0,)), ('tanh', (0.3,)), ('tanh', (-40.0,)), ('asinh', (2.0,)),
    ('acosh', (3.0,)), ('atanh', (0.5,)), ('fmod', (10.5, 3.0)), ('fmod', (-10.5, 3.0)),
    ('floor', (-2.5,)), ('ceil', (-2.5,)), ('trunc', (-2.7,)), ('fabs', (-3.0,)),
    ('copysign', (3.0, -0.0)), ('ldexp', (0.75, 10)),
    ('degrees', (math.pi,)), ('radians', (180.0,)),
    ('erf', (0.5,)), ('erf', (-2.0,)), ('erf', (3.5,)), ('erfc', (0.3,)), ('erfc', (4.0,)),
    ('erfc', (-1.0,)), ('gamma', (5.0,)), ('gamma', (0.5,)), ('gamma', (-1.5,)),
    ('gamma', (170.5,)), ('lgamma', (10.5,)), ('lgamma', (-2.5,)), ('lgamma', (0.1,)),
]


@pytest.mark.parametrize('name, args', CASES, ids=['%s%r' % c for c in CASES])
def test_math_functions_match_cpython(g, name, args):
    expected = getattr(math, name)(*args)
    if name in ('erfc', 'gamma', 'lgamma'):
        rel = 1e-12      # computed in steps (continued fraction, Lanczos)
    else:
        rel = 1e-13
    got = bits(g, 'math.%s(%s)' % (name, ', '.join(repr(a) for a in args)))
    assert got == pytest.approx(expected, rel=rel, abs=1e-300)


def test_frexp_modf_isnan_isinf(g):
    assert g.eval('math.frexp(48.0)') == (0.75, 6)
    assert g.eval('math.frexp(5e-324)') == math.frexp(5e-324)
    assert g.eval('math.modf(-3.25)') == (-0.25, -3.0)
    assert g.eval('math.isnan(float("nan")), math.isinf(-math.inf), math.isfinite(1.0)') == \
        (True, True, True)
    assert g.eval('math.floor(2.5), math.ceil(2.1)') == (2, 3)


@pytest.mark.parametrize('expr, error', [
    ('math.sqrt(-1)', 'ValueError'), ('math.log(0)', 'ValueError'),
    ('math.log(-1)', 'ValueError'), ('math.acos(2)', 'ValueError'),
    ('math.exp(1000)', 'ValueError'),       # MicroPython: ValueError where CPython overflows
    ('1 / 0.0', 'ZeroDivisionError'),
    ('math.pow(-8, 1/3)', 'ValueError'),
])
def test_domain_and_range_errors(g, expr, error):
    with pytest.raises(GuestError) as e:
        g.exec(expr)
    assert e.value.exc_type == error


def test_inf_and_nan_print(g):
    assert g.eval('str(1e308 * 10), str(-1e308 * 10), str(float("nan"))') == ('inf', '-inf', 'nan')
