/*
 * pynq-bnn native CPU engine for the binary layers (layers 2..L) of BinaryNet.
 *
 * Bit-exact with pynq_bnn/spec/reference.py (docs/FORMAT.md is the contract):
 *   conv:  sum = sum over in-bounds taps of (64*Cw - 2*popcount(x ^ w))
 *   dense: sum = 64*Nw - 2*popcount(x ^ w)
 *   pool:  max of the integer sums, then the threshold rule
 *   bits:  dir > 0 ? sum >= T : sum <= T, packed LSB-first into little-endian uint64 words.
 *
 * Zero padding: the input of every conv lives in a buffer with a one-pixel zero border and the
 * kernel runs all 9 taps.  A zero word contributes popcount(0 ^ w) = popcount(w), which is
 * subtracted again through a per-(border type, channel) constant:
 *   sum = nvalid * Cin + 2 * sum_{invalid taps} popcount(w_tap) - 2 * sum_{all taps} popcount(x ^ w)
 *       = base[type][c] - 2 * acc.
 *
 * Kernel: a "binary GEMM" block of 4 pixels (or 4 images for dense layers) x 32 output
 * channels.  Weights are pre-transformed once to [cout/32][k][32] so that one k step reads
 * 32 consecutive words (4 zmm, 8 ymm, 16 NEON q registers) and XORs them with one broadcast
 * input word per pixel.  The popcount of each k step is chosen at run time:
 *   avx512-vpopcntdq (VPOPCNTQ), avx2 (pshufb nibble LUT + vpsadbw), popcnt (scalar POPCNT),
 *   neon (vcntq_u8 + vpadalq_u8), portable (__builtin_popcountll).
 * Pooling, thresholds and bit packing are fused into the block epilogue.
 *
 * Threads: the batch is split across pthreads (each thread runs whole images, layer by layer,
 * in chunks of CHUNK images so the dense layers reuse each weight block across the chunk);
 * the images left over (N mod T, e.g. batch 1) are run cooperatively, every layer split across
 * all threads with a barrier between layers.
 *
 * Plain C ABI (loaded with ctypes), no Python.h.
 */
#include "bnn_cpu.h"

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define BNN_ABI_VERSION 2 /* 2: layer 1 (bnn_l1_*) */

static const char *const isa_names[ISA_COUNT] = {"portable", "popcnt", "avx2", "avx512-vpopcntdq",
                                                 "neon"};

enum { MODE_BITS = 0, MODE_POOL = 1, MODE_LAST = 2 };

#define NB 32     /* output channels per kernel block */
#define MR 4      /* pixels (conv) or images (dense) per kernel block */
#define CHUNK 8   /* images per thread chunk */

/* ------------------------------------------------------------------------------------------ */
/* engine description                                                                          */

typedef struct {
    int kind;        /* 0 conv, 1 dense */
    int cin_w;       /* conv: words per input pixel; dense: words of the input vector */
    int cout;        /* output channels */
    int ncb;         /* cout blocks of NB (cout padded up) */
    int size;        /* conv: input side H = W; dense: 1 */
    int pool, last;
    int k;           /* words per dot product: 9*cin_w (conv) or cin_w (dense) */
    uint64_t *wt;    /* [ncb][k][NB] */
    int32_t *base;   /* conv: [16][ncb*NB]; dense: [1][ncb*NB] */
    int32_t *thr;    /* [ncb*NB] raw thresholds */
    uint32_t *pos;   /* [ncb] bit n set: direction +1 for channel cb*NB+n */
    /* NEON path (built on ARM only): weights in its own layout and, for the thresholds, the
     * raw popcount limit of each (border type, channel): bit = (popcount > lim) ^ pos */
    uint64_t *wr;    /* [ncb*NB][k]: the weights as given, channels padded with zeros */
    int16_t *lim;    /* conv: [2][16][ncb*NB] (all 3 window rows computed / the all-padding
                        window row of a top or bottom pixel skipped), dense: [1][ncb*NB] */
    int neon_ok;     /* 64*k <= 32767: popcount sums and limits fit int16 */
    /* geometry of this layer's input buffer (per image) and of its output */
    size_t in_words;     /* words per image of the input buffer */
    int in_padded;       /* input buffer has a 1-pixel zero border */
    int out_size;        /* output side (after pool) for conv */
    int cout_w;          /* output words per pixel (cout/64), not for the last layer */
    /* conv: per pixel group (a 2x2 pool window or MR pixels of the raster order) */
    int64_t ngroups;
    struct group {
        int32_t a[MR];    /* word offset of the pixel's 3x3 window in the padded input */
        int32_t t[MR];    /* border type (index into base) */
        int32_t o[MR];    /* uint32 offset of the output word (channel block 0); o[0] if pooled */
        int32_t mr;       /* valid pixels */
    } *groups;
} layer_t;

typedef struct {
    uint64_t *buf;   /* all input buffers of all layers for CHUNK images */
    size_t words;
} workspace_t;

typedef struct {
    int nlayers;
    layer_t *layers;
    int n_classes;
    int in_size, in_cw;       /* packed input: [N][in_size][in_size][in_cw] */
    size_t *buf_off;          /* [nlayers]: offset of layer l's input buffer in a workspace */
    size_t ws_words;
    workspace_t *ws;
    int n_ws;
    pthread_mutex_t lock;
} engine_t;

/* One kernel block: MR rows (pixels / images) x NB output channels. */
typedef struct {
    const uint64_t *a[MR];   /* row start pointers */
    int nseg, seglen;        /* dot product = nseg segments of seglen contiguous words */
    ptrdiff_t segstride;     /* words between segments */
    const uint64_t *wt;      /* [k][NB] of this block */
    int mode, mr;            /* valid rows */
    const int32_t *base[MR]; /* per row base constants (this block's NB channels) */
    const int32_t *thr;      /* NB thresholds */
    const uint64_t *wr;      /* NEON: this block's weights, [NB][k] */
    int k;                   /* NEON: words per dot product */
    const int16_t *lim[MR];  /* NEON: per row popcount limits (this block's NB channels) */
    int lim_skip;            /* NEON: offset of the skipped-row limits (0: none) */
    int8_t vt[MR];           /* NEON: vertical border type of each row (conv; 0 dense) */
    int neon_ok;
    uint32_t pos;            /* direction bits */
    uint32_t *outb[MR];      /* MODE_BITS: per row; MODE_POOL: outb[0] */
    int32_t *outs[MR];       /* MODE_LAST: per row int32 sums */
    int nvalid;              /* MODE_LAST: valid channels in this block */
} blk_t;

typedef void (*blk_fn)(const blk_t *);

/* ------------------------------------------------------------------------------------------ */
/* the common epilogue (pool, threshold, pack), inlined into each ISA's block function         */

static inline uint32_t thr_bits(const int32_t *s, const int32_t *thr, uint32_t pos) {
    uint32_t ge = 0, le = 0;
    for (int n = 0; n < NB; n++) {
        ge |= (uint32_t)(s[n] >= thr[n]) << n;
        le |= (uint32_t)(s[n] <= thr[n]) << n;
    }
    return (ge & pos) | (le & ~pos);
}

