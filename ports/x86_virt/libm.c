// A small libm for MicroPython's floats and `math` module, built on the x87
// FPU's own instructions (fsqrt, fsin/fcos/fptan/fpatan, fyl2x/fyl2xp1,
// f2xm1/fscale, fprem, frndint). Neither glibc's libm nor any other comes
// with a freestanding build, and the x87 already does the hard part.
//
// The FPU normally runs with double (53-bit) precision control, so that
// Python's float arithmetic rounds like any IEEE double machine (see
// fpu_init() in main.c). The functions here switch to 64-bit extended
// precision for their intermediate steps and round once on return.
#include <math.h>
#include <stdint.h>

typedef long double ld;

#define CW_PRECISION_MASK   0x0300
#define CW_PRECISION_64     0x0300
#define CW_ROUND_MASK       0x0c00
#define CW_ROUND_NEAREST    0x0000
#define CW_ROUND_DOWN       0x0400
#define CW_ROUND_UP         0x0800
#define CW_ROUND_ZERO       0x0c00
#define SW_C2               0x0400  // fprem/fsin: "incomplete" flag

static inline uint16_t fpu_get_cw(void) {
    uint16_t cw;
    __asm__ volatile ("fnstcw %0" : "=m" (cw));
    return cw;
}

static inline void fpu_set_cw(uint16_t cw) {
    __asm__ volatile ("fldcw %0" : : "m" (cw));
}

// Run a block in extended precision, restoring the caller's control word.
// All x87 asm here is volatile, so it stays in order between the two control
// word changes; EXTENDED_END(r) also makes r be computed before the restore.
#define EXTENDED_BEGIN uint16_t saved_cw_ = fpu_get_cw(); fpu_set_cw(saved_cw_ | CW_PRECISION_64)
#define EXTENDED_END(r) __asm__ volatile ("fldcw %1" : "+t" (r) : "m" (saved_cw_))

static inline int is_nan(ld x) {
    return x != x;
}

static inline ld ld_abs(ld x) {
    __asm__ volatile ("fabs" : "+t" (x));
    return x;
}

// ---- Bits of a double -----------------------------------------------------

typedef union {
    double d;
    uint64_t u;
} double_bits_t;

double copysign(double x, double y) {
    double_bits_t a = { x }, b = { y };
    a.u = (a.u & ~(1ULL << 63)) | (b.u & (1ULL << 63));
    return a.d;
}

double fabs(double x) {
    __asm__ volatile ("fabs" : "+t" (x));
    return x;
}

double nan(const char *tag) {
    (void)tag;
    return __builtin_nan("");
}

// ---- Rounding to an integer -----------------------------------------------

static ld round_with(ld x, uint16_t mode) {
    uint16_t cw = fpu_get_cw();
    fpu_set_cw((cw & ~CW_ROUND_MASK) | mode | CW_PRECISION_64);
    __asm__ volatile ("frndint" : "+t" (x));
    fpu_set_cw(cw);
    return x;
}

double floor(double x) {
    return round_with(x, CW_ROUND_DOWN);
}

double ceil(double x) {
    return round_with(x, CW_ROUND_UP);
}

double trunc(double x) {
    return round_with(x, CW_ROUND_ZERO);
}

double nearbyint(double x) {
    return round_with(x, CW_ROUND_NEAREST);     // ties to even, as Python's round()
}

double rint(double x) {
    return nearbyint(x);
}

double modf(double x, double *int_part) {
    double i = trunc(x);
    *int_part = i;
    if (isinf(x)) {
        return copysign(0.0, x);
    }
    return copysign(x - i, x);
}

// ---- Remainder, scaling, decomposition ------------------------------------

double fmod(double x, double y) {
    // fprem computes a partial remainder with the sign of x (C's fmod);
    // C2 set means "not done yet, run again".
    ld r;
    __asm__ volatile (
        "1: fprem\n\t"
        "fnstsw %%ax\n\t"
        "testw $0x400, %%ax\n\t"
        "jnz 1b\n\t"
        "fstp %%st(1)"
        : "=t" (r) : "0" ((ld)x), "u" ((ld)y) : "ax", "cc", "st(1)");    // y is popped
    return r;
}

