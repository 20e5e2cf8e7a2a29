/*
 * Ed25519 verification (RFC 8032) with the verdicts of Go's crypto/ed25519:
 *   - S must be below L;
 *   - A is decoded as filippo.io/edwards25519's Point.SetBytes does: y is
 *     taken mod p (y >= p is accepted), x = 0 with the sign bit set is
 *     accepted, a y with no x on the curve is refused;
 *   - R is not decoded: R' = [S]B - [k]A with k = h mod L is encoded and
 *     compared with the signature's R bytes (cofactorless).
 *
 * Verification only, so variable time. Field elements are ten signed limbs
 * of 26 and 25 bits (radix 2^25.5, as ref10), with the ref10 point formulas
 * whose limb bounds are known to hold. No heap, no mutable globals.
 */
#include <string.h>

#include "ota_crypto.h"

/* The carries shift signed values right: they must be arithmetic. */
typedef char ota_ed25519_asr_check[((-1) >> 1) == -1 ? 1 : -1];

/* Kept out of line so that their locals do not add up in one frame. */
#if defined(__GNUC__)
#define OTA_NOINLINE __attribute__((noinline))
#else
#define OTA_NOINLINE
#endif

typedef int32_t fe[10];

/* x = X/Z, y = Y/Z, xy = T/Z. The doubling reads X, Y, Z only, so a
 * point that is only doubled next skips computing T (ref10's ge_p2). */
typedef struct {
	fe X, Y, Z, T;
} ge_p3;

typedef struct {
	fe X, Y, Z, T; /* x = X/Z, y = Y/T */
} ge_p1p1;

typedef struct {
	fe YplusX, YminusX, Z, T2d;
} ge_cached;

typedef struct {
	fe yplusx, yminusx, xy2d; /* affine, for the base point table */
} ge_precomp;

/* Generated: d, 2d, sqrt(-1) and the odd multiples of B. */
#include "ed25519_tables.h"

/* ---- Field arithmetic mod p = 2^255 - 19 ---- */

/* Limb i starts at bit ceil(25.5 i): 26 bits for even i, 25 for odd. */
#define LIMB_BITS(i) (26 - ((i) & 1))

static void fe_copy(fe h, const fe f)
{
	memcpy(h, f, sizeof(fe));
}

static void fe_0(fe h)
{
	memset(h, 0, sizeof(fe));
}

static void fe_1(fe h)
{
	fe_0(h);
	h[0] = 1;
}

static void fe_add(fe h, const fe f, const fe g)
{
	int i;
	for (i = 0; i < 10; i++)
		h[i] = f[i] + g[i];
}

static void fe_sub(fe h, const fe f, const fe g)
{
	int i;
	for (i = 0; i < 10; i++)
		h[i] = f[i] - g[i];
}

static void fe_neg(fe h, const fe f)
{
	int i;
	for (i = 0; i < 10; i++)
		h[i] = -f[i];
}

/* ref10's carry of 64-bit column sums, rounding to signed limbs:
 * |h| ends up below 1.01*2^25, 1.01*2^24, ... */
#define CARRY(i, w)                                              \
	do {                                                     \
		c = (h[i] + ((int64_t)1 << ((w) - 1))) >> (w);   \
		h[i] -= c * ((int64_t)1 << (w));                 \
		h[(i) + 1] += c;                                 \
	} while (0)

static void fe_carry(fe out, int64_t h[10])
{
	int64_t c;
	int i;
	CARRY(0, 26);
	CARRY(4, 26);
	CARRY(1, 25);
	CARRY(5, 25);
	CARRY(2, 26);
	CARRY(6, 26);
	CARRY(3, 25);
	CARRY(7, 25);
	CARRY(4, 26);
	CARRY(8, 26);
	c = (h[9] + ((int64_t)1 << 24)) >> 25;
	h[9] -= c * ((int64_t)1 << 25);
	h[0] += 19 * c;
	CARRY(0, 26);
	for (i = 0; i < 10; i++)
		out[i] = (int32_t)h[i];
}

/* Bytes to limbs; bit 255 is ignored and the value is not reduced (y >= p
 * is accepted, as Go's field.Element.SetBytes does). */