static inline void epilogue_generic(const blk_t *B, int32_t acc[MR][NB]) {
    int32_t s[MR][NB];
    for (int m = 0; m < MR; m++)
        for (int n = 0; n < NB; n++) s[m][n] = B->base[m][n] - 2 * acc[m][n];
    if (B->mode == MODE_LAST) {
        for (int m = 0; m < B->mr; m++)
            for (int n = 0; n < B->nvalid; n++) B->outs[m][n] = s[m][n];
    } else if (B->mode == MODE_POOL) {
        int32_t p[NB];
        for (int n = 0; n < NB; n++) {
            int32_t a = s[0][n] > s[1][n] ? s[0][n] : s[1][n];
            int32_t b = s[2][n] > s[3][n] ? s[2][n] : s[3][n];
            p[n] = a > b ? a : b;
        }
        *B->outb[0] = thr_bits(p, B->thr, B->pos);
    } else {
        for (int m = 0; m < B->mr; m++) *B->outb[m] = thr_bits(s[m], B->thr, B->pos);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* scalar kernels: portable (__builtin_popcountll) and x86 POPCNT                              */

#define SCALAR_BLOCK_BODY                                                                      \
    int32_t acc[MR][NB];                                                                       \
    memset(acc, 0, sizeof acc);                                                                \
    const uint64_t *w = B->wt;                                                                 \
    for (int s = 0; s < B->nseg; s++) {                                                        \
        const ptrdiff_t o = s * B->segstride;                                                  \
        const uint64_t *p0 = B->a[0] + o, *p1 = B->a[1] + o, *p2 = B->a[2] + o,                \
                       *p3 = B->a[3] + o;                                                      \
        for (int j = 0; j < B->seglen; j++, w += NB) {                                         \
            const uint64_t x0 = p0[j], x1 = p1[j], x2 = p2[j], x3 = p3[j];                     \
            for (int n = 0; n < NB; n++) {                                                     \
                const uint64_t wn = w[n];                                                      \
                acc[0][n] += __builtin_popcountll(x0 ^ wn);                                    \
                acc[1][n] += __builtin_popcountll(x1 ^ wn);                                    \
                acc[2][n] += __builtin_popcountll(x2 ^ wn);                                    \
                acc[3][n] += __builtin_popcountll(x3 ^ wn);                                    \
            }                                                                                  \
        }                                                                                      \
    }                                                                                          \
    epilogue_generic(B, acc);

static void blk_portable(const blk_t *B) { SCALAR_BLOCK_BODY }

#ifdef BNN_X86
__attribute__((target("popcnt"))) static void blk_popcnt(const blk_t *B) { SCALAR_BLOCK_BODY }

/* ------------------------------------------------------------------------------------------ */
/* AVX2: nibble LUT popcount (pshufb), byte accumulators flushed with vpsadbw                  */

__attribute__((target("avx2"))) static void blk_avx2(const blk_t *B) {
    int32_t acc[MR][NB];
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1,
                                         2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f);
    const __m256i zero = _mm256_setzero_si256();
    for (int m = 0; m < MR; m++) {
        for (int h = 0; h < NB / 16; h++) {
            __m256i q0 = zero, q1 = zero, q2 = zero, q3 = zero; /* 4 x 4 channels, qword sums */
            __m256i b0 = zero, b1 = zero, b2 = zero, b3 = zero; /* byte sums, <= 31 steps */
            int cnt = 0;
            const uint64_t *w = B->wt + h * 16;
            for (int s = 0; s < B->nseg; s++) {
                const uint64_t *p = B->a[m] + s * B->segstride;
                for (int j = 0; j < B->seglen; j++, w += NB) {
                    const __m256i x = _mm256_set1_epi64x((long long)p[j]);
#define AVX2_STEP(bi, off)                                                                     \
    {                                                                                          \
        const __m256i v = _mm256_xor_si256(x, _mm256_loadu_si256((const __m256i *)(w + off))); \
        const __m256i lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(v, low));                 \
        const __m256i hi = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(v, 4), low)); \
        bi = _mm256_add_epi8(bi, _mm256_add_epi8(lo, hi));                                     \
    }
                    AVX2_STEP(b0, 0) AVX2_STEP(b1, 4) AVX2_STEP(b2, 8) AVX2_STEP(b3, 12)
#undef AVX2_STEP
                    if (++cnt == 31) {
                        q0 = _mm256_add_epi64(q0, _mm256_sad_epu8(b0, zero));
                        q1 = _mm256_add_epi64(q1, _mm256_sad_epu8(b1, zero));
                        q2 = _mm256_add_epi64(q2, _mm256_sad_epu8(b2, zero));
                        q3 = _mm256_add_epi64(q3, _mm256_sad_epu8(b3, zero));
                        b0 = b1 = b2 = b3 = zero;
                        cnt = 0;
                    }
                }
            }
            q0 = _mm256_add_epi64(q0, _mm256_sad_epu8(b0, zero));
            q1 = _mm256_add_epi64(q1, _mm256_sad_epu8(b1, zero));
            q2 = _mm256_add_epi64(q2, _mm256_sad_epu8(b2, zero));
            q3 = _mm256_add_epi64(q3, _mm256_sad_epu8(b3, zero));
            int64_t t[16];
            _mm256_storeu_si256((__m256i *)(t + 0), q0);
            _mm256_storeu_si256((__m256i *)(t + 4), q1);
            _mm256_storeu_si256((__m256i *)(t + 8), q2);
            _mm256_storeu_si256((__m256i *)(t + 12), q3);
            for (int n = 0; n < 16; n++) acc[m][h * 16 + n] = (int32_t)t[n];
        }
    }
    epilogue_generic(B, acc);
}

/* ------------------------------------------------------------------------------------------ */
/* AVX-512 VPOPCNTDQ: 4 rows x 4 zmm (32 channels), 16 accumulators, fused vector epilogue     */

#define AVX512_TARGET __attribute__((target("avx512f,avx512vpopcntdq")))

AVX512_TARGET static inline __m512i avx512_pair(__m512i a, __m512i b) {
    /* two vectors of 8 int64 -> one vector of 16 int32 (a: channels 0..7, b: 8..15) */
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(a)),
                              _mm512_cvtepi64_epi32(b), 1);
}

AVX512_TARGET static void blk_avx512(const blk_t *B) {
    __m512i c00 = _mm512_setzero_si512(), c01 = c00, c02 = c00, c03 = c00;
    __m512i c10 = c00, c11 = c00, c12 = c00, c13 = c00;
    __m512i c20 = c00, c21 = c00, c22 = c00, c23 = c00;
    __m512i c30 = c00, c31 = c00, c32 = c00, c33 = c00;
    const uint64_t *w = B->wt;
    for (int s = 0; s < B->nseg; s++) {
        const ptrdiff_t o = s * B->segstride;
        const uint64_t *p0 = B->a[0] + o, *p1 = B->a[1] + o, *p2 = B->a[2] + o,
                       *p3 = B->a[3] + o;
        for (int j = 0; j < B->seglen; j++, w += NB) {
            const __m512i w0 = _mm512_loadu_si512((const void *)(w + 0));
            const __m512i w1 = _mm512_loadu_si512((const void *)(w + 8));
            const __m512i w2 = _mm512_loadu_si512((const void *)(w + 16));
            const __m512i w3 = _mm512_loadu_si512((const void *)(w + 24));
#define AVX512_ROW(p, r0, r1, r2, r3)                                                          \
    {                                                                                          \
        const __m512i x = _mm512_set1_epi64((long long)p[j]);                                  \
        r0 = _mm512_add_epi64(r0, _mm512_popcnt_epi64(_mm512_xor_si512(x, w0)));               \
        r1 = _mm512_add_epi64(r1, _mm512_popcnt_epi64(_mm512_xor_si512(x, w1)));               \
        r2 = _mm512_add_epi64(r2, _mm512_popcnt_epi64(_mm512_xor_si512(x, w2)));               \
        r3 = _mm512_add_epi64(r3, _mm512_popcnt_epi64(_mm512_xor_si512(x, w3)));               \
    }
            AVX512_ROW(p0, c00, c01, c02, c03)
            AVX512_ROW(p1, c10, c11, c12, c13)
            AVX512_ROW(p2, c20, c21, c22, c23)
            AVX512_ROW(p3, c30, c31, c32, c33)
#undef AVX512_ROW
        }
    }
    /* acc as int32, 16 channels per vector: [row][half] */
    __m512i a[MR][2] = {{avx512_pair(c00, c01), avx512_pair(c02, c03)},
                        {avx512_pair(c10, c11), avx512_pair(c12, c13)},
                        {avx512_pair(c20, c21), avx512_pair(c22, c23)},
                        {avx512_pair(c30, c31), avx512_pair(c32, c33)}};
    __m512i sv[MR][2];
    for (int m = 0; m < MR; m++)
        for (int h = 0; h < 2; h++)
            sv[m][h] = _mm512_sub_epi32(_mm512_loadu_si512((const void *)(B->base[m] + 16 * h)),
                                        _mm512_slli_epi32(a[m][h], 1));
    if (B->mode == MODE_LAST) {
        for (int m = 0; m < B->mr; m++) {
            int32_t t[NB];
            _mm512_storeu_si512((void *)t, sv[m][0]);
            _mm512_storeu_si512((void *)(t + 16), sv[m][1]);
            for (int n = 0; n < B->nvalid; n++) B->outs[m][n] = t[n];
        }
        return;
    }
    const __m512i t0 = _mm512_loadu_si512((const void *)B->thr);
    const __m512i t1 = _mm512_loadu_si512((const void *)(B->thr + 16));
    const uint32_t pos = B->pos;
#define AVX512_BITS(v0, v1)                                                                    \
    ((((uint32_t)_mm512_cmpge_epi32_mask(v0, t0) | ((uint32_t)_mm512_cmpge_epi32_mask(v1, t1) << 16)) & pos) | \
     (((uint32_t)_mm512_cmple_epi32_mask(v0, t0) | ((uint32_t)_mm512_cmple_epi32_mask(v1, t1) << 16)) & ~pos))
    if (B->mode == MODE_POOL) {
        const __m512i m0 = _mm512_max_epi32(_mm512_max_epi32(sv[0][0], sv[1][0]),
                                            _mm512_max_epi32(sv[2][0], sv[3][0]));
        const __m512i m1 = _mm512_max_epi32(_mm512_max_epi32(sv[0][1], sv[1][1]),
                                            _mm512_max_epi32(sv[2][1], sv[3][1]));
        *B->outb[0] = AVX512_BITS(m0, m1);
    } else {
        for (int m = 0; m < B->mr; m++) *B->outb[m] = AVX512_BITS(sv[m][0], sv[m][1]);
    }
#undef AVX512_BITS
}
#endif /* BNN_X86 */

