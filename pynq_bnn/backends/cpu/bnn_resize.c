/*
 * pynq-bnn native engine: the exact integer area resize of docs/FORMAT.md section 10, bit-identical
 * to pynq_bnn.host.preprocess.fit_array (the numpy reference, kept as the fallback).
 *
 * bnn_fit_area_u8: the centre square (offsets (H - s) / 2, (W - s) / 2, s = min(H, W)) of an
 * H x W x C uint8 image, area-averaged to n x n x C, rounded half up.  Downscaling only (s > n;
 * s == n is the crop); upscaling (tiny images) stays in numpy.
 *
 * src: row r starts at src + r * stride (bytes, may be negative); a pixel is C contiguous bytes.
 * dst: n * n * C bytes, row-major.  work: scratch of bnn_fit_area_work_bytes(h, w, c, n) bytes
 * (8-byte aligned), or NULL to let the function allocate it.  Returns 0, -1 for bad arguments,
 * -2 when out of memory.
 *
 * Units: on a line of n * s units, source pixel i spans [i*n, (i+1)*n) and output j spans
 * [j*s, (j+1)*s); the weight of i in j is the overlap, an integer in [0, n].  With g the common
 * factor of all weights (n when n divides s, else 1) the weights of one output sum to s / g, and
 * out = floor(sum / d + 1/2) with d = (s/g)^2, i.e. (sum + d/2) / d in integers.
 *
 * Pass 1 (rows): the whole rows of each output row's run are summed in 16 bits (at most 257 rows
 * of 255), 16 columns at a time with NEON widening adds (vaddw.u8) where the CPU has NEON, then
 * weighted into 32-bit row sums; the rows cut by an output edge are added with their fraction.
 * Pass 2 (columns): the same on the row sums, in 32 bits (64 bits when a side passes ~4064),
 * then the rounding division as a multiply by 2^32 / d and a one-step correction (the
 * Cortex-A9 has no divide instruction).
 */
#include <stdlib.h>
#include <string.h>

#include "bnn_cpu.h"

static inline void span(int j, int s, int n, int *r0, int *f0, int *r1, int *f1) {
    const int64_t a = (int64_t)j * s, b = (int64_t)(j + 1) * s;
    *r0 = (int)(a / n);
    *f0 = (int)(a % n);
    *r1 = (int)(b / n);
    *f1 = (int)(b % n);
}

static size_t align8(size_t v) { return (v + 7) & ~(size_t)7; }

BNN_API size_t bnn_fit_area_work_bytes(int h, int w, int c, int n) {
    if (h < 1 || w < 1 || c < 1 || n < 1) return 0;
    const size_t s = (size_t)(h < w ? h : w);
    return align8((size_t)n * s * (size_t)c * sizeof(uint32_t)) /* pass-1 row sums */
           + align8((size_t)n * 4 * sizeof(int))                /* column spans */
           + align8(s * (size_t)c * sizeof(uint16_t));          /* one run, 16 bit */
}

/* out[k] += gw * (sum of rows [0, rows) of p at column k), rows <= 257: the portable path. */
static void run_acc_portable(uint32_t *out, const uint8_t *p, ptrdiff_t stride, int rows, int m,
                             uint32_t gw, uint16_t *run) {
    for (int k = 0; k < m; k++) run[k] = p[k];
    for (int r = 1; r < rows; r++) {
        const uint8_t *q = p + (ptrdiff_t)r * stride;
        for (int k = 0; k < m; k++) run[k] = (uint16_t)(run[k] + q[k]);
    }
    for (int k = 0; k < m; k++) out[k] += (uint32_t)run[k] * gw;
}

#ifdef BNN_NEON
/* The same, 16 columns at a time: the run's rows summed in registers (vaddw.u8, 16 bits), then
   out += gw * sums (vmlal.u16, 32 bits). */
