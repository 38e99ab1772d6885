/*
 * pynq-bnn layer 1 (int8 3x3 conv of the 9-bit inputs, threshold, bit packing), native.
 *
 * Bit-exact with pynq_bnn/spec/first_layer.py (docs/FORMAT.md sections 2, 4 and 6):
 *   s[c] = sum over in-bounds taps and rgb of w[c][ky][kx][rgb] * (2p - 255)   (padding: 0)
 *   bit  = d > 0 ? s >= T : s <= T,  channel c -> bit c % 64 of word c / 64 (little-endian).
 *
 * Exact integer arithmetic on an encoding e of the pixel that is 0 in the padding:
 *   q = p - 128 (int8, NEON):   x = 2q + 1, so s = 2*sum_all(w q) + B    (alpha 2, beta 1)
 *   p       (uint8, AVX-512):   s = 2*sum_all(w p) - 255*B               (alpha 2, beta -255)
 *   x = 2p - 255 (int16, AVX2, portable): s = sum_all(w x)               (alpha 1, beta 0)
 * where B[type][c] = sum of w over the in-bounds taps of the pixel's border type (the border
 * correction: the padding is x = 0, which no q or p value encodes).  With A = sum_all(w e)
 * and the direction folded into the weights (A' = d*A):
 *   bit = A' >= T'[type][c],  T' = ceil(d * (T - beta*B) / alpha)
 * (d = +1: alpha*A + beta*B >= T;  d = -1: <= T becomes -A >= -floor(.) = ceil(-.)).
 * Every kernel accumulates acc = (T' - 1) + sum(-d*w * e) = T' - 1 - A' and the bit is the
 * sign of acc (acc < 0), so the threshold costs nothing and the packing reads sign bits.
 * Magnitudes: |A'| <= 27*127*255 < 2^20, |T'| is clamped to 2^30: int32 never overflows.
 *
 * Data flow per thread: rows of the batch (image, y) are split across threads (so batch 1
 * uses every thread too); a chunk of up to L1_ROWS rows of one image is staged once, padded
 * and encoded (3 KB for a 32x32 image); for each output row the 3x3x3 windows are copied into
 * 28-element patches (27 taps + 1 slot with weight 0, so pairs and quads need no tail), and
 * the kernel writes each pixel's packed words straight into the caller's uint64 array.
 *
 * Kernels (instruction counts per pixel and 64 channels, inner loop only):
 *   NEON (ARMv7 / AArch64): 2 pixels x 16 channels per block; per 4 taps: vmull.s8 +
 *     vmlal.s8 (int8 x int8 -> int16: two products per lane, |.| <= 2*128*127 < 2^15) then
 *     vpadal.s16 into int32x4; 7 steps of 4 taps.  Per block and step: 1 vld4.16 to all lanes
 *     (the 4 input pairs), 2 vld4.8 (weights), 16 long multiplies, 8 vpadal: 27 + 4 loop.
 *     Cortex-A9 (64-bit NEON datapath): vmull/vmlal .8 Q<-DxD issue in 1 cycle each, vpadal
 *     on a Q register in 2, so 32 cycles of arithmetic per 2 px x 16 ch x 4 taps.
 *     Epilogue: vshrn (32->16->8 keeps the sign), vshr #7 + vand with bit weights, 3 vpadd,
 *     one 16-bit store per pixel and block.
 *   AVX-512 VNNI: 4 pixels x 64 channels; vpbroadcastd of 4 input bytes, vpdpbusd
 *     (u8 p x s8 w, 4 products per int32 lane, no saturation); 7 quads.  Bits: vpcmpd -> k.
 *   AVX2: 1 pixel x 64 channels; vpbroadcastd of an int16 pair, vpmaddwd + vpaddd; 14 pairs;
 *     bits: vmovmskps (the sign bits).
 *   portable: int32 multiply-add over 27 taps, channels innermost.
 */
#include "bnn_cpu.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define L1_TYPES 16   /* border types ty*4 + tx (bnn_border_type) */
#define L1_ROWS 16    /* rows of one image staged per chunk */
#define L1_K 27
#define L1_KP 28      /* taps in a patch: 27 + one slot whose weight is 0 */
#define L1_PATCH 32   /* patch stride in elements */
#define L1_CLAMP ((int64_t)1 << 30)