double ldexp(double x, int n) {
    ld r;
    ld scale = n;
    __asm__ volatile ("fscale" : "=t" (r) : "0" ((ld)x), "u" (scale));
    return r;
}

double scalbn(double x, int n) {
    return ldexp(x, n);
}

double frexp(double x, int *exp) {
    double_bits_t b = { x };
    int e = (b.u >> 52) & 0x7ff;
    if (x == 0.0 || e == 0x7ff) {      // zero, inf, nan
        *exp = 0;
        return x;
    }
    int bias = 0;
    if (e == 0) {                       // subnormal: normalise first
        b.d = x * 0x1p54;
        e = (b.u >> 52) & 0x7ff;
        bias = 54;
    }
    *exp = e - 1022 - bias;
    b.u = (b.u & ~(0x7ffULL << 52)) | (1022ULL << 52);  // mantissa in [0.5, 1)
    return b.d;
}

// ---- Square root ----------------------------------------------------------

double sqrt(double x) {
    double r;
    __asm__ volatile ("fsqrt" : "=t" (r) : "0" (x));
    return r;
}

// ---- Exponentials and logarithms ------------------------------------------

static ld log2_e(void) {
    ld r;
    __asm__ volatile ("fldl2e" : "=t" (r));
    return r;
}

static ld ln_2(void) {
    ld r;
    __asm__ volatile ("fldln2" : "=t" (r));
    return r;
}

// 2**t in extended precision: 2**frac(t) by f2xm1 (valid for |f| <= 1),
// then scaled by 2**int(t) with fscale.
static ld exp2_ext(ld t) {
    if (is_nan(t)) {
        return t;
    }
    if (t > 20000) {
        return __builtin_infl();
    }
    if (t < -20000) {
        return 0;
    }
    ld n = round_with(t, CW_ROUND_NEAREST);
    ld f = t - n;
    ld r;
    __asm__ volatile ("f2xm1" : "=t" (r) : "0" (f));
    r += 1;
    __asm__ volatile ("fscale" : "=t" (r) : "0" (r), "u" (n));
    return r;
}

// y * log2(x) in one instruction; x < 0 gives nan, x == 0 gives -inf * sign(y).
static ld y_log2_x(ld y, ld x) {
    ld r;
    __asm__ volatile ("fyl2x" : "=t" (r) : "0" (x), "u" (y) : "st(1)");
    return r;
}

double exp(double x) {
    EXTENDED_BEGIN;
    ld r = exp2_ext((ld)x * log2_e());
    EXTENDED_END(r);
    return r;
}

double exp2(double x) {
    EXTENDED_BEGIN;
    ld r = exp2_ext(x);
    EXTENDED_END(r);
    return r;
}

double expm1(double x) {
    EXTENDED_BEGIN;
    ld t = (ld)x * log2_e();
    ld r;
    if (ld_abs(t) < 1) {
        // f2xm1 keeps full precision for small arguments: no cancellation.
        __asm__ volatile ("f2xm1" : "=t" (r) : "0" (t));
    } else {
        r = exp2_ext(t) - 1;
    }
    EXTENDED_END(r);
    return r;
}

double log(double x) {
    EXTENDED_BEGIN;
    ld r = y_log2_x(ln_2(), x);
    EXTENDED_END(r);
    return r;
}

double log2(double x) {
    EXTENDED_BEGIN;
    ld r = y_log2_x(1, x);
    EXTENDED_END(r);
    return r;
}

double log10(double x) {
    ld lg2;
    __asm__ volatile ("fldlg2" : "=t" (lg2));
    EXTENDED_BEGIN;
    ld r = y_log2_x(lg2, x);
    EXTENDED_END(r);
    return r;
}