BNN_NEON_FN static void run_acc_neon(uint32_t *out, const uint8_t *p, ptrdiff_t stride, int rows,
                                     int m, uint32_t gw, uint16_t *run) {
    int k = 0;
    const uint16_t g16 = (uint16_t)gw;
    const int small = gw <= 0xFFFF;
    for (; k + 16 <= m; k += 16) {
        uint16x8_t lo = vdupq_n_u16(0), hi = vdupq_n_u16(0);
        const uint8_t *q = p + k;
        for (int r = 0; r < rows; r++, q += stride) {
            const uint8x16_t v = vld1q_u8(q);
            lo = vaddw_u8(lo, vget_low_u8(v));
            hi = vaddw_u8(hi, vget_high_u8(v));
        }
        uint32_t *o = out + k;
        if (small) {
            vst1q_u32(o, vmlal_n_u16(vld1q_u32(o), vget_low_u16(lo), g16));
            vst1q_u32(o + 4, vmlal_n_u16(vld1q_u32(o + 4), vget_high_u16(lo), g16));
            vst1q_u32(o + 8, vmlal_n_u16(vld1q_u32(o + 8), vget_low_u16(hi), g16));
            vst1q_u32(o + 12, vmlal_n_u16(vld1q_u32(o + 12), vget_high_u16(hi), g16));
        } else {
            vst1q_u32(o, vmlaq_n_u32(vld1q_u32(o), vmovl_u16(vget_low_u16(lo)), gw));
            vst1q_u32(o + 4, vmlaq_n_u32(vld1q_u32(o + 4), vmovl_u16(vget_high_u16(lo)), gw));
            vst1q_u32(o + 8, vmlaq_n_u32(vld1q_u32(o + 8), vmovl_u16(vget_low_u16(hi)), gw));
            vst1q_u32(o + 12, vmlaq_n_u32(vld1q_u32(o + 12), vmovl_u16(vget_high_u16(hi)), gw));
        }
    }
    if (k < m) run_acc_portable(out + k, p + k, stride, rows, m - k, gw, run);
}
#endif

/* out[k] += f * row[k] (sign > 0) or out[k] -= f * row[k]: a row cut by an output edge. */
static void cut_row(uint32_t *out, const uint8_t *row, int m, uint32_t f, int sign) {
    if (sign > 0)
        for (int k = 0; k < m; k++) out[k] += (uint32_t)row[k] * f;
    else
        for (int k = 0; k < m; k++) out[k] -= (uint32_t)row[k] * f;
}

static inline uint8_t round_div32(uint32_t num, uint32_t d, uint32_t inv) {
    uint32_t q = (uint32_t)(((uint64_t)num * inv) >> 32); /* q or q + 1 */
    if ((uint64_t)q * d > num) q--; /* (64-bit: 256 d may pass 2^32 near s = 4100) */
    return (uint8_t)q;
}