static void fe_frombytes(fe h, const uint8_t s[32])
{
	uint64_t acc = 0;
	int bits = 0, j = 0, i;
	for (i = 0; i < 10; i++) {
		int w = LIMB_BITS(i);
		while (bits < w) {
			acc |= (uint64_t)s[j++] << bits;
			bits += 8;
		}
		h[i] = (int32_t)(acc & ((1u << w) - 1));
		acc >>= w;
		bits -= w;
	}
}

/* Canonical encoding (the value reduced mod p). ref10's method: q is 1 when
 * the value is at least p, then h + 19q, carried, drops 2^255. */
static void fe_tobytes(uint8_t s[32], const fe f)
{
	int64_t wide[10];
	int32_t h[10];
	int32_t q, carry;
	uint64_t acc = 0;
	int bits = 0, j = 0, i;

	/* Bring sums and differences within the bounds q needs. */
	for (i = 0; i < 10; i++)
		wide[i] = f[i];
	fe_carry(h, wide);
	q = (19 * h[9] + ((int32_t)1 << 24)) >> 25;
	for (i = 0; i < 10; i++)
		q = (h[i] + q) >> LIMB_BITS(i);
	h[0] += 19 * q;
	for (i = 0; i < 10; i++) {
		carry = h[i] >> LIMB_BITS(i);
		if (i < 9)
			h[i + 1] += carry; /* the carry out of limb 9 is q 2^255 */
		h[i] -= carry * ((int32_t)1 << LIMB_BITS(i));
	}

	for (i = 0; i < 10; i++) {
		acc |= (uint64_t)(uint32_t)h[i] << bits;
		bits += LIMB_BITS(i);
		while (bits >= 8) {
			s[j++] = (uint8_t)acc;
			acc >>= 8;
			bits -= 8;
		}
	}
	s[31] = (uint8_t)acc;
}

static int fe_isnegative(const fe f)
{
	uint8_t s[32];
	fe_tobytes(s, f);
	return s[0] & 1;
}

static int fe_iszero(const fe f)
{
	static const uint8_t zero[32];
	uint8_t s[32];
	fe_tobytes(s, f);
	return memcmp(s, zero, 32) == 0;
}

/* h = f * g. Inputs bounded by 1.65*2^26, 1.65*2^25, ... (a carried value
 * or a sum or difference of two or three), so 19 * g and 2 * f fit in 32
 * bits and the column sums in 64. */