double log1p(double x) {
    EXTENDED_BEGIN;
    ld r;
    if (ld_abs(x) < 0.29) {
        // fyl2xp1: y * log2(x + 1) without forming 1 + x (|x| < 1 - sqrt(2)/2).
        __asm__ volatile ("fyl2xp1" : "=t" (r) : "0" ((ld)x), "u" (ln_2()) : "st(1)");
    } else {
        r = y_log2_x(ln_2(), 1 + (ld)x);
    }
    EXTENDED_END(r);
    return r;
}

static int is_integer(double y) {
    return trunc(y) == y;
}

static int is_odd_integer(double y) {
    return is_integer(y) && fmod(y, 2.0) != 0;
}

double pow(double x, double y) {
    if (y == 0 || x == 1) {
        return 1;
    }
    if (isnan(x) || isnan(y)) {
        return x + y;
    }
    if (isinf(y)) {
        double ax = fabs(x);
        if (ax == 1) {
            return 1;
        }
        return (ax < 1) == (y < 0) ? y * y : 0;     // +inf or 0
    }
    EXTENDED_BEGIN;
    ld r;
    if (is_integer(y) && fabs(y) < 2147483648.0) {
        // Exact where the result fits: 10**n for the float formatter must be.
        int32_t n = (int32_t)y;
        uint32_t k = n < 0 ? -(uint32_t)n : (uint32_t)n;
        ld base = x;
        r = 1;
        while (k) {
            if (k & 1) {
                r *= base;
            }
            base *= base;
            k >>= 1;
        }
        if (n < 0) {
            r = 1 / r;
        }
    } else if (x == 0) {
        r = y > 0 ? 0.0 : __builtin_infl();
    } else if (isinf(x)) {
        r = y > 0 ? __builtin_infl() : 0.0;     // y is not an integer here
    } else if (x < 0) {
        if (is_integer(y)) {
            // |y| >= 2**31: x**y = +-|x|**y, negative for odd y.
            r = exp2_ext(y_log2_x(y, -(ld)x));
            r = is_odd_integer(y) ? -r : r;
        } else {
            r = __builtin_nanl("");     // a negative number to a fractional power
        }
    } else {
        r = exp2_ext(y_log2_x(y, x));
    }
    EXTENDED_END(r);
    return r;
}

// ---- Trigonometry ---------------------------------------------------------

// fsin/fcos/fptan take |x| < 2**63; reduce larger arguments modulo 2*pi.
static ld reduce_2pi(ld x) {
    if (ld_abs(x) < 0x1p62L) {
        return x;
    }
    ld two_pi;
    __asm__ volatile ("fldpi\n\tfadd %%st(0), %%st(0)" : "=t" (two_pi));
    __asm__ volatile (
        "1: fprem1\n\t"
        "fnstsw %%ax\n\t"
        "testw $0x400, %%ax\n\t"
        "jnz 1b"
        : "+t" (x) : "u" (two_pi) : "ax", "cc");
    return x;
}

double sin(double x) {
    if (isinf(x)) {
        return __builtin_nan("");
    }
    EXTENDED_BEGIN;
    ld r = reduce_2pi(x);
    __asm__ volatile ("fsin" : "+t" (r));
    EXTENDED_END(r);
    return r;
}

double cos(double x) {
    if (isinf(x)) {
        return __builtin_nan("");
    }
    EXTENDED_BEGIN;
    ld r = reduce_2pi(x);
    __asm__ volatile ("fcos" : "+t" (r));
    EXTENDED_END(r);
    return r;
}

double tan(double x) {
    if (isinf(x)) {
        return __builtin_nan("");
    }
    EXTENDED_BEGIN;
    ld r = reduce_2pi(x);
    ld one;
    // fptan pushes 1.0 above the result (for old cot code); drop it.
    __asm__ volatile ("fptan" : "=t" (one), "=u" (r) : "0" (r));
    EXTENDED_END(r);
    (void)one;
    return r;
}

static ld sqrt_ext(ld x) {
    __asm__ volatile ("fsqrt" : "+t" (x));
    return x;
}