/* ------------------------------------------------------------------------------------------ */
/* NEON (ARMv7 Cortex-A9, AArch64): vcnt.8 + vpadal.u8 on word pairs, 16-bit epilogue         */

#ifdef BNN_NEON
/*
 * The block (MR = 4 rows x NB = 32 channels) runs as 2 x 8 sub-blocks of 2 rows x 4 channels,
 * 8 uint16x8 accumulators (one per row and channel). A step takes 4 consecutive words of a
 * row with one vld2.32 (low halves in one q register, high halves in the other) and the same
 * 4 words of each channel the same way, from the weights as given ([cout][k]: each channel
 * has its own pointer, so every load post-increments), then per row, channel and half:
 * veor + vcnt.8 + vpadal.u8. Per step: 6 loads + 48 arithmetic + 2 loop instructions for
 * 2 x 4 x 256 bit products (28 per 1024); 15 q registers live, nothing spilled (checked in
 * GCC 12's output). Segment tails: a 2-word step (vld1 q) and a 1-word step (D registers).
 * Cortex-A9 (64-bit NEON datapath): veor, vcnt, vpadal on Q registers issue in 2 cycles
 * each, vld2.32 of 4 D registers in 2: ~108 cycles per step, 0.05 cycles per bit product.
 * Epilogue: vpadd trees to one uint16 per (row, channel), then bit = (sum > lim) ^ pos with
 * int16 compares (the pool: AND of the four rows' compares, docs/FORMAT.md section 5),
 * packed with vmovn + vand + vpadd into the 32-bit output word.
 */
#define NEON_STEP(acc, x, w) acc = vpadalq_u8(acc, vcntq_u8(vreinterpretq_u8_u32(veorq_u32(x, w))))
#define NEON_STEPD(acc, x, w)                                                                  \
    acc = vcombine_u16(vpadal_u8(vget_low_u16(acc), vcnt_u8(vreinterpret_u8_u32(veor_u32(x, w)))), \
                       vget_high_u16(acc))

/* GCC 12's partial-redundancy elimination copies the 8 accumulators out of the loop on every
 * iteration (stack stores inside the loop); without it the loop is clean */
#if defined(__GNUC__) && !defined(__clang__)
#define NEON_NOPRE __attribute__((optimize("no-tree-pre")))
#else
#define NEON_NOPRE
#endif

#define NEON_QUAD(ca, cb, wp)                                                                  \
    {                                                                                          \
        const uint32x4x2_t W = vld2q_u32(wp);                                                  \
        wp += 8;                                                                               \
        NEON_STEP(ca, Xa.val[0], W.val[0]); NEON_STEP(cb, Xb.val[0], W.val[0]);                \
        NEON_STEP(ca, Xa.val[1], W.val[1]); NEON_STEP(cb, Xb.val[1], W.val[1]);                \
    }
#define NEON_PAIR(ca, cb, wp)                                                                  \
    {                                                                                          \
        const uint32x4_t W = vld1q_u32(wp);                                                    \
        wp += 4;                                                                               \
        NEON_STEP(ca, Xa, W); NEON_STEP(cb, Xb, W);                                            \
    }
#define NEON_ONE(ca, cb, wp)                                                                   \
    {                                                                                          \
        const uint32x2_t W = vld1_u32(wp);                                                     \
        wp += 2;                                                                               \
        NEON_STEPD(ca, Xa, W); NEON_STEPD(cb, Xb, W);                                          \
    }
#define NEON_QUADS(n)                                                                          \
    for (int i = 0; i < (n); i++) {                                                            \
        const uint32x4x2_t Xa = vld2q_u32(pa), Xb = vld2q_u32(pb);                             \
        pa += 8;                                                                               \
        pb += 8;                                                                               \
        NEON_QUAD(a0, b0, w0) NEON_QUAD(a1, b1, w1) NEON_QUAD(a2, b2, w2) NEON_QUAD(a3, b3, w3) \
    }
#define NEON_PAIRSTEP()                                                                        \
    {                                                                                          \
        const uint32x4_t Xa = vld1q_u32(pa), Xb = vld1q_u32(pb);                               \
        pa += 4;                                                                               \
        pb += 4;                                                                               \
        NEON_PAIR(a0, b0, w0) NEON_PAIR(a1, b1, w1) NEON_PAIR(a2, b2, w2) NEON_PAIR(a3, b3, w3) \
    }
#define NEON_ONESTEP()                                                                         \
    {                                                                                          \
        const uint32x2_t Xa = vld1_u32(pa), Xb = vld1_u32(pb);                                 \
        pa += 2;                                                                               \
        pb += 2;                                                                               \
        NEON_ONE(a0, b0, w0) NEON_ONE(a1, b1, w1) NEON_ONE(a2, b2, w2) NEON_ONE(a3, b3, w3)    \
    }

#define NEON_SEG(SG)                                                                           \
    if ((SG) < nseg) {                                                                         \
        const uint32_t *pa = (const uint32_t *)(ra + (SG) * stride);                           \
        const uint32_t *pb = (const uint32_t *)(rb + (SG) * stride);                           \
        NEON_QUADS(n4)                                                                         \
        if (tail & 2) NEON_PAIRSTEP();                                                         \
        if (tail & 1) NEON_ONESTEP();                                                          \
    }

BNN_NEON_FN static inline uint16x4_t neon_sum4(uint16x8_t c0, uint16x8_t c1, uint16x8_t c2,
                                               uint16x8_t c3) {
    return vpadd_u16(vpadd_u16(vpadd_u16(vget_low_u16(c0), vget_high_u16(c0)),
                               vpadd_u16(vget_low_u16(c1), vget_high_u16(c1))),
                     vpadd_u16(vpadd_u16(vget_low_u16(c2), vget_high_u16(c2)),
                               vpadd_u16(vget_low_u16(c3), vget_high_u16(c3))));
}

/* popcount sums of rows ra, rb x the first nq quads of the block's channels -> oa[4q + i],
 * ob[4q + i]; segments of B (conv: the 3 rows of the window, dense: 1) */
#if defined(BNN_NEON32) && !defined(BNN_NEON_NO_ASM) && defined(__OPTIMIZE__)
/*
 * AArch32 (optimised builds: the build passes -O3): one sub-block (2 rows x 4 channels, all segments) as one asm block. GCC 12 turns
 * the intrinsics above into 62 instructions per 4-word step instead of 56 and keeps pointers
 * on the stack around every segment (~130 instructions of overhead per sub-block, measured);
 * this is 56 per step and ~45 per sub-block. It is specialised at compile time for the
 * segment count (3: conv, 1: dense), the tail of a segment (seglen % 4) and whether there
 * are 4-word steps at all, so no branch but the step loop's. Registers: accumulators
 * q8-q11 (row a, channels 0-3) and q12-q15 (row b); q0/q1, q2/q3 the two rows' 4 words (low,
 * high halves: vld2.32), q4/q5 a channel's, q6/q7 the XOR results. The intrinsics above (the
 * AArch64 path, or -DBNN_NEON_NO_ASM) compute the same sums.
 */