static void fe_mul(fe out, const fe f, const fe g)
{
	int32_t f0 = f[0], f1 = f[1], f2 = f[2], f3 = f[3], f4 = f[4];
	int32_t f5 = f[5], f6 = f[6], f7 = f[7], f8 = f[8], f9 = f[9];
	int32_t g0 = g[0], g1 = g[1], g2 = g[2], g3 = g[3], g4 = g[4];
	int32_t g5 = g[5], g6 = g[6], g7 = g[7], g8 = g[8], g9 = g[9];
	int32_t g1_19 = 19 * g1, g2_19 = 19 * g2, g3_19 = 19 * g3, g4_19 = 19 * g4, g5_19 = 19 * g5;
	int32_t g6_19 = 19 * g6, g7_19 = 19 * g7, g8_19 = 19 * g8, g9_19 = 19 * g9;
	int32_t f1_2 = 2 * f1, f3_2 = 2 * f3, f5_2 = 2 * f5, f7_2 = 2 * f7, f9_2 = 2 * f9;
	int64_t h[10];

	h[0] = (int64_t)f0 * g0 + (int64_t)f1_2 * g9_19 + (int64_t)f2 * g8_19 + (int64_t)f3_2 * g7_19 + (int64_t)f4 * g6_19 + (int64_t)f5_2 * g5_19 + (int64_t)f6 * g4_19 + (int64_t)f7_2 * g3_19 + (int64_t)f8 * g2_19 + (int64_t)f9_2 * g1_19;
	h[1] = (int64_t)f0 * g1 + (int64_t)f1 * g0 + (int64_t)f2 * g9_19 + (int64_t)f3 * g8_19 + (int64_t)f4 * g7_19 + (int64_t)f5 * g6_19 + (int64_t)f6 * g5_19 + (int64_t)f7 * g4_19 + (int64_t)f8 * g3_19 + (int64_t)f9 * g2_19;
	h[2] = (int64_t)f0 * g2 + (int64_t)f1_2 * g1 + (int64_t)f2 * g0 + (int64_t)f3_2 * g9_19 + (int64_t)f4 * g8_19 + (int64_t)f5_2 * g7_19 + (int64_t)f6 * g6_19 + (int64_t)f7_2 * g5_19 + (int64_t)f8 * g4_19 + (int64_t)f9_2 * g3_19;
	h[3] = (int64_t)f0 * g3 + (int64_t)f1 * g2 + (int64_t)f2 * g1 + (int64_t)f3 * g0 + (int64_t)f4 * g9_19 + (int64_t)f5 * g8_19 + (int64_t)f6 * g7_19 + (int64_t)f7 * g6_19 + (int64_t)f8 * g5_19 + (int64_t)f9 * g4_19;
	h[4] = (int64_t)f0 * g4 + (int64_t)f1_2 * g3 + (int64_t)f2 * g2 + (int64_t)f3_2 * g1 + (int64_t)f4 * g0 + (int64_t)f5_2 * g9_19 + (int64_t)f6 * g8_19 + (int64_t)f7_2 * g7_19 + (int64_t)f8 * g6_19 + (int64_t)f9_2 * g5_19;
	h[5] = (int64_t)f0 * g5 + (int64_t)f1 * g4 + (int64_t)f2 * g3 + (int64_t)f3 * g2 + (int64_t)f4 * g1 + (int64_t)f5 * g0 + (int64_t)f6 * g9_19 + (int64_t)f7 * g8_19 + (int64_t)f8 * g7_19 + (int64_t)f9 * g6_19;
	h[6] = (int64_t)f0 * g6 + (int64_t)f1_2 * g5 + (int64_t)f2 * g4 + (int64_t)f3_2 * g3 + (int64_t)f4 * g2 + (int64_t)f5_2 * g1 + (int64_t)f6 * g0 + (int64_t)f7_2 * g9_19 + (int64_t)f8 * g8_19 + (int64_t)f9_2 * g7_19;
	h[7] = (int64_t)f0 * g7 + (int64_t)f1 * g6 + (int64_t)f2 * g5 + (int64_t)f3 * g4 + (int64_t)f4 * g3 + (int64_t)f5 * g2 + (int64_t)f6 * g1 + (int64_t)f7 * g0 + (int64_t)f8 * g9_19 + (int64_t)f9 * g8_19;
	h[8] = (int64_t)f0 * g8 + (int64_t)f1_2 * g7 + (int64_t)f2 * g6 + (int64_t)f3_2 * g5 + (int64_t)f4 * g4 + (int64_t)f5_2 * g3 + (int64_t)f6 * g2 + (int64_t)f7_2 * g1 + (int64_t)f8 * g0 + (int64_t)f9_2 * g9_19;
	h[9] = (int64_t)f0 * g9 + (int64_t)f1 * g8 + (int64_t)f2 * g7 + (int64_t)f3 * g6 + (int64_t)f4 * g5 + (int64_t)f5 * g4 + (int64_t)f6 * g3 + (int64_t)f7 * g2 + (int64_t)f8 * g1 + (int64_t)f9 * g0;
	fe_carry(out, h);
}