static int fit_area(const uint8_t *src, int h, int w, int c, ptrdiff_t stride, int n,
                    uint8_t *dst, void *work, int use_neon) {
    if (!src || !dst || h < 1 || w < 1 || c < 1 || n < 1) return -1;
    const int s = h < w ? h : w;
    if (s < n || (int64_t)s * c > INT32_MAX / 2 || (int64_t)n * s > INT32_MAX) return -1;
    const uint8_t *q = src + (ptrdiff_t)((h - s) / 2) * stride + (ptrdiff_t)((w - s) / 2) * c;
    const int m = s * c;
    if (s == n) { /* the crop is the output */
        for (int r = 0; r < n; r++) memcpy(dst + (size_t)r * m, q + (ptrdiff_t)r * stride, m);
        return 0;
    }
#ifndef BNN_NEON
    (void)use_neon;
#endif
    void *owned = NULL;
    if (!work) {
        owned = work = malloc(bnn_fit_area_work_bytes(h, w, c, n));
        if (!owned) return -2;
    }
    const int g = (s % n == 0) ? n : 1;     /* weights in units of g */
    const uint32_t gw = (uint32_t)(n / g);  /* weight of a whole pixel, in those units */
    uint32_t *t1 = (uint32_t *)work;        /* [n][m] pass-1 sums */
    int *xs = (int *)((char *)work + align8((size_t)n * m * sizeof(uint32_t)));
    uint16_t *run = (uint16_t *)((char *)xs + align8((size_t)n * 4 * sizeof(int)));

    /* pass 1: rows */
    for (int j = 0; j < n; j++) {
        int r0, f0, r1, f1;
        span(j, s, n, &r0, &f0, &r1, &f1);
        uint32_t *out = t1 + (size_t)j * m;
        memset(out, 0, (size_t)m * sizeof *out);
        for (int r = r0; r < r1;) {
            const int rows = r1 - r > 257 ? 257 : r1 - r; /* 257 * 255 fits 16 bits */
            const uint8_t *p = q + (ptrdiff_t)r * stride;
#ifdef BNN_NEON
            if (use_neon)
                run_acc_neon(out, p, stride, rows, m, gw, run);
            else
#endif
                run_acc_portable(out, p, stride, rows, m, gw, run);
            r += rows;
        }
        /* pixel r0 belongs only n - f0 to j (counted n above); pixel r1 gives f1 to j */
        if (f0) cut_row(out, q + (ptrdiff_t)r0 * stride, m, (uint32_t)f0, -1);
        if (f1) cut_row(out, q + (ptrdiff_t)r1 * stride, m, (uint32_t)f1, +1);
    }

    /* pass 2: columns, on n x s x c sums, then round half up.  32-bit sums up to s = 4064
       ((s + 2n) * 255 * s < 2^32), 64-bit above. */
    for (int kx = 0; kx < n; kx++)
        span(kx, s, n, &xs[4 * kx], &xs[4 * kx + 1], &xs[4 * kx + 2], &xs[4 * kx + 3]);
    const uint64_t d = (uint64_t)(s / g) * (uint64_t)(s / g);
    const int wide = (uint64_t)(s + 2 * n) * 255u * (uint64_t)s >= (1ull << 32);
    if (!wide) {
        const uint32_t d32 = (uint32_t)d, half = d32 / 2;
        const uint32_t inv32 = (uint32_t)((1ull << 32) / d32) + 1u; /* d32 >= 4 here */
        for (int j = 0; j < n; j++) {
            const uint32_t *row = t1 + (size_t)j * m;
            uint8_t *o = dst + (size_t)j * n * c;
            for (int kx = 0; kx < n; kx++, o += c) {
                const int x0 = xs[4 * kx], f0 = xs[4 * kx + 1], x1 = xs[4 * kx + 2];
                const int f1 = xs[4 * kx + 3];
                if (c == 3) { /* RGB: three channels per step */
                    const uint32_t *pp = row + 3 * x0;
                    uint32_t a0 = 0, a1 = 0, a2 = 0;
                    for (int x = x0; x < x1; x++, pp += 3) {
                        a0 += pp[0];
                        a1 += pp[1];
                        a2 += pp[2];
                    }
                    uint32_t a[3] = {a0 * gw, a1 * gw, a2 * gw};
                    for (int ch = 0; ch < 3; ch++) {
                        if (f0) a[ch] -= row[3 * x0 + ch] * (uint32_t)f0;
                        if (f1) a[ch] += row[3 * x1 + ch] * (uint32_t)f1;
                        o[ch] = round_div32(a[ch] + half, d32, inv32);
                    }
                } else {
                    for (int ch = 0; ch < c; ch++) {
                        const uint32_t *pp = row + (size_t)x0 * c + ch;
                        uint32_t a = 0;
                        for (int x = x0; x < x1; x++, pp += c) a += *pp;
                        a *= gw;
                        if (f0) a -= row[(size_t)x0 * c + ch] * (uint32_t)f0;
                        if (f1) a += row[(size_t)x1 * c + ch] * (uint32_t)f1;
                        o[ch] = round_div32(a + half, d32, inv32);
                    }
                }
            }
        }
    } else {
        /* num <= 255.5 d and inv = 2^40 / d + 1, so num * inv < 2^49: no overflow; the
           estimate is off by at most one, corrected below */
        const uint64_t inv = ((1ull << 40) / d) + 1;
        for (int j = 0; j < n; j++) {
            const uint32_t *row = t1 + (size_t)j * m;
            uint8_t *o = dst + (size_t)j * n * c;
            for (int kx = 0; kx < n; kx++, o += c) {
                const int x0 = xs[4 * kx], f0 = xs[4 * kx + 1], x1 = xs[4 * kx + 2];
                const int f1 = xs[4 * kx + 3];
                for (int ch = 0; ch < c; ch++) {
                    const uint32_t *pp = row + (size_t)x0 * c + ch;
                    uint64_t acc = 0;
                    for (int x = x0; x < x1; x++, pp += c) acc += *pp;
                    acc *= gw;
                    if (f0) acc -= (uint64_t)row[(size_t)x0 * c + ch] * (uint64_t)f0;
                    if (f1) acc += (uint64_t)row[(size_t)x1 * c + ch] * (uint64_t)f1;
                    const uint64_t num = acc + d / 2;
                    uint64_t qv = (num * inv) >> 40;
                    while (qv * d > num) qv--;
                    while ((qv + 1) * d <= num) qv++;
                    o[ch] = (uint8_t)qv;
                }
            }
        }
    }
    free(owned);
    return 0;
}

/* isa: -1 auto (NEON where the CPU has it), ISA_PORTABLE, or ISA_NEON (-3 if unsupported). */
BNN_API int bnn_fit_area_u8_isa(const uint8_t *src, int h, int w, int c, ptrdiff_t stride, int n,
                                uint8_t *dst, void *work, int isa) {
    int neon = 0;
    if (isa == ISA_NEON) {
        if (!bnn_cpu_has_neon()) return -3;
        neon = 1;
    } else if (isa < 0) {
        neon = bnn_cpu_has_neon();
    } else if (isa != ISA_PORTABLE) {
        return -3;
    }
    return fit_area(src, h, w, c, stride, n, dst, work, neon);
}

BNN_API int bnn_fit_area_u8(const uint8_t *src, int h, int w, int c, ptrdiff_t stride, int n,
                            uint8_t *dst, void *work) {
    return bnn_fit_area_u8_isa(src, h, w, c, stride, n, dst, work, -1);
}