#define NA_CH4(W, QA, QB)                                                                      \
    "vld2.32 {d8-d11}, [%[" W "]]!\n\t"                                                        \
    "veor q6, q0, q4\n\t" "veor q7, q2, q4\n\t" "vcnt.8 q6, q6\n\t" "vcnt.8 q7, q7\n\t"       \
    "vpadal.u8 " QA ", q6\n\t" "vpadal.u8 " QB ", q7\n\t"                                      \
    "veor q6, q1, q5\n\t" "veor q7, q3, q5\n\t" "vcnt.8 q6, q6\n\t" "vcnt.8 q7, q7\n\t"       \
    "vpadal.u8 " QA ", q6\n\t" "vpadal.u8 " QB ", q7\n\t"
#define NA_CH2(W, QA, QB)                                                                      \
    "vld1.32 {d8-d9}, [%[" W "]]!\n\t"                                                         \
    "veor q6, q0, q4\n\t" "veor q7, q2, q4\n\t" "vcnt.8 q6, q6\n\t" "vcnt.8 q7, q7\n\t"       \
    "vpadal.u8 " QA ", q6\n\t" "vpadal.u8 " QB ", q7\n\t"
#define NA_CH1(W, DA, DB)                                                                      \
    "vld1.32 {d8}, [%[" W "]]!\n\t"                                                            \
    "veor d12, d0, d8\n\t" "veor d14, d4, d8\n\t" "vcnt.8 d12, d12\n\t" "vcnt.8 d14, d14\n\t" \
    "vpadal.u8 " DA ", d12\n\t" "vpadal.u8 " DB ", d14\n\t"
#define NA_QUADS                                                                               \
    "mov %[cnt], %[n4]\n\t"                                                                    \
    "1:\n\t"                                                                                   \
    "vld2.32 {d0-d3}, [%[pa]]!\n\t" "vld2.32 {d4-d7}, [%[pb]]!\n\t"                            \
    NA_CH4("w0", "q8", "q12") NA_CH4("w1", "q9", "q13")                                        \
    NA_CH4("w2", "q10", "q14") NA_CH4("w3", "q11", "q15")                                      \
    "subs %[cnt], %[cnt], #1\n\t"                                                              \
    "bne 1b\n\t"
#define NA_PAIR                                                                                \
    "vld1.32 {d0-d1}, [%[pa]]!\n\t" "vld1.32 {d4-d5}, [%[pb]]!\n\t"                            \
    NA_CH2("w0", "q8", "q12") NA_CH2("w1", "q9", "q13")                                        \
    NA_CH2("w2", "q10", "q14") NA_CH2("w3", "q11", "q15")
#define NA_ONE                                                                                 \
    "vld1.32 {d0}, [%[pa]]!\n\t" "vld1.32 {d4}, [%[pb]]!\n\t"                                  \
    NA_CH1("w0", "d16", "d24") NA_CH1("w1", "d18", "d26")                                      \
    NA_CH1("w2", "d20", "d28") NA_CH1("w3", "d22", "d30")
#define NA_NEXTSEG "add %[pa], %[pa], %[jump]\n\t" "add %[pb], %[pb], %[jump]\n\t"
#define NA_INIT                                                                                \
    "vmov.i8 q8, #0\n\t" "vmov.i8 q9, #0\n\t" "vmov.i8 q10, #0\n\t" "vmov.i8 q11, #0\n\t"     \
    "vmov.i8 q12, #0\n\t" "vmov.i8 q13, #0\n\t" "vmov.i8 q14, #0\n\t" "vmov.i8 q15, #0\n\t"
#define NA_REDUCE                                                                              \
    "vpadd.i16 d0, d16, d17\n\t" "vpadd.i16 d1, d18, d19\n\t" "vpadd.i16 d2, d20, d21\n\t"   \
    "vpadd.i16 d3, d22, d23\n\t" "vpadd.i16 d4, d24, d25\n\t" "vpadd.i16 d5, d26, d27\n\t"   \
    "vpadd.i16 d6, d28, d29\n\t" "vpadd.i16 d7, d30, d31\n\t" "vpadd.i16 d0, d0, d1\n\t"     \
    "vpadd.i16 d1, d2, d3\n\t" "vpadd.i16 d2, d4, d5\n\t" "vpadd.i16 d3, d6, d7\n\t"         \
    "vpadd.i16 d0, d0, d1\n\t" "vpadd.i16 d1, d2, d3\n\t"                                      \
    "vst1.16 {d0}, [%[oa]]!\n\t" "add %[oa], %[oa], #56\n\t" /* row b: NB entries on */     \
    "vst1.16 {d1}, [%[oa]]\n\t"
#define NA_RUN(SEGMENT_CODE)                                                                   \
    __asm__ volatile(NA_INIT SEGMENT_CODE NA_REDUCE                                            \
                     : [pa] "+r"(pa), [pb] "+r"(pb), [w0] "+r"(w0), [w1] "+r"(w1),             \
                       [w2] "+r"(w2), [w3] "+r"(w3), [cnt] "=&r"(cnt), [oa] "+r"(o)            \
                     : [n4] "r"(n4), [jump] "r"(jump)                                          \
                     : "d0", "d1", "d2", "d3", "d4", "d5", "d6", "d7", "d8", "d9", "d10",      \
                       "d11", "d12", "d13", "d14", "d15", "d16", "d17", "d18", "d19", "d20",   \
                       "d21", "d22", "d23", "d24", "d25", "d26", "d27", "d28", "d29", "d30",   \
                       "d31", "cc", "memory")
#define NA_SEG_Q0 NA_QUADS NA_NEXTSEG
#define NA_SEG_Q1 NA_QUADS NA_ONE NA_NEXTSEG
#define NA_SEG_Q2 NA_QUADS NA_PAIR NA_NEXTSEG
#define NA_SEG_Q3 NA_QUADS NA_PAIR NA_ONE NA_NEXTSEG
#define NA_SEG_1 NA_ONE NA_NEXTSEG
#define NA_SEG_2 NA_PAIR NA_NEXTSEG
#define NA_SEG_3 NA_PAIR NA_ONE NA_NEXTSEG

BNN_NEON_FN static void neon_rows2(const blk_t *B, const uint64_t *ra, const uint64_t *rb,
                                   int nseg, int woff, int nq, uint16_t *oa, uint16_t *ob) {
    const int k = B->k, n4 = B->seglen / 4, tail = B->seglen % 4;
    /* bytes from the end of a segment to the start of the next */
    const int jump = (int)((B->segstride - B->seglen) * (ptrdiff_t)sizeof(uint64_t));
    const int variant = (nseg - 1) * 8 + (n4 ? 4 : 0) + tail;
    for (int q = 0; q < nq; q++) {
        const uint64_t *pa = ra, *pb = rb;
        const uint64_t *w0 = B->wr + (size_t)(4 * q) * k + woff, *w1 = w0 + k, *w2 = w1 + k,
                       *w3 = w2 + k;
        uint16_t *o = oa + 4 * q; /* ob == oa + NB: one pointer for both rows */
        int cnt;
        switch (variant) {
        case 4: NA_RUN(NA_SEG_Q0); break;
        case 5: NA_RUN(NA_SEG_Q1); break;
        case 6: NA_RUN(NA_SEG_Q2); break;
        case 7: NA_RUN(NA_SEG_Q3); break;
        case 1: NA_RUN(NA_SEG_1); break;
        case 2: NA_RUN(NA_SEG_2); break;
        case 3: NA_RUN(NA_SEG_3); break;
        case 12: NA_RUN(NA_SEG_Q0 NA_SEG_Q0); break;
        case 13: NA_RUN(NA_SEG_Q1 NA_SEG_Q1); break;
        case 14: NA_RUN(NA_SEG_Q2 NA_SEG_Q2); break;
        case 15: NA_RUN(NA_SEG_Q3 NA_SEG_Q3); break;
        case 9: NA_RUN(NA_SEG_1 NA_SEG_1); break;
        case 10: NA_RUN(NA_SEG_2 NA_SEG_2); break;
        case 11: NA_RUN(NA_SEG_3 NA_SEG_3); break;
        case 20: NA_RUN(NA_SEG_Q0 NA_SEG_Q0 NA_SEG_Q0); break;
        case 21: NA_RUN(NA_SEG_Q1 NA_SEG_Q1 NA_SEG_Q1); break;
        case 22: NA_RUN(NA_SEG_Q2 NA_SEG_Q2 NA_SEG_Q2); break;
        case 23: NA_RUN(NA_SEG_Q3 NA_SEG_Q3 NA_SEG_Q3); break;
        case 17: NA_RUN(NA_SEG_1 NA_SEG_1 NA_SEG_1); break;
        case 18: NA_RUN(NA_SEG_2 NA_SEG_2 NA_SEG_2); break;
        case 19: NA_RUN(NA_SEG_3 NA_SEG_3 NA_SEG_3); break;
        default: break; /* seglen 0 cannot happen (cin >= 64) */
        }
        (void)cnt;
    }
    (void)ob;
}
#else
BNN_NEON_FN NEON_NOPRE static void neon_rows2(const blk_t *B, const uint64_t *ra,
                                              const uint64_t *rb, int nseg, int woff, int nq,
                                              uint16_t *oa, uint16_t *ob) {
    const int n4 = B->seglen / 4, tail = B->seglen % 4, k = B->k;
    const ptrdiff_t stride = B->segstride;
    for (int q = 0; q < nq; q++) {
        const uint32_t *w0 = (const uint32_t *)(B->wr + (size_t)(4 * q) * k + woff);
        const uint32_t *w1 = w0 + 2 * k, *w2 = w1 + 2 * k, *w3 = w2 + 2 * k;
        uint16x8_t a0 = vdupq_n_u16(0), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0,
                   b3 = a0;
        NEON_SEG(0)
        NEON_SEG(1)
        NEON_SEG(2)
        vst1_u16(oa + 4 * q, neon_sum4(a0, a1, a2, a3));
        vst1_u16(ob + 4 * q, neon_sum4(b0, b1, b2, b3));
    }
}
#endif
#undef NEON_SEG
#undef NEON_QUADS
#undef NEON_QUAD
#undef NEON_PAIR
#undef NEON_ONE