/* h = f^2, times 2 when dbl (the doubling formula needs 2*Z^2). */
static void fe_sq_x(fe out, const fe f, int dbl)
{
	int32_t f0 = f[0], f1 = f[1], f2 = f[2], f3 = f[3], f4 = f[4];
	int32_t f5 = f[5], f6 = f[6], f7 = f[7], f8 = f[8], f9 = f[9];
	int32_t f1_2 = 2 * f1;
	int32_t f2_2 = 2 * f2;
	int32_t f3_2 = 2 * f3;
	int32_t f3_4 = 4 * f3;
	int32_t f4_2 = 2 * f4;
	int32_t f5_2 = 2 * f5;
	int32_t f5_4 = 4 * f5;
	int32_t f5_38 = 38 * f5;
	int32_t f6_2 = 2 * f6;
	int32_t f6_19 = 19 * f6;
	int32_t f7_2 = 2 * f7;
	int32_t f7_4 = 4 * f7;
	int32_t f7_38 = 38 * f7;
	int32_t f8_2 = 2 * f8;
	int32_t f8_19 = 19 * f8;
	int32_t f9_2 = 2 * f9;
	int32_t f9_38 = 38 * f9;
	int64_t h[10];

	h[0] = (int64_t)f0 * f0 + (int64_t)f1_2 * f9_38 + (int64_t)f2_2 * f8_19 + (int64_t)f3_2 * f7_38 + (int64_t)f4_2 * f6_19 + (int64_t)f5 * f5_38;
	h[1] = (int64_t)f0 * f1_2 + (int64_t)f2 * f9_38 + (int64_t)f3_2 * f8_19 + (int64_t)f4 * f7_38 + (int64_t)f5_2 * f6_19;
	h[2] = (int64_t)f0 * f2_2 + (int64_t)f1 * f1_2 + (int64_t)f3_2 * f9_38 + (int64_t)f4_2 * f8_19 + (int64_t)f5_2 * f7_38 + (int64_t)f6 * f6_19;
	h[3] = (int64_t)f0 * f3_2 + (int64_t)f1 * f2_2 + (int64_t)f4 * f9_38 + (int64_t)f5_2 * f8_19 + (int64_t)f6 * f7_38;
	h[4] = (int64_t)f0 * f4_2 + (int64_t)f1 * f3_4 + (int64_t)f2 * f2 + (int64_t)f5_2 * f9_38 + (int64_t)f6_2 * f8_19 + (int64_t)f7 * f7_38;
	h[5] = (int64_t)f0 * f5_2 + (int64_t)f1 * f4_2 + (int64_t)f2 * f3_2 + (int64_t)f6 * f9_38 + (int64_t)f7_2 * f8_19;
	h[6] = (int64_t)f0 * f6_2 + (int64_t)f1 * f5_4 + (int64_t)f2 * f4_2 + (int64_t)f3 * f3_2 + (int64_t)f7_2 * f9_38 + (int64_t)f8 * f8_19;
	h[7] = (int64_t)f0 * f7_2 + (int64_t)f1 * f6_2 + (int64_t)f2 * f5_2 + (int64_t)f3 * f4_2 + (int64_t)f8 * f9_38;
	h[8] = (int64_t)f0 * f8_2 + (int64_t)f1 * f7_4 + (int64_t)f2 * f6_2 + (int64_t)f3 * f5_4 + (int64_t)f4 * f4 + (int64_t)f9 * f9_38;
	h[9] = (int64_t)f0 * f9_2 + (int64_t)f1 * f8_2 + (int64_t)f2 * f7_2 + (int64_t)f3 * f6_2 + (int64_t)f4 * f5_2;
	if (dbl) {
		int i;
		for (i = 0; i < 10; i++)
			h[i] *= 2;
	}
	fe_carry(out, h);
}

static void fe_sq(fe out, const fe f)
{
	fe_sq_x(out, f, 0);
}

/* h = f^(2^n), n >= 1. */
static void fe_sqn(fe out, const fe f, int n)
{
	fe_sq(out, f);
	while (--n > 0)
		fe_sq(out, out);
}

/* The common part of inversion and square root: z^(2^250 - 1) and z^11. */
static void fe_pow250(fe t250, fe z11, const fe z)
{
	fe t0, t1, t2;

	fe_sq(t0, z);            /* 2 */
	fe_sqn(t1, t0, 2);       /* 8 */
	fe_mul(t1, z, t1);       /* 9 */
	fe_mul(z11, t0, t1);     /* 11 */
	fe_sq(t0, z11);          /* 22 */
	fe_mul(t0, t1, t0);      /* 2^5 - 1 */
	fe_sqn(t1, t0, 5);       /* 2^10 - 2^5 */
	fe_mul(t0, t1, t0);      /* 2^10 - 1 */
	fe_sqn(t1, t0, 10);      /* 2^20 - 2^10 */
	fe_mul(t1, t1, t0);      /* 2^20 - 1 */
	fe_sqn(t2, t1, 20);      /* 2^40 - 2^20 */
	fe_mul(t1, t2, t1);      /* 2^40 - 1 */
	fe_sqn(t1, t1, 10);      /* 2^50 - 2^10 */
	fe_mul(t0, t1, t0);      /* 2^50 - 1 */
	fe_sqn(t1, t0, 50);      /* 2^100 - 2^50 */
	fe_mul(t1, t1, t0);      /* 2^100 - 1 */
	fe_sqn(t2, t1, 100);     /* 2^200 - 2^100 */
	fe_mul(t1, t2, t1);      /* 2^200 - 1 */
	fe_sqn(t1, t1, 50);      /* 2^250 - 2^50 */
	fe_mul(t250, t1, t0);    /* 2^250 - 1 */
}