typedef struct {
    int c1, size, c1w;
    int32_t *init_q;   /* [16][c1] T' - 1 for e = q (NEON; 4x4-transposed per 16 channels) */
    int32_t *init_p;   /* [16][c1] for e = p (AVX-512 VNNI) */
    int32_t *init_x;   /* [16][c1] for e = x (AVX2, portable) */
    int8_t *w_neon;    /* [c1/16][7 steps][2 pairs][8 bytes][4 groups]: vld4.8 de-interleaves
                          the groups; byte b = 2 * channel-in-group + tap-in-pair */
    int8_t *w_vnni;    /* [c1/64][7 quads][64 channels][4 taps] */
    int16_t *w_avx2;   /* [c1/64][14 pairs][64 channels][2 taps] */
    int16_t *w_port;   /* [c1][32]: taps 27..31 zero (a dot product GCC vectorises) */
} l1_t;

static void *l1_alloc(size_t bytes) {
    void *p = NULL;
    bytes = (bytes + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, bytes ? bytes : 64)) return NULL;
    memset(p, 0, bytes ? bytes : 64);
    return p;
}

static int64_t ceil_div(int64_t a, int64_t b) { /* b > 0 */
    return a >= 0 ? (a + b - 1) / b : -((-a) / b);
}

static int32_t clamp30(int64_t v) {
    return (int32_t)(v > L1_CLAMP ? L1_CLAMP : v < -L1_CLAMP ? -L1_CLAMP : v);
}

BNN_API void bnn_l1_destroy(void *handle) {
    l1_t *L = (l1_t *)handle;
    if (!L) return;
    free(L->init_q);
    free(L->init_p);
    free(L->init_x);
    free(L->w_neon);
    free(L->w_vnni);
    free(L->w_avx2);
    free(L->w_port);
    free(L);
}

/*
 * weights int8 [c1][3][3][3] in [-127, 127] ([out][ky][kx][rgb]), thresholds int32 [c1],
 * directions int8 [c1] (+1 / -1).  NULL on a bad description or out of memory.
 */