/* 4 x 8 compare masks (uint16 lanes, 32 channels) -> the 32-bit word of their lane bits */
BNN_NEON_FN static inline uint32_t neon_pack32(uint16x8_t g0, uint16x8_t g1, uint16x8_t g2,
                                               uint16x8_t g3, uint8x16_t weights) {
    const uint8x16_t lo = vandq_u8(vcombine_u8(vmovn_u16(g0), vmovn_u16(g1)), weights);
    const uint8x16_t hi = vandq_u8(vcombine_u8(vmovn_u16(g2), vmovn_u16(g3)), weights);
    uint8x8_t r = vpadd_u8(vpadd_u8(vget_low_u8(lo), vget_high_u8(lo)),
                           vpadd_u8(vget_low_u8(hi), vget_high_u8(hi)));
    r = vpadd_u8(r, r);
    return vget_lane_u32(vreinterpret_u32_u8(r), 0);
}

#define NEON_GT(m, h) vcgtq_s16(vld1q_s16((const int16_t *)acc[m] + 8 * (h)), vld1q_s16(lim[m] + 8 * (h)))

BNN_NEON_FN static void blk_neon(const blk_t *B) {
    if (!B->neon_ok) { /* sums beyond int16 (a very wide layer): the portable kernel */
        blk_portable(B);
        return;
    }
    uint16_t acc[MR][NB] __attribute__((aligned(16)));
    const int16_t *lim[MR] = {B->lim[0], B->lim[1], B->lim[2], B->lim[3]};
    const int pairs = B->mr > 2 ? 2 : 1;
    const int nq = B->mode == MODE_LAST ? (B->nvalid + 3) / 4 : NB / 4;
    for (int rp = 0; rp < pairs; rp++) {
        /* a top (bottom) row pair skips the window row above (below) the map: zero words,
         * whose popcount(w) the second limit table leaves out */
        const int vt = B->vt[2 * rp];
        int s0 = 0, s1 = B->nseg;
        if (B->lim_skip && vt && vt == B->vt[2 * rp + 1]) {
            s0 = vt & 1;
            s1 = vt & 2 ? 2 : 3;
            lim[2 * rp] += B->lim_skip;
            lim[2 * rp + 1] += B->lim_skip;
        }
        neon_rows2(B, B->a[2 * rp] + s0 * B->segstride, B->a[2 * rp + 1] + s0 * B->segstride,
                   s1 - s0, s0 * B->seglen, nq, acc[2 * rp], acc[2 * rp + 1]);
    }
    if (B->mode == MODE_LAST) {
        for (int m = 0; m < B->mr; m++)
            for (int n = 0; n < B->nvalid; n++) B->outs[m][n] = B->base[m][n] - 2 * (int32_t)acc[m][n];
        return;
    }
    static const uint8_t bw[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t weights = vld1q_u8(bw);
    if (B->mode == MODE_POOL) {
        uint16x8_t g[4];
        for (int h = 0; h < 4; h++)
            g[h] = vandq_u16(vandq_u16(NEON_GT(0, h), NEON_GT(1, h)),
                             vandq_u16(NEON_GT(2, h), NEON_GT(3, h)));
        *B->outb[0] = neon_pack32(g[0], g[1], g[2], g[3], weights) ^ B->pos;
    } else {
        for (int m = 0; m < B->mr; m++)
            *B->outb[m] = neon_pack32(NEON_GT(m, 0), NEON_GT(m, 1), NEON_GT(m, 2), NEON_GT(m, 3),
                                      weights) ^ B->pos;
    }
}
#undef NEON_GT
#endif

/* ------------------------------------------------------------------------------------------ */
/* ISA selection                                                                               */

static int isa_supported(int isa) {
    switch (isa) {
    case ISA_PORTABLE:
        return 1;
#ifdef BNN_X86
    case ISA_POPCNT:
        return bnn_cpu_has("p");
    case ISA_AVX2:
        return bnn_cpu_has("2");
    case ISA_AVX512:
        return bnn_cpu_has("q");
#endif
#ifdef BNN_NEON
    case ISA_NEON:
        return bnn_cpu_has_neon();
#endif
    default:
        return 0;
    }
}

static blk_fn isa_fn(int isa) {
    switch (isa) {
#ifdef BNN_X86
    case ISA_POPCNT: return blk_popcnt;
    case ISA_AVX2: return blk_avx2;
    case ISA_AVX512: return blk_avx512;
#endif
#ifdef BNN_NEON
    case ISA_NEON: return blk_neon;
#endif
    default: return blk_portable;
    }
}

BNN_API int bnn_abi_version(void) { return BNN_ABI_VERSION; }
BNN_API int bnn_isa_count(void) { return ISA_COUNT; }
BNN_API const char *bnn_isa_name(int isa) {
    return (isa >= 0 && isa < ISA_COUNT) ? isa_names[isa] : "unknown";
}
BNN_API int bnn_isa_supported(int isa) { return isa >= 0 && isa < ISA_COUNT && isa_supported(isa); }
BNN_API int bnn_best_isa(void) {
    static const int order[] = {ISA_AVX512, ISA_AVX2, ISA_NEON, ISA_POPCNT, ISA_PORTABLE};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        if (isa_supported(order[i])) return order[i];
    return ISA_PORTABLE;
}
BNN_API int bnn_default_threads(void) { return bnn_online_cpus(); }

/* ------------------------------------------------------------------------------------------ */
/* engine creation: pre-transform weights, base constants, thresholds                          */

/* bit 0: first row/column (tap 0 out of bounds), bit 1: last (tap 2 out of bounds) */
static inline int border_type(int v, int size) { return (v == 0) | ((v == size - 1) << 1); }

static void *xalloc(size_t bytes) {
    void *p = NULL;
    if (bytes == 0) bytes = 64;
    bytes = (bytes + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, bytes)) return NULL;
    memset(p, 0, bytes);
    return p;
}

BNN_API void bnn_destroy(void *handle) {
    engine_t *e = (engine_t *)handle;
    if (!e) return;
    if (e->layers) {
        for (int l = 0; l < e->nlayers; l++) {
            free(e->layers[l].wt);
            free(e->layers[l].base);
            free(e->layers[l].thr);
            free(e->layers[l].pos);
            free(e->layers[l].groups);
            free(e->layers[l].wr);
            free(e->layers[l].lim);
        }
    }
    for (int i = 0; i < e->n_ws; i++) free(e->ws[i].buf);
    free(e->ws);
    free(e->layers);
    free(e->buf_off);
    pthread_mutex_destroy(&e->lock);
    free(e);
}