static ld atan2_ext(ld y, ld x) {
    ld r;
    // fpatan: atan(st(1) / st(0)) in the right quadrant, then pops.
    __asm__ volatile ("fpatan" : "=t" (r) : "0" (x), "u" (y) : "st(1)");
    return r;
}

double atan2(double y, double x) {
    EXTENDED_BEGIN;
    ld r = atan2_ext(y, x);
    EXTENDED_END(r);
    return r;
}

double atan(double x) {
    EXTENDED_BEGIN;
    ld r = atan2_ext(x, 1);
    EXTENDED_END(r);
    return r;
}

double asin(double x) {
    if (fabs(x) > 1) {
        return __builtin_nan("");
    }
    EXTENDED_BEGIN;
    ld lx = x;
    ld r = atan2_ext(lx, sqrt_ext((1 - lx) * (1 + lx)));
    EXTENDED_END(r);
    return r;
}

double acos(double x) {
    if (fabs(x) > 1) {
        return __builtin_nan("");
    }
    EXTENDED_BEGIN;
    ld lx = x;
    ld r = atan2_ext(sqrt_ext((1 - lx) * (1 + lx)), lx);
    EXTENDED_END(r);
    return r;
}

// ---- Hyperbolic functions -------------------------------------------------

double sinh(double x) {
    double ax = fabs(x);
    double r;
    if (ax < 22) {
        double em1 = expm1(ax);
        r = 0.5 * (em1 + em1 / (em1 + 1));
    } else {
        r = 0.5 * exp(ax - 0.5) * 1.6487212707001282;   // e**0.5: no early overflow
        r = ax > 710.5 ? __builtin_inf() : r;
    }
    return copysign(r, x);
}

double cosh(double x) {
    double ax = fabs(x);
    if (ax < 22) {
        double e = exp(ax);
        return 0.5 * (e + 1 / e);
    }
    if (ax > 710.5) {
        return __builtin_inf();
    }
    return 0.5 * exp(ax - 0.5) * 1.6487212707001282;
}

double tanh(double x) {
    double ax = fabs(x);
    double r;
    if (isnan(x)) {
        return x;
    }
    if (ax > 22) {
        r = 1;
    } else {
        double em1 = expm1(2 * ax);
        r = em1 / (em1 + 2);
    }
    return copysign(r, x);
}

double asinh(double x) {
    double ax = fabs(x);
    double r;
    if (isnan(x) || isinf(x)) {
        return x;
    }
    if (ax > 0x1p28) {
        r = log(ax) + 0.6931471805599453;
    } else {
        r = log1p(ax + ax * ax / (1 + sqrt(1 + ax * ax)));
    }
    return copysign(r, x);
}

double acosh(double x) {
    if (x < 1) {
        return __builtin_nan("");
    }
    if (x > 0x1p28) {
        return log(x) + 0.6931471805599453;
    }
    return log(x + sqrt((x - 1) * (x + 1)));
}

double atanh(double x) {
    double ax = fabs(x);
    if (ax > 1) {
        return __builtin_nan("");
    }
    if (ax == 1) {
        return copysign(__builtin_inf(), x);
    }
    return copysign(0.5 * log1p(2 * ax / (1 - ax)), x);
}

// ---- Error and gamma functions (the math module's "special functions") ----

#define SQRT_PI_INV 0.56418958354775628694807945156077259L     // 1 / sqrt(pi)
#define LN_SQRT_2PI 0.91893853320467274178032973640561764L     // log(sqrt(2 pi))
#define PI_L        3.14159265358979323846264338327950288L

// erf(x) = 2/sqrt(pi) exp(-x^2) sum_n (2x^2)^n x / (1*3*...*(2n+1)): all terms
// positive, so no cancellation; good while exp(-x^2) does not vanish.
static ld erf_series(ld x) {
    ld x2 = 2 * x * x, term = x, sum = x;
    for (int n = 1; n < 200 && term > sum * 1e-21L; n++) {
        term *= x2 / (2 * n + 1);
        sum += term;
    }
    return 2 * SQRT_PI_INV * sum * exp2_ext(-x * x * log2_e());
}