/* out = z^(p - 2) = 1/z. */
static void fe_invert(fe out, const fe z)
{
	fe t, z11;
	fe_pow250(t, z11, z);
	fe_sqn(t, t, 5);         /* 2^255 - 2^5 */
	fe_mul(out, t, z11);     /* 2^255 - 21 */
}

/* out = z^((p - 5) / 8) = z^(2^252 - 3). */
static void fe_pow22523(fe out, const fe z)
{
	fe t, z11;
	fe_pow250(t, z11, z);
	fe_sqn(t, t, 2);         /* 2^252 - 4 */
	fe_mul(out, t, z);       /* 2^252 - 3 */
}

/* ---- Points on -x^2 + y^2 = 1 + d x^2 y^2 (ref10 formulas) ---- */

/* X, Y, Z only: enough for ge_dbl. */
static void ge_p1p1_to_p2(ge_p3 *r, const ge_p1p1 *p)
{
	fe_mul(r->X, p->X, p->T);
	fe_mul(r->Y, p->Y, p->Z);
	fe_mul(r->Z, p->Z, p->T);
}

static void ge_p1p1_to_p3(ge_p3 *r, const ge_p1p1 *p)
{
	fe_mul(r->X, p->X, p->T);
	fe_mul(r->Y, p->Y, p->Z);
	fe_mul(r->Z, p->Z, p->T);
	fe_mul(r->T, p->X, p->Y);
}

static void ge_p3_to_cached(ge_cached *r, const ge_p3 *p)
{
	fe_add(r->YplusX, p->Y, p->X);
	fe_sub(r->YminusX, p->Y, p->X);
	fe_copy(r->Z, p->Z);
	fe_mul(r->T2d, p->T, ota_ed25519_d2);
}

/* r = 2p (dbl-2008-hwcd), without p's T. */
static void ge_dbl(ge_p1p1 *r, const ge_p3 *p)
{
	fe t0;
	fe_sq(r->X, p->X);
	fe_sq(r->Z, p->Y);
	fe_sq_x(r->T, p->Z, 1);
	fe_add(r->Y, p->X, p->Y);
	fe_sq(t0, r->Y);
	fe_add(r->Y, r->Z, r->X);
	fe_sub(r->Z, r->Z, r->X);
	fe_sub(r->X, t0, r->Y);
	fe_sub(r->T, r->T, r->Z);
}

/* The common end of ge_add and ge_madd, given t0 = 2·Z1·Z2 and the
 * products of (Y+X), (Y-X) and T in r. */
static void ge_add_end(ge_p1p1 *r, const fe t0, int neg)
{
	fe_sub(r->X, r->Z, r->Y);
	fe_add(r->Y, r->Z, r->Y);
	if (neg) {
		fe_sub(r->Z, t0, r->T);
		fe_add(r->T, t0, r->T);
	} else {
		fe_add(r->Z, t0, r->T);
		fe_sub(r->T, t0, r->T);
	}
}

/* r = p + q, or p - q when neg (add-2008-hwcd-3; -q swaps Y+X and Y-X and
 * negates T2d). */
static void ge_add(ge_p1p1 *r, const ge_p3 *p, const ge_cached *q, int neg)
{
	fe t0;
	fe_add(r->X, p->Y, p->X);
	fe_sub(r->Y, p->Y, p->X);
	fe_mul(r->Z, r->X, neg ? q->YminusX : q->YplusX);
	fe_mul(r->Y, r->Y, neg ? q->YplusX : q->YminusX);
	fe_mul(r->T, q->T2d, p->T);
	fe_mul(r->X, p->Z, q->Z);
	fe_add(t0, r->X, r->X);
	ge_add_end(r, t0, neg);
}

/* r = p + q or p - q for an affine q of the base point table. */
static void ge_madd(ge_p1p1 *r, const ge_p3 *p, const ge_precomp *q, int neg)
{
	fe t0;
	fe_add(r->X, p->Y, p->X);
	fe_sub(r->Y, p->Y, p->X);
	fe_mul(r->Z, r->X, neg ? q->yminusx : q->yplusx);
	fe_mul(r->Y, r->Y, neg ? q->yplusx : q->yminusx);
	fe_mul(r->T, q->xy2d, p->T);
	fe_add(t0, p->Z, p->Z);
	ge_add_end(r, t0, neg);
}