#ifdef BNN_NEON
static int64_t floor_div2(int64_t a) { return a >= 0 ? a / 2 : -((-a + 1) / 2); }

/* the NEON layout of the weights and the popcount limits (after base and thr are set) */
static int neon_tables(layer_t *L, const uint64_t *W, const int8_t *dirs) {
    const size_t cpad = (size_t)L->ncb * NB, ntypes = L->kind == 0 ? 16 : 1;
    const int nvar = L->kind == 0 ? 2 : 1, seglen = L->kind == 0 ? L->k / 3 : L->k;
    L->neon_ok = 64 * (int64_t)L->k <= 32767 && (L->kind == 1 || L->k % 3 == 0);
    L->wr = (uint64_t *)xalloc(cpad * L->k * sizeof(uint64_t));
    L->lim = (int16_t *)xalloc(nvar * ntypes * cpad * sizeof(int16_t));
    if (!L->wr || !L->lim) return -1;
    memcpy(L->wr, W, (size_t)L->cout * L->k * sizeof(uint64_t));
    for (int v = 0; v < nvar; v++)
        for (size_t t = 0; t < ntypes; t++)
            for (size_t c = 0; c < cpad; c++) {
                int64_t lim = 32767; /* padding channels and the last layer: unused */
                if (!L->last && (int)c < L->cout) {
                    int64_t base = L->base[t * cpad + c];
                    if (v == 1) { /* the skipped window rows' zero words add no popcount(w) */
                        const int ty = (int)t / 4;
                        for (int ky = 0; ky < 3; ky++) {
                            if (!((ky == 0 && (ty & 1)) || (ky == 2 && (ty & 2)))) continue;
                            const uint64_t *wp = W + (size_t)c * L->k + (size_t)ky * seglen;
                            for (int j = 0; j < seglen; j++) base -= 2 * __builtin_popcountll(wp[j]);
                        }
                    }
                    /* s = base - 2*popcount; d > 0: s >= T <=> popcount <= floor((base - T) / 2),
                     * bit = !(popcount > lim);  d < 0: s <= T <=> popcount >= ceil((base - T)/2),
                     * bit = popcount > lim.  Both: (popcount > lim) ^ pos. */
                    const int64_t diff = base - L->thr[c];
                    lim = dirs[c] > 0 ? floor_div2(diff) : -floor_div2(-diff) - 1;
                    if (lim < -1) lim = -1;          /* popcount >= 0 > lim: always */
                    if (lim > 32767) lim = 32767;    /* popcount <= 64 k <= 32767: never */
                }
                L->lim[((size_t)v * ntypes + t) * cpad + c] = (int16_t)lim;
            }
    return 0;
}
#endif

/*
 * desc: nlayers x 6 int32: kind (0 conv, 1 dense), in_channels (bits), out_channels, in_size,
 *       pool, last.  weights[l]: conv uint64 [cout][3][3][cin/64], dense uint64 [cout][cin/64].
 *       thresholds[l] int32 [cout], directions[l] int8 [cout] (NULL for the last layer).
 * Returns NULL on an inconsistent description or out of memory.
 */
BNN_API void *bnn_create(int nlayers, const int32_t *desc, const uint64_t *const *weights,
                         const int32_t *const *thresholds, const int8_t *const *directions) {
    if (nlayers < 1 || !desc || !weights) return NULL;
    engine_t *e = (engine_t *)calloc(1, sizeof *e);
    if (!e) return NULL;
    pthread_mutex_init(&e->lock, NULL);
    e->nlayers = nlayers;
    e->layers = (layer_t *)calloc((size_t)nlayers, sizeof(layer_t));
    e->buf_off = (size_t *)calloc((size_t)nlayers + 1, sizeof(size_t));
    if (!e->layers || !e->buf_off) goto fail;
    size_t off = 0;
    for (int l = 0; l < nlayers; l++) {
        layer_t *L = &e->layers[l];
        const int32_t *d = desc + 6 * l;
        L->kind = d[0];
        const int cin = d[1];
        L->cout = d[2];
        L->size = d[3];
        L->pool = d[4];
        L->last = d[5];
        if ((L->kind != 0 && L->kind != 1) || cin <= 0 || cin % 64 || L->cout <= 0 ||
            L->size <= 0 || (L->last != (l == nlayers - 1)))
            goto fail;
        if (!L->last && L->cout % 64) goto fail;
        if (L->kind == 1 && (L->pool || L->size != 1)) goto fail;
        if (L->pool && L->size % 2) goto fail;
        L->cin_w = cin / 64;
        L->k = L->kind == 0 ? 9 * L->cin_w : L->cin_w;
        L->ncb = (L->cout + NB - 1) / NB;
        L->out_size = L->kind == 0 ? (L->pool ? L->size / 2 : L->size) : 1;
        L->cout_w = L->cout / 64;
        if (L->kind == 0) {
            L->in_padded = 1;
            L->in_words = (size_t)(L->size + 2) * (L->size + 2) * L->cin_w;
        } else {
            L->in_padded = 0;
            L->in_words = (size_t)L->cin_w;
        }
        if (l > 0) { /* chain check */
            const layer_t *P = &e->layers[l - 1];
            size_t produced = P->kind == 0 ? (size_t)P->out_size * P->out_size * P->cout_w
                                           : (size_t)P->cout_w;
            size_t expected = L->kind == 0 ? (size_t)L->size * L->size * L->cin_w : L->in_words;
            if (produced != expected) goto fail;
            if (L->kind == 0 && (P->kind != 0 || P->out_size != L->size || P->cout_w != L->cin_w))
                goto fail;
        } else if (L->kind != 0) {
            goto fail;
        }
        e->buf_off[l] = off;
        off += (L->in_words * CHUNK + 7) & ~(size_t)7;
        if (!L->last && (!thresholds || !directions || !thresholds[l] || !directions[l])) goto fail;
        if (!weights[l]) goto fail;

        const size_t cpad = (size_t)L->ncb * NB;
        L->wt = (uint64_t *)xalloc(cpad * L->k * sizeof(uint64_t));
        L->base = (int32_t *)xalloc((L->kind == 0 ? 16 : 1) * cpad * sizeof(int32_t));
        L->thr = (int32_t *)xalloc(cpad * sizeof(int32_t));
        L->pos = (uint32_t *)xalloc(L->ncb * sizeof(uint32_t));
        if (!L->wt || !L->base || !L->thr || !L->pos) goto fail;
        const uint64_t *W = weights[l];
        for (int c = 0; c < L->cout; c++)
            for (int k = 0; k < L->k; k++)
                L->wt[((size_t)(c / NB) * L->k + k) * NB + c % NB] = W[(size_t)c * L->k + k];
        if (L->kind == 0) {
            /* base[ty*4+tx][c]: ty bit0 = first row (ky=0 invalid), bit1 = last row (ky=2) */
            for (int ty = 0; ty < 4; ty++)
                for (int tx = 0; tx < 4; tx++)
                    for (int c = 0; c < L->cout; c++) {
                        int nvalid = 0;
                        int64_t inval = 0;
                        for (int ky = 0; ky < 3; ky++)
                            for (int kx = 0; kx < 3; kx++) {
                                int bad = (ky == 0 && (ty & 1)) || (ky == 2 && (ty & 2)) ||
                                          (kx == 0 && (tx & 1)) || (kx == 2 && (tx & 2));
                                if (!bad) { nvalid++; continue; }
                                const uint64_t *wp = W + ((size_t)c * 9 + ky * 3 + kx) * L->cin_w;
                                for (int i = 0; i < L->cin_w; i++) inval += __builtin_popcountll(wp[i]);
                            }
                        L->base[(size_t)(ty * 4 + tx) * cpad + c] =
                            (int32_t)((int64_t)nvalid * cin + 2 * inval);
                    }
        } else {
            for (size_t c = 0; c < cpad; c++) L->base[c] = cin;
        }
        if (!L->last) {
            for (int c = 0; c < L->cout; c++) {
                L->thr[c] = thresholds[l][c];
                if (directions[l][c] > 0) L->pos[c / NB] |= 1u << (c % NB);
            }
        }
#ifdef BNN_NEON
        if (neon_tables(L, W, directions ? directions[l] : NULL)) goto fail;
#endif
    }
    /* pixel-group tables (the output geometry depends on the next layer's input padding) */
    for (int l = 0; l < nlayers; l++) {
        layer_t *L = &e->layers[l];
        if (L->kind != 0) continue;
        const layer_t *N = &e->layers[l + 1]; /* a conv is never last */
        const int H = L->size, pw = H + 2, cw = L->cin_w, So = L->out_size, cwo = L->cout_w;
        const int po = N->in_padded ? 1 : 0, spo = So + 2 * po;
        L->ngroups = L->pool ? (int64_t)(H / 2) * (H / 2) : ((int64_t)H * H + MR - 1) / MR;
        L->groups = (struct group *)xalloc((size_t)L->ngroups * sizeof(struct group));
        if (!L->groups) goto fail;
        for (int64_t g = 0; g < L->ngroups; g++) {
            struct group *G = &L->groups[g];
            if (L->pool) {
                const int py = (int)(g / (H / 2)), px = (int)(g % (H / 2));
                G->mr = MR;
                for (int m = 0; m < MR; m++) {
                    const int y = 2 * py + (m >> 1), x = 2 * px + (m & 1);
                    G->a[m] = (int32_t)(((int64_t)y * pw + x) * cw);
                    G->t[m] = border_type(y, H) * 4 + border_type(x, H);
                    G->o[m] = (int32_t)(2 * (((int64_t)(py + po) * spo + px + po) * cwo));
                }
            } else {
                G->mr = 0;
                for (int m = 0; m < MR; m++) {
                    int64_t p = g * MR + m;
                    if (p < (int64_t)H * H) G->mr++; else p = g * MR;
                    const int y = (int)(p / H), x = (int)(p % H);
                    G->a[m] = (int32_t)(((int64_t)y * pw + x) * cw);
                    G->t[m] = border_type(y, H) * 4 + border_type(x, H);
                    G->o[m] = (int32_t)(2 * (((int64_t)(y + po) * spo + x + po) * cwo));
                }
            }
        }
    }
    e->ws_words = off;
    e->in_size = e->layers[0].size;
    e->in_cw = e->layers[0].cin_w;
    e->n_classes = e->layers[nlayers - 1].cout;
    return e;
fail:
    bnn_destroy(e);
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* running                                                                                     */

/* Barrier: spin briefly (a layer of one image takes tens of microseconds; a futex wake-up
 * costs several), then sleep on a condition variable. Portable (macOS has no
 * pthread_barrier_t). */
#ifndef BNN_SPIN
#define BNN_SPIN 256
#endif
static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
    __asm__ __volatile__("yield");
#endif
}