// erfc(x), x > 0 large: exp(-x^2)/sqrt(pi) / (x + (1/2)/(x + 1/(x + (3/2)/(x + ...)))),
// the continued fraction evaluated from its tail.
static ld erfc_fraction(ld x) {
    ld f = x;
    for (int k = 120; k >= 1; k--) {
        f = x + (k * 0.5L) / f;
    }
    return SQRT_PI_INV * exp2_ext(-x * x * log2_e()) / f;
}

double erf(double x) {
    if (isnan(x)) {
        return x;
    }
    double ax = fabs(x);
    if (ax >= 6) {
        return copysign(1.0, x);
    }
    EXTENDED_BEGIN;
    ld r = ax < 2.5 ? erf_series(ax) : 1 - erfc_fraction(ax);
    EXTENDED_END(r);
    return copysign(r, x);
}

double erfc(double x) {
    if (isnan(x)) {
        return x;
    }
    EXTENDED_BEGIN;
    ld ax = fabs(x);
    ld r = ax < 2.5 ? 1 - erf_series(ax) : (ax > 27 ? 0 : erfc_fraction(ax));
    if (x < 0) {
        r = 2 - r;
    }
    EXTENDED_END(r);
    return r;
}

// Lanczos' approximation, g = 7, 9 terms (about 15 significant digits):
// gamma(z + 1) = sqrt(2 pi) t^(z + 1/2) e^-t A(z), t = z + g + 1/2.
static const double lanczos_p[9] = {
    0.99999999999980993, 676.5203681218851, -1259.1392167224028,
    771.32342877765313, -176.61502916214059, 12.507343278686905,
    -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
};
#define LANCZOS_G 7

// log(gamma(x)) for x >= 0.5, in extended precision.
static ld lgamma_lanczos(ld x) {
    ld z = x - 1;
    ld a = lanczos_p[0];
    for (int i = 1; i < 9; i++) {
        a += lanczos_p[i] / (z + i);
    }
    ld t = z + LANCZOS_G + 0.5L;
    return LN_SQRT_2PI + (z + 0.5L) * y_log2_x(1, t) / log2_e() - t + y_log2_x(1, a) / log2_e();
}

double tgamma(double x) {
    if (isnan(x) || x == __builtin_inf()) {
        return x;
    }
    if (x <= 0 && is_integer(x)) {
        return __builtin_nan("");      // poles (and -inf)
    }
    if (x > 171.7) {
        return __builtin_inf();
    }
    EXTENDED_BEGIN;
    ld r;
    if (is_integer(x) && x <= 30) {
        r = 1;                          // (x - 1)!, exact as far as a double goes
        for (int i = 2; i < (int)x; i++) {
            r *= i;
        }
    } else if (x < 0.5) {
        // Reflection: gamma(x) gamma(1 - x) = pi / sin(pi x).
        ld s = sin(PI_L * x);
        r = PI_L / (s * exp2_ext(lgamma_lanczos(1 - (ld)x) * log2_e()));
    } else {
        r = exp2_ext(lgamma_lanczos(x) * log2_e());
    }
    EXTENDED_END(r);
    return r;
}

double lgamma(double x) {
    if (isnan(x) || isinf(x)) {
        return fabs(x);
    }
    if (x <= 0 && is_integer(x)) {
        return __builtin_inf();         // poles
    }
    if (x == 1 || x == 2) {
        return 0;
    }
    EXTENDED_BEGIN;
    ld r;
    if (x < 0.5) {
        ld s = ld_abs(sin(PI_L * x));
        r = y_log2_x(1, PI_L / s) / log2_e() - lgamma_lanczos(1 - (ld)x);
    } else {
        r = lgamma_lanczos(x);
    }
    EXTENDED_END(r);
    return r;
}