BNN_API void *bnn_l1_create(int c1, int size, const int8_t *weights, const int32_t *thresholds,
                            const int8_t *directions) {
    if (c1 <= 0 || c1 % 64 || size <= 0 || size > 65536 || !weights || !thresholds || !directions)
        return NULL;
    for (int c = 0; c < c1; c++) {
        if (directions[c] != 1 && directions[c] != -1) return NULL;
        for (int k = 0; k < L1_K; k++)
            if (weights[c * L1_K + k] < -127) return NULL; /* -(-128) does not fit int8 */
    }
    l1_t *L = (l1_t *)calloc(1, sizeof *L);
    if (!L) return NULL;
    L->c1 = c1;
    L->size = size;
    L->c1w = c1 / 64;
    const size_t tab = (size_t)L1_TYPES * c1 * sizeof(int32_t);
    L->init_q = (int32_t *)l1_alloc(tab);
    L->init_p = (int32_t *)l1_alloc(tab);
    L->init_x = (int32_t *)l1_alloc(tab);
    L->w_neon = (int8_t *)l1_alloc((size_t)c1 * L1_KP);
    L->w_vnni = (int8_t *)l1_alloc((size_t)c1 * L1_KP);
    L->w_avx2 = (int16_t *)l1_alloc((size_t)c1 * L1_KP * sizeof(int16_t));
    L->w_port = (int16_t *)l1_alloc((size_t)c1 * L1_PATCH * sizeof(int16_t));
    if (!L->init_q || !L->init_p || !L->init_x || !L->w_neon || !L->w_vnni || !L->w_avx2 ||
        !L->w_port) {
        bnn_l1_destroy(L);
        return NULL;
    }
    for (int c = 0; c < c1; c++) {
        const int d = directions[c];
        const int8_t *w = weights + (size_t)c * L1_K;
        for (int k = 0; k < L1_KP; k++) {
            const int nw = k < L1_K ? -d * w[k] : 0; /* negated, direction folded in */
            /* NEON: channel c = cb*16 + g*4 + i, tap k = 4s + 2a + t */
            const int cb = c / 16, g = (c % 16) / 4, i = c % 4, s = k / 4, a = (k % 4) / 2,
                      t = k % 2;
            L->w_neon[(((size_t)cb * 7 + s) * 2 + a) * 32 + (i * 2 + t) * 4 + g] = (int8_t)nw;
            /* AVX-512: [c/64][k/4][c%64][k%4];  AVX2: [c/64][k/2][c%64][k%2] */
            L->w_vnni[(((size_t)(c / 64) * 7 + k / 4) * 64 + c % 64) * 4 + k % 4] = (int8_t)nw;
            L->w_avx2[(((size_t)(c / 64) * 14 + k / 2) * 64 + c % 64) * 2 + k % 2] = (int16_t)nw;
            L->w_port[(size_t)c * L1_PATCH + k] = (int16_t)nw;
        }
        for (int ty = 0; ty < 4; ty++)
            for (int tx = 0; tx < 4; tx++) {
                int64_t bsum = 0; /* B: sum of w over the in-bounds taps */
                for (int ky = 0; ky < 3; ky++)
                    for (int kx = 0; kx < 3; kx++) {
                        const int bad = (ky == 0 && (ty & 1)) || (ky == 2 && (ty & 2)) ||
                                        (kx == 0 && (tx & 1)) || (kx == 2 && (tx & 2));
                        if (!bad)
                            for (int r = 0; r < 3; r++) bsum += w[ky * 9 + kx * 3 + r];
                    }
                const size_t at = (size_t)(ty * 4 + tx) * c1 + c;
                const int64_t T = thresholds[c];
                /* NEON reads 16 channels with vld4q_s32: element 4i + j holds channel 4j + i */
                const size_t atq = (size_t)(ty * 4 + tx) * c1 + (c & ~15) + (c % 4) * 4 + (c % 16) / 4;
                L->init_q[atq] = clamp30(ceil_div(d * (T - bsum), 2)) - 1;
                L->init_p[at] = clamp30(ceil_div(d * (T + 255 * bsum), 2)) - 1;
                L->init_x[at] = clamp30((int64_t)d * T) - 1;
            }
    }
    return L;
}

/* ------------------------------------------------------------------------------------------ */
/* staging: rows [y0 - 1, y1] of one image, padded by one pixel of e = 0, in the encoding      */

enum { ENC_Q = 0, ENC_P = 1, ENC_X = 2 };

static inline size_t row_elems(int S) { return (size_t)(S + 2) * 3; }

/* bytes per staged row: the elements, rounded up to 16 bytes */
static inline size_t row_stride(int S, int esize) {
    return (row_elems(S) * esize + 15) & ~(size_t)15;
}

static void encode_row_scalar(int enc, const uint8_t *src, size_t n, void *dst) {
    if (enc == ENC_X) {
        int16_t *d = (int16_t *)dst;
        for (size_t i = 0; i < n; i++) d[i] = (int16_t)(2 * src[i] - 255);
    } else if (enc == ENC_Q) {
        uint8_t *d = (uint8_t *)dst;
        for (size_t i = 0; i < n; i++) d[i] = src[i] ^ 0x80; /* (int8)(p ^ 0x80) == p - 128 */
    } else {
        memcpy(dst, src, n);
    }
}

#ifdef BNN_NEON
BNN_NEON_FN static void encode_row_neon_q(const uint8_t *src, size_t n, uint8_t *d) {
    const uint8x16_t k80 = vdupq_n_u8(0x80);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) vst1q_u8(d + i, veorq_u8(vld1q_u8(src + i), k80));
    for (; i < n; i++) d[i] = src[i] ^ 0x80;
}
#endif