typedef struct {
    pthread_mutex_t m;
    pthread_cond_t c;
    int count, waiting, spin;
    unsigned gen;
} barrier_t;

static int barrier_init(barrier_t *b, int count, int spin) {
    b->count = count;
    b->spin = spin;
    b->waiting = 0;
    b->gen = 0;
    if (pthread_mutex_init(&b->m, NULL)) return -1;
    if (pthread_cond_init(&b->c, NULL)) { pthread_mutex_destroy(&b->m); return -1; }
    return 0;
}

static void barrier_destroy(barrier_t *b) {
    pthread_cond_destroy(&b->c);
    pthread_mutex_destroy(&b->m);
}

static void barrier_wait(barrier_t *b) {
    pthread_mutex_lock(&b->m);
    const unsigned g = b->gen;
    if (++b->waiting == b->count) {
        b->waiting = 0;
        __atomic_store_n(&b->gen, g + 1, __ATOMIC_RELEASE);
        pthread_cond_broadcast(&b->c);
        pthread_mutex_unlock(&b->m);
        return;
    }
    pthread_mutex_unlock(&b->m);
    for (int i = 0; i < b->spin; i++) {
        if (__atomic_load_n(&b->gen, __ATOMIC_ACQUIRE) != g) return;
        cpu_relax();
    }
    pthread_mutex_lock(&b->m);
    while (__atomic_load_n(&b->gen, __ATOMIC_ACQUIRE) == g) pthread_cond_wait(&b->c, &b->m);
    pthread_mutex_unlock(&b->m);
}

typedef struct {
    engine_t *e;
    blk_fn blk;
    const uint64_t *x;
    int32_t *out;
    int64_t n;
    int nthreads;
    barrier_t barrier;
    pthread_mutex_t gate;
    pthread_cond_t gate_cv;
    int go; /* 0 wait, 1 run, -1 abort */
} run_t;

static inline void range_split(int64_t total, int tid, int nthr, int64_t *b, int64_t *end) {
    *b = total * tid / nthr;
    *end = total * (tid + 1) / nthr;
}

static inline void sync_threads(run_t *R, int nthr) {
    if (nthr > 1) barrier_wait(&R->barrier);
}

#ifdef BNN_MARKERS
#include <sys/syscall.h>
#endif
#ifdef BNN_PROFILE
#include <time.h>
double bnn_prof_ns[64];
#endif

/* one conv layer for images [0, nimg) of a chunk; items (image, channel block, pixel group)
 * split across nthr threads */
static void run_conv(const run_t *R, const layer_t *L, const uint64_t *in, size_t in_stride,
                     uint64_t *out, size_t out_stride, int nimg, int tid, int nthr) {
    const int cw = L->cin_w;
    const int64_t ngroups = L->ngroups;
    const int64_t items = (int64_t)nimg * L->ncb * ngroups;
    const size_t cpad = (size_t)L->ncb * NB;
    int64_t i0, i1;
    range_split(items, tid, nthr, &i0, &i1);
    if (i0 >= i1) return;
    blk_t B;
    B.nseg = 3;
    B.seglen = 3 * cw;
    B.segstride = (ptrdiff_t)(L->size + 2) * cw;
    B.mode = L->pool ? MODE_POOL : MODE_BITS;
    B.nvalid = 0;
    B.neon_ok = L->neon_ok;
    B.wr = NULL;
    B.k = L->k;
    B.lim_skip = 16 * (int)cpad;
    for (int m = 0; m < MR; m++) B.lim[m] = NULL;
    /* decode the first item once, then step through (g, cb, img) without divisions */
    int64_t g = i0 % ngroups;
    int cb = (int)((i0 / ngroups) % L->ncb);
    int img = (int)(i0 / (ngroups * L->ncb));
    for (int64_t it = i0; it < i1; it++) {
        const uint64_t *src = in + (size_t)img * in_stride;
        uint32_t *dst = (uint32_t *)(out + (size_t)img * out_stride) + (cb & 1) + 2 * (cb >> 1);
        const int32_t *base = L->base + (size_t)cb * NB;
        const struct group *G = &L->groups[g];
        B.wt = L->wt + (size_t)cb * L->k * NB;
        B.thr = L->thr + (size_t)cb * NB;
        B.pos = L->pos[cb];
        B.mr = G->mr;
        if (L->wr) B.wr = L->wr + (size_t)cb * NB * L->k;
        for (int m = 0; m < MR; m++) {
            B.a[m] = src + G->a[m];
            B.base[m] = base + (size_t)G->t[m] * cpad;
            B.outb[m] = dst + G->o[m];
            if (L->lim) B.lim[m] = L->lim + (size_t)G->t[m] * cpad + (size_t)cb * NB;
            B.vt[m] = (int8_t)(G->t[m] / 4);
        }
        R->blk(&B);
        if (++g == ngroups) {
            g = 0;
            if (++cb == L->ncb) { cb = 0; img++; }
        }
    }
}

