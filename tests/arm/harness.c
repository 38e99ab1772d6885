/*
 * A C driver of the native engine for tests under emulation (qemu-arm / qemu-aarch64): it is
 * compiled together with pynq_bnn/backends/cpu/bnn_engine.c, bnn_layer1.c and bnn_resize.c by
 * a cross compiler (tests/test_arm_neon.py), reads a job written by Python, runs layer 1, the
 * binary layers or the area resize with a forced ISA, and writes the raw result for Python to
 * compare with the numpy reference.  Around the measured call it issues the marker syscall of the
 * instruction-count plugin (benchmarks/arm/insn_count.c: syscall(4093, id, 0 | 1)); without
 * the plugin the kernel answers ENOSYS and nothing happens.
 *
 *   harness JOB OUT
 *
 * JOB (little-endian): "BNNJ", int32 mode (1 layer 1, 2 binary layers, 3 resize), isa, threads,
 *   reps,
 *   mode 1: int32 c1, size, n; int8 weights[c1*27]; int32 thresholds[c1]; int8 dirs[c1];
 *           uint8 images[n*size*size*3]                      -> OUT: uint64 [n][S][S][c1/64]
 *   mode 2: int32 nlayers; int32 desc[nlayers*6] (bnn_create); for each layer: uint64 weights
 *           (cout * words per output), then int32 thresholds[cout], int8 dirs[cout] unless
 *           last; int32 n; uint64 packed[n * S*S*C1/64]       -> OUT: int32 [n][n_classes]
 *   mode 3: int32 h, w, c, n, stride (bytes per row >= w*c); uint8 image[h*stride]
 *           (bnn_fit_area_u8_isa, bnn_resize.c)                -> OUT: uint8 [n][n][c]
 * The run is repeated `reps` times (markers 1..reps); the first is the result.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

void *bnn_create(int, const int32_t *, const uint64_t *const *, const int32_t *const *,
                 const int8_t *const *);
int bnn_run(void *, const uint64_t *, int64_t, int32_t *, int, int);
void bnn_destroy(void *);
int bnn_isa_supported(int);
void *bnn_l1_create(int, int, const int8_t *, const int32_t *, const int8_t *);
int bnn_l1_run(void *, const uint8_t *, int64_t, uint64_t *, int, int);
void bnn_l1_destroy(void *);
int bnn_l1_isa_supported(int);
size_t bnn_fit_area_work_bytes(int, int, int, int);
int bnn_fit_area_u8_isa(const uint8_t *, int, int, int, ptrdiff_t, int, uint8_t *, void *, int);

static void mark(long id, long kind) { syscall(4093, id, kind); }

static FILE *in;
static void *take(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p || fread(p, 1, bytes, in) != bytes) {
        fprintf(stderr, "harness: short job file\n");
        exit(2);
    }
    return p;
}
static int32_t take_i32(void) {
    int32_t v;
    memcpy(&v, take(4), 4);
    return v;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: harness JOB OUT\n");
        return 2;
    }
    in = fopen(argv[1], "rb");
    if (!in) {
        perror(argv[1]);
        return 2;
    }
    char magic[4];
    if (fread(magic, 1, 4, in) != 4 || memcmp(magic, "BNNJ", 4)) {
        fprintf(stderr, "harness: not a job file\n");
        return 2;
    }
    const int mode = take_i32(), isa = take_i32(), threads = take_i32(), reps = take_i32();
    void *result = NULL;
    size_t result_bytes = 0;
    if (mode == 1) {
        const int c1 = take_i32(), size = take_i32(), n = take_i32();
        const int8_t *w = take((size_t)c1 * 27);
        const int32_t *t = take((size_t)c1 * 4);
        const int8_t *d = take((size_t)c1);
        const uint8_t *img = take((size_t)n * size * size * 3);
        if (!bnn_l1_isa_supported(isa)) {
            fprintf(stderr, "harness: layer-1 ISA %d not supported here\n", isa);
            return 3;
        }
        void *h = bnn_l1_create(c1, size, w, t, d);
        if (!h) {
            fprintf(stderr, "harness: bnn_l1_create refused the job\n");
            return 4;
        }
        result_bytes = (size_t)n * size * size * (c1 / 64) * 8;
        result = malloc(result_bytes);
        for (int r = 0; r < reps; r++) {
            mark(r + 1, 0);
            const int rc = bnn_l1_run(h, img, n, (uint64_t *)result, threads, isa);
            mark(r + 1, 1);
            if (rc) {
                fprintf(stderr, "harness: bnn_l1_run returned %d\n", rc);
                return 5;
            }
        }
        bnn_l1_destroy(h);
    } else if (mode == 2) {
        const int nl = take_i32();
        const int32_t *desc = take((size_t)nl * 6 * 4);
        const uint64_t **wp = calloc(nl, sizeof *wp);
        const int32_t **tp = calloc(nl, sizeof *tp);
        const int8_t **dp = calloc(nl, sizeof *dp);
        for (int l = 0; l < nl; l++) {
            const int32_t *dd = desc + 6 * l;
            const int kind = dd[0], cin = dd[1], cout = dd[2], last = dd[5];
            const size_t words = (size_t)cout * (kind == 0 ? 9 : 1) * (cin / 64);
            wp[l] = take(words * 8);
            if (!last) {
                tp[l] = take((size_t)cout * 4);
                dp[l] = take((size_t)cout);
            }
        }
        const int n = take_i32();
        const int S = desc[3], cw = desc[1] / 64;
        const uint64_t *x = take((size_t)n * S * S * cw * 8);
        if (!bnn_isa_supported(isa)) {
            fprintf(stderr, "harness: ISA %d not supported here\n", isa);
            return 3;
        }
        void *h = bnn_create(nl, desc, wp, tp, dp);
        if (!h) {
            fprintf(stderr, "harness: bnn_create refused the job\n");
            return 4;
        }
        const int ncls = desc[6 * (nl - 1) + 2];
        result_bytes = (size_t)n * ncls * 4;
        result = malloc(result_bytes);
        for (int r = 0; r < reps; r++) {
            mark(r + 1, 0);
            const int rc = bnn_run(h, x, n, (int32_t *)result, threads, isa);
            mark(r + 1, 1);
            if (rc) {
                fprintf(stderr, "harness: bnn_run returned %d\n", rc);
                return 5;
            }
        }
        bnn_destroy(h);
    } else if (mode == 3) {
        const int h = take_i32(), w = take_i32(), c = take_i32(), n = take_i32();
        const int stride = take_i32();
        const uint8_t *img = take((size_t)h * stride);
        void *work = malloc(bnn_fit_area_work_bytes(h, w, c, n) + 8);
        result_bytes = (size_t)n * n * c;
        result = malloc(result_bytes);
        for (int r = 0; r < reps; r++) {
            mark(r + 1, 0);
            const int rc = bnn_fit_area_u8_isa(img, h, w, c, stride, n, result, work, isa);
            mark(r + 1, 1);
            if (rc) {
                fprintf(stderr, "harness: bnn_fit_area_u8_isa returned %d\n", rc);
                return 5;
            }
        }
        free(work);
    } else {
        fprintf(stderr, "harness: unknown mode %d\n", mode);
        return 2;
    }
    FILE *o = fopen(argv[2], "wb");
    if (!o || fwrite(result, 1, result_bytes, o) != result_bytes || fclose(o)) {
        perror(argv[2]);
        return 2;
    }
    return 0;
}