static void stage_rows(const uint8_t *img, int S, int y0, int y1, int enc, int use_neon,
                       uint8_t *st) {
    const int es = enc == ENC_X ? 2 : 1;
    const size_t rs = row_stride(S, es), n = (size_t)S * 3;
    for (int y = y0 - 1; y <= y1; y++) {
        uint8_t *row = st + (size_t)(y - (y0 - 1)) * rs;
        memset(row, 0, rs);
        if (y < 0 || y >= S) continue;
        const uint8_t *src = img + (size_t)y * n;
        void *dst = row + 3 * es; /* one padding pixel on the left */
#ifdef BNN_NEON
        if (use_neon && enc == ENC_Q) {
            encode_row_neon_q(src, n, (uint8_t *)dst);
            continue;
        }
#endif
        (void)use_neon;
        encode_row_scalar(enc, src, n, dst);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* portable                                                                                   */

static void patches_generic(const uint8_t *st, size_t rs, int S, int es, uint8_t *patch) {
    /* patch[x][ky*9 + j] = staged row ky, elements 3x + j (j < 9); slot 27 = 0 */
    const size_t pb = (size_t)L1_PATCH * es;
    for (int x = 0; x < S; x++) {
        uint8_t *p = patch + (size_t)x * pb;
        for (int ky = 0; ky < 3; ky++) memcpy(p + (size_t)9 * ky * es, st + ky * rs + (size_t)3 * x * es, (size_t)9 * es);
        memset(p + (size_t)L1_K * es, 0, (size_t)(L1_PATCH - L1_K) * es);
    }
}

static void row_portable(const l1_t *L, const int16_t *patch, int ty, uint64_t *out) {
    const int S = L->size, c1 = L->c1;
    for (int x = 0; x < S; x++) {
        const int16_t *e = patch + (size_t)x * L1_PATCH; /* slots 27..31 are 0 */
        const int32_t *init = L->init_x + (size_t)(ty + bnn_border_type(x, S)) * c1;
        for (int cb = 0; cb < L->c1w; cb++) {
            uint64_t word = 0;
            for (int c = 0; c < 64; c++) {
                const int16_t *w = L->w_port + (size_t)(cb * 64 + c) * L1_PATCH;
                int32_t acc = init[cb * 64 + c];
                for (int k = 0; k < L1_PATCH; k++) acc += (int32_t)w[k] * e[k];
                word |= (uint64_t)(acc < 0) << c;
            }
            out[(size_t)x * L->c1w + cb] = word;
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* NEON                                                                                       */

#ifdef BNN_NEON
BNN_NEON_FN static void patches_neon(const uint8_t *st, size_t rs, int S, uint8_t *patch) {
    /* three overlapping 16-byte stores per pixel: bytes 27..33 get garbage, but slot 27 has
     * weight 0 and bytes 32, 33 are the next patch's first two, written afterwards */
    const uint8_t *r0 = st, *r1 = st + rs, *r2 = st + 2 * rs;
    for (int x = 0; x < S; x++, r0 += 3, r1 += 3, r2 += 3, patch += L1_PATCH) {
        const uint8x16_t a = vld1q_u8(r0), b = vld1q_u8(r1), c = vld1q_u8(r2);
        vst1q_u8(patch, a);
        vst1q_u8(patch + 9, b);
        vst1q_u8(patch + 18, c);
    }
}

/* GCC's pre-allocation scheduler hoists the 16 multiplies of a step and spills accumulators
 * (measured: 8 spill loads/stores per step); without it the step is 30 instructions, no spill */
#if defined(__GNUC__) && !defined(__clang__)
#define L1_NO_SCHED __attribute__((optimize("no-schedule-insns")))
#else
#define L1_NO_SCHED
#endif
#ifndef L1_UNROLL
#define L1_UNROLL _Pragma("GCC unroll 1")
#endif

/* one int32x4 accumulator += 4 taps (two pairs) of one pixel times 4 channels */
#define L1_MAC(acc, wa, xa, wb, xb) acc = vpadalq_s16(acc, vmlal_s8(vmull_s8(wa, xa), wb, xb))

/* sign bits of 4 int32x4 (16 channels) -> int8x16 whose sign bits are the same: two vuzp.16
 * keep the high halves, one vuzp.8 the high bytes (3 instructions, no register moves) */
BNN_NEON_FN static inline int8x16_t l1_neon_signs(int32x4_t a0, int32x4_t a1, int32x4_t a2,
                                                 int32x4_t a3) {
    const int16x8_t h01 = vuzpq_s16(vreinterpretq_s16_s32(a0), vreinterpretq_s16_s32(a1)).val[1];
    const int16x8_t h23 = vuzpq_s16(vreinterpretq_s16_s32(a2), vreinterpretq_s16_s32(a3)).val[1];
    return vuzpq_s8(vreinterpretq_s8_s16(h01), vreinterpretq_s8_s16(h23)).val[1];
}

/* the sign bits of 2 pixels x 16 channels -> lanes 0 and 1 of a uint16x4 */
BNN_NEON_FN static inline uint16x4_t l1_neon_bits2(int8x16_t na, int8x16_t nb, uint8x16_t weights) {
    const uint8x16_t ma = vandq_u8(vreinterpretq_u8_s8(vshrq_n_s8(na, 7)), weights);
    const uint8x16_t mb = vandq_u8(vreinterpretq_u8_s8(vshrq_n_s8(nb, 7)), weights);
    uint8x8_t r = vpadd_u8(vpadd_u8(vget_low_u8(ma), vget_high_u8(ma)),
                           vpadd_u8(vget_low_u8(mb), vget_high_u8(mb)));
    r = vpadd_u8(r, r);
    return vreinterpret_u16_u8(r);
}

BNN_NEON_FN L1_NO_SCHED static void row_neon(const l1_t *L, const uint8_t *patch, int ty, uint64_t *out) {
    const int S = L->size, c1 = L->c1, ncb = c1 / 16;
    /* the two pixels' patches interleaved by 4 taps: [a 4s..4s+3][b 4s..4s+3] per step s, so
     * one vld4.16 {d[]..} replicates the 4 input pairs of a step into 4 d registers */
    uint16_t pp[32] __attribute__((aligned(16)));
    static const uint8_t bw[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t bitw = vld1q_u8(bw);
    for (int x = 0; x < S; x += 2) {
        const int x1 = x + 1 < S ? x + 1 : x; /* odd width: the last pixel twice */
        {
            const uint32_t *pa = (const uint32_t *)(patch + (size_t)x * L1_PATCH);
            const uint32_t *pb = (const uint32_t *)(patch + (size_t)x1 * L1_PATCH);
            uint32x4x2_t lo, hi;
            lo.val[0] = vld1q_u32(pa);
            lo.val[1] = vld1q_u32(pb);
            hi.val[0] = vld1q_u32(pa + 4);
            hi.val[1] = vld1q_u32(pb + 4);
            vst2q_u32((uint32_t *)pp, lo);
            vst2q_u32((uint32_t *)pp + 8, hi);
        }
        const int32_t *ia = L->init_q + (size_t)(ty + bnn_border_type(x, S)) * c1;
        const int32_t *ib = L->init_q + (size_t)(ty + bnn_border_type(x1, S)) * c1;
        uint16_t *oa = (uint16_t *)(out + (size_t)x * L->c1w);
        uint16_t *ob = (uint16_t *)(out + (size_t)x1 * L->c1w);
        const int8_t *w = L->w_neon;
        for (int cb = 0; cb < ncb; cb++, ia += 16, ib += 16) {
            /* the init table is stored so that vld4q (2 x vld4.32) de-interleaves it into
             * channels 0-3, 4-7, 8-11, 12-15 */
            const int32x4x4_t A = vld4q_s32(ia), B = vld4q_s32(ib);
            int32x4_t a0 = A.val[0], a1 = A.val[1], a2 = A.val[2], a3 = A.val[3];
            int32x4_t b0 = B.val[0], b1 = B.val[1], b2 = B.val[2], b3 = B.val[3];
            const uint16_t *px = pp;
            L1_UNROLL
            for (int s = 0; s < 7; s++) {
                const uint16x4x4_t X = vld4_dup_u16(px);
                px += 4;
                const int8x8_t xa0 = vreinterpret_s8_u16(X.val[0]), xa1 = vreinterpret_s8_u16(X.val[1]);
                const int8x8_t xb0 = vreinterpret_s8_u16(X.val[2]), xb1 = vreinterpret_s8_u16(X.val[3]);
                const int8x8x4_t W = vld4_s8(w); /* taps 4s, 4s+1 of the 4 channel groups */
                const int8x8x4_t V = vld4_s8(w + 32); /* taps 4s+2, 4s+3 */
                w += 64;
                L1_MAC(a0, W.val[0], xa0, V.val[0], xa1);
                L1_MAC(b0, W.val[0], xb0, V.val[0], xb1);
                L1_MAC(a1, W.val[1], xa0, V.val[1], xa1);
                L1_MAC(b1, W.val[1], xb0, V.val[1], xb1);
                L1_MAC(a2, W.val[2], xa0, V.val[2], xa1);
                L1_MAC(b2, W.val[2], xb0, V.val[2], xb1);
                L1_MAC(a3, W.val[3], xa0, V.val[3], xa1);
                L1_MAC(b3, W.val[3], xb0, V.val[3], xb1);
            }
            const uint16x4_t bits = l1_neon_bits2(l1_neon_signs(a0, a1, a2, a3),
                                                  l1_neon_signs(b0, b1, b2, b3), bitw);
            vst1_lane_u16(ob + cb, bits, 1); /* b first: with x1 == x, a's store wins (equal) */
            vst1_lane_u16(oa + cb, bits, 0);
        }
    }
}
#undef L1_MAC
#endif /* BNN_NEON */

/* ------------------------------------------------------------------------------------------ */
/* x86: AVX2 and AVX-512 VNNI                                                                 */

#ifdef BNN_X86
__attribute__((target("avx2"))) static void patches_avx2(const uint8_t *st, size_t rs, int S,
                                                         uint8_t *patch) {
    /* int16 elements: three 32-byte stores at element 0, 9, 18; stride 64 bytes */
    const uint8_t *r0 = st, *r1 = st + rs, *r2 = st + 2 * rs;
    for (int x = 0; x < S; x++, r0 += 6, r1 += 6, r2 += 6, patch += 2 * L1_PATCH) {
        const __m256i a = _mm256_loadu_si256((const __m256i *)r0);
        const __m256i b = _mm256_loadu_si256((const __m256i *)r1);
        const __m256i c = _mm256_loadu_si256((const __m256i *)r2);
        _mm256_storeu_si256((__m256i *)patch, a);
        _mm256_storeu_si256((__m256i *)(patch + 18), b);
        _mm256_storeu_si256((__m256i *)(patch + 36), c);
    }
}

__attribute__((target("avx2"))) static void row_avx2(const l1_t *L, const uint8_t *patch, int ty,
                                                     uint64_t *out) {
    const int S = L->size, c1 = L->c1;
    for (int x = 0; x < S; x++) {
        const int32_t *e = (const int32_t *)(patch + (size_t)x * 2 * L1_PATCH); /* int16 pairs */
        const int32_t *init = L->init_x + (size_t)(ty + bnn_border_type(x, S)) * c1;
        const int16_t *w = L->w_avx2;
        for (int cb = 0; cb < L->c1w; cb++, init += 64) {
            __m256i a[8];
            for (int i = 0; i < 8; i++) a[i] = _mm256_loadu_si256((const __m256i *)(init + 8 * i));
            for (int j = 0; j < L1_KP / 2; j++, w += 128) {
                const __m256i xb = _mm256_set1_epi32(e[j]);
                for (int i = 0; i < 8; i++)
                    a[i] = _mm256_add_epi32(
                        a[i], _mm256_madd_epi16(xb, _mm256_loadu_si256((const __m256i *)(w + 16 * i))));
            }
            uint64_t word = 0;
            for (int i = 0; i < 8; i++)
                word |= (uint64_t)(uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(a[i])) << (8 * i);
            out[(size_t)x * L->c1w + cb] = word;
        }
    }
}

#define L1_VNNI __attribute__((target("avx512f,avx512bw,avx512vnni")))

L1_VNNI static void patches_vnni(const uint8_t *st, size_t rs, int S, uint8_t *patch) {
    const uint8_t *r0 = st, *r1 = st + rs, *r2 = st + 2 * rs;
    for (int x = 0; x < S; x++, r0 += 3, r1 += 3, r2 += 3, patch += L1_PATCH) {
        const __m128i a = _mm_loadu_si128((const __m128i *)r0);
        const __m128i b = _mm_loadu_si128((const __m128i *)r1);
        const __m128i c = _mm_loadu_si128((const __m128i *)r2);
        _mm_storeu_si128((__m128i *)patch, a);
        _mm_storeu_si128((__m128i *)(patch + 9), b);
        _mm_storeu_si128((__m128i *)(patch + 18), c);
    }
}

L1_VNNI static void row_vnni(const l1_t *L, const uint8_t *patch, int ty, uint64_t *out) {
    const int S = L->size, c1 = L->c1;
    for (int x = 0; x < S; x += 4) {
        const int m = S - x < 4 ? S - x : 4;
        const int32_t *e[4];
        const int32_t *init[4];
        for (int p = 0; p < 4; p++) {
            const int xp = x + (p < m ? p : m - 1);
            e[p] = (const int32_t *)(patch + (size_t)xp * L1_PATCH);
            init[p] = L->init_p + (size_t)(ty + bnn_border_type(xp, S)) * c1;
        }
        const int8_t *w = L->w_vnni;
        for (int cb = 0; cb < L->c1w; cb++) {
            __m512i a[4][4];
            for (int p = 0; p < 4; p++)
                for (int i = 0; i < 4; i++) a[p][i] = _mm512_loadu_si512(init[p] + cb * 64 + 16 * i);
            for (int j = 0; j < L1_KP / 4; j++, w += 256) {
                const __m512i w0 = _mm512_loadu_si512(w), w1 = _mm512_loadu_si512(w + 64);
                const __m512i w2 = _mm512_loadu_si512(w + 128), w3 = _mm512_loadu_si512(w + 192);
                for (int p = 0; p < 4; p++) {
                    const __m512i xb = _mm512_set1_epi32(e[p][j]);
                    a[p][0] = _mm512_dpbusd_epi32(a[p][0], xb, w0);
                    a[p][1] = _mm512_dpbusd_epi32(a[p][1], xb, w1);
                    a[p][2] = _mm512_dpbusd_epi32(a[p][2], xb, w2);
                    a[p][3] = _mm512_dpbusd_epi32(a[p][3], xb, w3);
                }
            }
            const __m512i zero = _mm512_setzero_si512();
            for (int p = 0; p < m; p++) {
                const uint64_t word =
                    (uint64_t)_mm512_cmplt_epi32_mask(a[p][0], zero) |
                    (uint64_t)_mm512_cmplt_epi32_mask(a[p][1], zero) << 16 |
                    (uint64_t)_mm512_cmplt_epi32_mask(a[p][2], zero) << 32 |
                    (uint64_t)_mm512_cmplt_epi32_mask(a[p][3], zero) << 48;
                out[(size_t)(x + p) * L->c1w + cb] = word;
            }
        }
    }
}
#endif /* BNN_X86 */

/* ------------------------------------------------------------------------------------------ */
/* ISA selection and threads                                                                   */

static int l1_supported(int isa) {
    switch (isa) {
    case ISA_PORTABLE:
        return 1;
#ifdef BNN_X86
    case ISA_AVX2:
        return bnn_cpu_has("2");
    case ISA_AVX512:
        return bnn_cpu_has("v");
#endif
#ifdef BNN_NEON
    case ISA_NEON:
        return bnn_cpu_has_neon();
#endif
    default:
        return 0;
    }
}

BNN_API int bnn_l1_isa_supported(int isa) { return isa >= 0 && isa < ISA_COUNT && l1_supported(isa); }

BNN_API int bnn_l1_best_isa(void) {
    static const int order[] = {ISA_AVX512, ISA_AVX2, ISA_NEON, ISA_PORTABLE};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        if (l1_supported(order[i])) return order[i];
    return ISA_PORTABLE;
}

typedef struct {
    const l1_t *L;
    const uint8_t *images;
    uint64_t *out;
    int64_t rows; /* n * S */
    int isa, nthreads, tid, rc;
} l1_job_t;

static void l1_work(l1_job_t *J) {
    const l1_t *L = J->L;
    const int S = L->size, isa = J->isa;
    const int enc = isa == ISA_NEON ? ENC_Q : isa == ISA_AVX512 ? ENC_P : ENC_X;
    const int es = enc == ENC_X ? 2 : 1;
    const size_t rs = row_stride(S, es);
    int64_t r0, r1;
    bnn_range_split(J->rows, J->tid, J->nthreads, &r0, &r1);
    if (r0 >= r1) return;
    /* staged rows + 64 bytes of slack (the patch loads read up to 32 bytes past a window) */
    uint8_t *st = (uint8_t *)l1_alloc((size_t)(L1_ROWS + 2) * rs + 64);
    uint8_t *patch = (uint8_t *)l1_alloc((size_t)S * L1_PATCH * es + 64);
    if (!st || !patch) {
        free(st);
        free(patch);
        J->rc = -3;
        return;
    }
    const size_t img_bytes = (size_t)S * S * 3, img_words = (size_t)S * S * L->c1w;
    for (int64_t r = r0; r < r1;) {
        const int64_t n = r / S;
        const int y0 = (int)(r % S);
        int y1 = y0 + L1_ROWS;
        if (y1 > S) y1 = S;
        if (y1 - y0 > r1 - r) y1 = y0 + (int)(r1 - r);
        const uint8_t *img = J->images + (size_t)n * img_bytes;
        stage_rows(img, S, y0, y1, enc, isa == ISA_NEON, st);
        for (int y = y0; y < y1; y++) {
            const uint8_t *rows3 = st + (size_t)(y - y0) * rs; /* padded rows y-1, y, y+1 */
            uint64_t *out = J->out + (size_t)n * img_words + (size_t)y * S * L->c1w;
            const int ty = bnn_border_type(y, S) * 4;
            switch (isa) {
#ifdef BNN_NEON
            case ISA_NEON:
                patches_neon(rows3, rs, S, patch);
                row_neon(L, patch, ty, out);
                break;
#endif
#ifdef BNN_X86
            case ISA_AVX2:
                patches_avx2(rows3, rs, S, patch);
                row_avx2(L, patch, ty, out);
                break;
            case ISA_AVX512:
                patches_vnni(rows3, rs, S, patch);
                row_vnni(L, patch, ty, out);
                break;
#endif
            default:
                patches_generic(rows3, rs, S, es, patch);
                row_portable(L, (const int16_t *)patch, ty, out);
            }
        }
        r += y1 - y0;
    }
    free(st);
    free(patch);
}

static void *l1_thread(void *p) {
    l1_work((l1_job_t *)p);
    return NULL;
}

/*
 * images: uint8 [n][S][S][3] C-contiguous; out: uint64 [n][S][S][c1/64] C-contiguous (every
 * word is written).  threads <= 0: one per online CPU.  isa < 0: best supported.
 * Returns 0, or -1 bad arguments, -2 ISA not supported here, -3 out of memory,
 * -4 thread creation failed.
 */
BNN_API int bnn_l1_run(void *handle, const uint8_t *images, int64_t n, uint64_t *out, int threads,
                       int isa) {
    const l1_t *L = (const l1_t *)handle;
    if (!L || n < 0 || (n > 0 && (!images || !out))) return -1;
    if (n == 0) return 0;
    if (isa < 0) isa = bnn_l1_best_isa();
    if (isa >= ISA_COUNT || !l1_supported(isa)) return -2;
    if (threads <= 0) threads = bnn_online_cpus();
    if (threads > 64) threads = 64;
    const int64_t rows = n * L->size;
    if ((int64_t)threads > rows) threads = (int)rows;
    l1_job_t jobs[64];
    pthread_t tids[64];
    for (int t = 0; t < threads; t++) {
        jobs[t].L = L;
        jobs[t].images = images;
        jobs[t].out = out;
        jobs[t].rows = rows;
        jobs[t].isa = isa;
        jobs[t].nthreads = threads;
        jobs[t].tid = t;
        jobs[t].rc = 0;
    }
    int started = 1, rc = 0;
    for (int t = 1; t < threads; t++) {
        if (pthread_create(&tids[t], NULL, l1_thread, &jobs[t])) break;
        started++;
    }
    if (started < threads) rc = -4; /* the rows of the missing threads are not computed */
    l1_work(&jobs[0]);
    for (int t = 1; t < started; t++) pthread_join(tids[t], NULL);
    for (int t = 0; t < started && !rc; t++) rc = jobs[t].rc;
    return rc;
}