/* Decodes -A with the semantics of Go's Point.SetBytes: y is read mod p
 * with bit 255 as the sign of x, and x = 0 with the sign bit set is
 * accepted. Returns 0 when no x satisfies the curve equation. */
OTA_NOINLINE static int ge_frombytes_negate(ge_p3 *h, const uint8_t s[32])
{
	fe u, v, v3, vxx, t;

	fe_frombytes(h->Y, s);
	fe_1(h->Z);
	fe_sq(u, h->Y);
	fe_mul(v, u, ota_ed25519_d);
	fe_sub(u, u, h->Z); /* u = y^2 - 1 */
	fe_add(v, v, h->Z); /* v = d y^2 + 1, never 0: d is not a square */

	fe_sq(v3, v);
	fe_mul(v3, v3, v);  /* v^3 */
	fe_sq(h->X, v3);
	fe_mul(h->X, h->X, v);
	fe_mul(h->X, h->X, u); /* u v^7 */
	fe_pow22523(h->X, h->X);
	fe_mul(h->X, h->X, v3);
	fe_mul(h->X, h->X, u); /* x = u v^3 (u v^7)^((p-5)/8) */

	fe_sq(vxx, h->X);
	fe_mul(vxx, vxx, v);
	fe_sub(t, vxx, u); /* v x^2 - u */
	if (!fe_iszero(t)) {
		fe_add(t, vxx, u); /* v x^2 + u */
		if (!fe_iszero(t))
			return 0;
		fe_mul(h->X, h->X, ota_ed25519_sqrtm1);
	}
	/* x has the sign bit's sign, and -A has the other one. */
	if (fe_isnegative(h->X) == (s[31] >> 7))
		fe_neg(h->X, h->X);
	fe_mul(h->T, h->X, h->Y);
	return 1;
}

OTA_NOINLINE static void ge_tobytes(uint8_t s[32], const ge_p3 *h)
{
	fe recip, x, y;
	fe_invert(recip, h->Z);
	fe_mul(x, h->X, recip);
	fe_mul(y, h->Y, recip);
	fe_tobytes(s, y);
	s[31] ^= (uint8_t)(fe_isnegative(x) << 7);
}

/* ---- Scalars mod L = 2^252 + 27742317777372353535851937790883648493 ---- */

static const uint32_t sc_L[8] = {0x5cf5d3ed, 0x5812631a, 0xa2f79cd6, 0x14def9de, 0, 0, 0, 0x10000000};

/* r -= L when r >= L; returns whether it did. */
static int sc_sub_L(uint32_t r[8])
{
	uint32_t d[8];
	uint64_t borrow = 0;
	int i;
	for (i = 0; i < 8; i++) {
		uint64_t t = (uint64_t)r[i] - sc_L[i] - borrow;
		d[i] = (uint32_t)t;
		borrow = (t >> 32) & 1;
	}
	if (borrow)
		return 0;
	memcpy(r, d, sizeof d);
	return 1;
}

static void sc_load(uint32_t r[8], const uint8_t s[32])
{
	int i;
	for (i = 0; i < 8; i++)
		r[i] = (uint32_t)s[4 * i] | (uint32_t)s[4 * i + 1] << 8 | (uint32_t)s[4 * i + 2] << 16 |
		       (uint32_t)s[4 * i + 3] << 24;
}

/* out = h mod L for a 512-bit h, bit by bit from the top: r < L < 2^253
 * throughout, so 2r + 1 fits in 256 bits. Slow but far from the cost of
 * the point arithmetic, and obviously right. */
static void sc_reduce(uint8_t out[32], const uint8_t h[64])
{
	uint32_t r[8] = {0};
	int i, w;
	for (i = 511; i >= 0; i--) {
		uint32_t carry = (h[i >> 3] >> (i & 7)) & 1;
		for (w = 0; w < 8; w++) {
			uint32_t top = r[w] >> 31;
			r[w] = r[w] << 1 | carry;
			carry = top;
		}
		sc_sub_L(r);
	}
	for (i = 0; i < 32; i++)
		out[i] = (uint8_t)(r[i >> 2] >> (8 * (i & 3)));
}

/* Signed odd digits (ref10's slide): a = sum r[i] 2^i with |r[i]| <= max,
 * for a < 2^255. */