/* one dense layer for a chunk of nimg images: rows = images */
static void run_dense(const run_t *R, const layer_t *L, const uint64_t *in, size_t in_stride,
                      uint64_t *out, size_t out_stride, int32_t *scores, int nimg, int tid,
                      int nthr) {
    const int64_t ngroups = (nimg + MR - 1) / MR;
    const int64_t items = (int64_t)L->ncb * ngroups;
    int64_t i0, i1;
    range_split(items, tid, nthr, &i0, &i1);
    blk_t B;
    B.nseg = 1;
    B.seglen = L->k;
    B.segstride = 0;
    B.mode = L->last ? MODE_LAST : MODE_BITS;
    B.neon_ok = L->neon_ok;
    B.wr = NULL;
    B.k = L->k;
    B.lim_skip = 0;
    for (int m = 0; m < MR; m++) B.vt[m] = 0;
    for (int64_t it = i0; it < i1; it++) {
        const int g = (int)(it % ngroups);
        const int cb = (int)(it / ngroups);
        B.wt = L->wt + (size_t)cb * L->k * NB;
        B.thr = L->thr + (size_t)cb * NB;
        B.pos = L->pos[cb];
        B.nvalid = L->cout - cb * NB < NB ? L->cout - cb * NB : NB;
        if (L->wr) B.wr = L->wr + (size_t)cb * NB * L->k;
        int mr = 0;
        for (int m = 0; m < MR; m++) {
            int img = g * MR + m;
            if (img < nimg) mr++; else img = g * MR;
            B.a[m] = in + (size_t)img * in_stride;
            B.base[m] = L->base + (size_t)cb * NB;
            B.lim[m] = L->lim ? L->lim + (size_t)cb * NB : NULL;
            if (L->last)
                B.outs[m] = scores + (size_t)img * L->cout + (size_t)cb * NB;
            else
                B.outb[m] = (uint32_t *)(out + (size_t)img * out_stride) + (cb & 1) + 2 * (cb >> 1);
        }
        B.mr = mr;
        R->blk(&B);
    }
}

/* images [i0, i0+nimg) (nimg <= CHUNK) through every layer, with workspace ws */
static void run_chunk(run_t *R, workspace_t *ws, int64_t i0, int nimg, int tid, int nthr) {
    engine_t *e = R->e;
    /* stage the packed input into layer 0's padded buffer */
    {
        const layer_t *L = &e->layers[0];
        const int S = L->size, cw = L->cin_w;
        uint64_t *buf = ws->buf + e->buf_off[0];
        int64_t a, b;
        range_split((int64_t)nimg * S, tid, nthr, &a, &b);
        for (int64_t r = a; r < b; r++) {
            const int img = (int)(r / S), y = (int)(r % S);
            const uint64_t *src = R->x + ((size_t)(i0 + img) * S + y) * S * cw;
            uint64_t *dst = buf + (size_t)img * L->in_words + ((size_t)(y + 1) * (S + 2) + 1) * cw;
            memcpy(dst, src, (size_t)S * cw * sizeof(uint64_t));
        }
        sync_threads(R, nthr);
    }
    for (int l = 0; l < e->nlayers; l++) {
        const layer_t *L = &e->layers[l];
        const uint64_t *in = ws->buf + e->buf_off[l];
        uint64_t *out = NULL;
        size_t out_stride = 0;
        if (!L->last) {
            out = ws->buf + e->buf_off[l + 1];
            out_stride = e->layers[l + 1].in_words;
        }
#ifdef BNN_PROFILE
        struct timespec t0, t1;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
#endif
#ifdef BNN_MARKERS /* tests/arm harness builds only: per-layer instruction counts */
        syscall(4093, 100 + l, 0);
#endif
        if (L->kind == 0)
            run_conv(R, L, in, L->in_words, out, out_stride, nimg, tid, nthr);
        else
            run_dense(R, L, in, L->in_words, out, out_stride, R->out + (size_t)i0 * L->cout,
                      nimg, tid, nthr);
#ifdef BNN_PROFILE
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
        if (tid == 0) bnn_prof_ns[l] += (t1.tv_sec - t0.tv_sec) * 1000000000.0 + (t1.tv_nsec - t0.tv_nsec);
#endif
#ifdef BNN_MARKERS
        syscall(4093, 100 + l, 1);
#endif
        /* no barrier after the last layer: the next chunk's staging barrier orders it */
        if (!L->last) sync_threads(R, nthr);
    }
}

static void run_range(run_t *R, workspace_t *ws, int64_t a, int64_t b, int tid, int nthr) {
    for (int64_t i = a; i < b; i += CHUNK) {
        const int n = (int)(b - i < CHUNK ? b - i : CHUNK);
        run_chunk(R, ws, i, n, tid, nthr);
    }
}

typedef struct {
    run_t *R;
    int tid;
} worker_arg_t;

static void *worker(void *p) {
    worker_arg_t *wa = (worker_arg_t *)p;
    run_t *R = wa->R;
    const int T = R->nthreads, tid = wa->tid;
    if (T > 1) { /* start gate: all threads exist, or none runs */
        pthread_mutex_lock(&R->gate);
        while (!R->go) pthread_cond_wait(&R->gate_cv, &R->gate);
        pthread_mutex_unlock(&R->gate);
        if (R->go < 0) return NULL;
    }
    /* phase 1: whole images per thread */
    const int64_t n1 = (R->n / T) * T;
    if (n1 > 0) {
        int64_t a, b;
        range_split(n1, tid, T, &a, &b);
        run_range(R, &R->e->ws[tid], a, b, 0, 1);
    }
    /* phase 2: the remainder, every layer split across all threads */
    if (n1 < R->n) {
        sync_threads(R, T);
        run_range(R, &R->e->ws[0], n1, R->n, tid, T);
    }
    return NULL;
}

static void open_gate(run_t *R, int value) {
    pthread_mutex_lock(&R->gate);
    R->go = value;
    pthread_cond_broadcast(&R->gate_cv);
    pthread_mutex_unlock(&R->gate);
}

/*
 * x: packed uint64 [n][S][S][C/64] (C-contiguous); out: int32 [n][n_classes].
 * threads <= 0: one per online CPU.  isa < 0: best supported.
 * Returns 0, or -1 bad arguments, -2 ISA not supported here, -3 out of memory,
 * -4 thread creation failed.
 */
BNN_API int bnn_run(void *handle, const uint64_t *x, int64_t n, int32_t *out, int threads,
                    int isa) {
    engine_t *e = (engine_t *)handle;
    if (!e || n < 0 || (n > 0 && (!x || !out))) return -1;
    if (n == 0) return 0;
    if (isa < 0) isa = bnn_best_isa();
    if (isa >= ISA_COUNT || !isa_supported(isa)) return -2;
    if (threads <= 0) threads = bnn_default_threads();
    if (threads > 256) threads = 256;
    /* no point in more threads than there are work items in a layer of one image */
    if ((int64_t)threads > n * 64) threads = (int)(n * 64);
    pthread_mutex_lock(&e->lock);
    int rc = 0;
    if (e->n_ws < threads) {
        workspace_t *nw = (workspace_t *)realloc(e->ws, (size_t)threads * sizeof(workspace_t));
        if (!nw) { rc = -3; goto done; }
        e->ws = nw;
        while (e->n_ws < threads) {
            workspace_t *w = &e->ws[e->n_ws];
            w->words = e->ws_words;
            w->buf = (uint64_t *)xalloc(e->ws_words * sizeof(uint64_t)); /* zero borders */
            if (!w->buf) { rc = -3; goto done; }
            e->n_ws++;
        }
    }
    {
        run_t R;
        R.e = e;
        R.blk = isa_fn(isa);
        R.x = x;
        R.out = out;
        R.n = n;
        R.nthreads = threads;
        /* spinning only helps when every thread has a CPU of its own */
        if (threads > 1 && barrier_init(&R.barrier, threads,
                                         threads <= bnn_default_threads() ? BNN_SPIN : 0)) {
            rc = -4;
            goto done;
        }
        worker_arg_t args[256];
        pthread_t tids[256];
        int started = 1;
        R.go = 0;
        pthread_mutex_init(&R.gate, NULL);
        pthread_cond_init(&R.gate_cv, NULL);
        for (int t = 0; t < threads; t++) { args[t].R = &R; args[t].tid = t; }
        for (int t = 1; t < threads; t++) {
            if (pthread_create(&tids[t], NULL, worker, &args[t])) break;
            started++;
        }
        if (started < threads) {
            open_gate(&R, -1);
            for (int t = 1; t < started; t++) pthread_join(tids[t], NULL);
            rc = -4;
        } else {
            if (threads > 1) open_gate(&R, 1);
            worker(&args[0]);
            for (int t = 1; t < threads; t++) pthread_join(tids[t], NULL);
        }
        pthread_cond_destroy(&R.gate_cv);
        pthread_mutex_destroy(&R.gate);
        if (threads > 1) barrier_destroy(&R.barrier);
    }
done:
    pthread_mutex_unlock(&e->lock);
    return rc;
}