static void sc_slide(int8_t r[256], const uint8_t a[32], int max)
{
	int i, b, k;
	for (i = 0; i < 256; i++)
		r[i] = (int8_t)((a[i >> 3] >> (i & 7)) & 1);
	for (i = 0; i < 256; i++) {
		if (!r[i])
			continue;
		for (b = 1; b <= 7 && i + b < 256; b++) {
			if (!r[i + b])
				continue;
			if (r[i] + (r[i + b] << b) <= max) {
				r[i] = (int8_t)(r[i] + (r[i + b] << b));
				r[i + b] = 0;
			} else if (r[i] - (r[i + b] << b) >= -max) {
				r[i] = (int8_t)(r[i] - (r[i + b] << b));
				for (k = i + b; k < 256; k++) {
					if (!r[k]) {
						r[k] = 1;
						break;
					}
					r[k] = 0;
				}
			} else {
				break;
			}
		}
	}
}

/* Digits of k for -A (table of 1, 3, 5, 7 times -A) and of S for B (the
 * generated table of 1, 3, ..., 31 times B). */
#define A_DIGIT_MAX 7
#define A_TABLE ((A_DIGIT_MAX + 1) / 2)
#define B_DIGIT_MAX 31

/* r = [k](-A) + [S]B (Straus), for r = -A on entry; r's T is not set on
 * return. The table of odd multiples of -A is on the stack. */
OTA_NOINLINE static void ge_double_scalarmult(ge_p3 *r, const int8_t kd[256], const int8_t sd[256])
{
	ge_cached ai[A_TABLE];
	ge_p1p1 t;
	unsigned i;
	int n;

	/* ai[i] = (2i + 1)(-A). The last slot holds 2(-A) until the last
	 * sum, which reads it, replaces it. */
	ge_p3_to_cached(&ai[0], r);
	ge_dbl(&t, r);
	ge_p1p1_to_p3(r, &t);
	ge_p3_to_cached(&ai[A_TABLE - 1], r);
	ge_add(&t, r, &ai[0], 0);
	ge_p1p1_to_p3(r, &t);
	ge_p3_to_cached(&ai[1], r);
	for (i = 2; i < A_TABLE; i++) {
		ge_add(&t, r, &ai[A_TABLE - 1], 0);
		ge_p1p1_to_p3(r, &t);
		ge_p3_to_cached(&ai[i], r);
	}

	fe_0(r->X);
	fe_1(r->Y);
	fe_1(r->Z);
	for (n = 255; n >= 0 && !kd[n] && !sd[n]; n--)
		;
	for (; n >= 0; n--) {
		ge_dbl(&t, r);
		if (kd[n]) {
			ge_p1p1_to_p3(r, &t);
			ge_add(&t, r, &ai[(kd[n] < 0 ? -kd[n] : kd[n]) / 2], kd[n] < 0);
		}
		if (sd[n]) {
			ge_p1p1_to_p3(r, &t);
			ge_madd(&t, r, &ota_ed25519_base[(sd[n] < 0 ? -sd[n] : sd[n]) / 2], sd[n] < 0);
		}
		ge_p1p1_to_p2(r, &t);
	}
}

/* Whether S < L, the check Go's Scalar.SetCanonicalBytes makes. */
static int sc_is_canonical(const uint8_t s[32])
{
	uint32_t w[8];
	sc_load(w, s);
	return !sc_sub_L(w);
}

int ota_ed25519_check(const uint8_t pub[32], const uint8_t sig[64], const uint8_t h[64])
{
	int8_t kd[256], sd[256];
	uint8_t k[32], rb[32];
	ge_p3 r;

	if (pub == NULL || sig == NULL || h == NULL)
		return OTA_ERR_BAD_SIGNATURE;
	if (!sc_is_canonical(sig + 32))
		return OTA_ERR_BAD_SIGNATURE;
	if (!ge_frombytes_negate(&r, pub))
		return OTA_ERR_BAD_SIGNATURE;
	sc_reduce(k, h);
	sc_slide(kd, k, A_DIGIT_MAX);
	sc_slide(sd, sig + 32, B_DIGIT_MAX);
	ge_double_scalarmult(&r, kd, sd);
	ge_tobytes(rb, &r);
	return memcmp(rb, sig, 32) == 0 ? OTA_OK : OTA_ERR_BAD_SIGNATURE;
}
