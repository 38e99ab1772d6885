/*
 * pynq-bnn native engine: what both translation units (bnn_engine.c, bnn_layer1.c) share --
 * CPU feature detection, the per-function target attributes, the ISA codes, thread helpers.
 *
 * Nothing here is compiled with global vector flags: the build passes no -march/-mfpu, every
 * vector function carries its own __attribute__((target(...))), and the path is chosen at run
 * time, so the portable code stays portable (an ARM core without NEON, an x86 without AVX2).
 *
 *   x86:     AVX2 / AVX-512 functions with target("avx2") / target("avx512..."), checked with
 *            __builtin_cpu_supports (which also checks that the OS saves the vector state).
 *   AArch32: NEON functions with target("fpu=neon") (arm_neon.h included under the same
 *            pragma), checked with getauxval(AT_HWCAP) & HWCAP_NEON; needs ARMv7-A or later
 *            and a float ABI that passes vector registers (hard or softfp).  Any 32-bit ARM
 *            userland (armv7l, armv8l) gets these functions whatever platform.machine() says.
 *   AArch64: NEON is architectural.
 */
#ifndef BNN_CPU_H
#define BNN_CPU_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "pynq-bnn's packed format is little-endian; this engine assumes a little-endian CPU"
#endif

#define BNN_API __attribute__((visibility("default")))

/* ISA codes: the Python side (engine.py ISA_CODES) uses the same numbers. */
enum { ISA_PORTABLE = 0, ISA_POPCNT = 1, ISA_AVX2 = 2, ISA_AVX512 = 3, ISA_NEON = 4, ISA_COUNT = 5 };

#if defined(__x86_64__) || defined(__i386__)
#define BNN_X86 1
#include <immintrin.h>
#endif

#if defined(__aarch64__)
#define BNN_NEON 1
#define BNN_NEON_FN
#include <arm_neon.h>
#elif defined(__arm__) && defined(__ARM_ARCH) && __ARM_ARCH >= 7 && !defined(__SOFTFP__) && \
    (!defined(__ARM_ARCH_PROFILE) || __ARM_ARCH_PROFILE == 'A') &&                              \
    (defined(__ARM_NEON) || !defined(__clang__))
#define BNN_NEON 1
#define BNN_NEON32 1
#ifdef __ARM_NEON
#define BNN_NEON_FN /* the whole file is already compiled for NEON */
#include <arm_neon.h>
#else
#define BNN_NEON_FN __attribute__((target("fpu=neon")))
#pragma GCC push_options
#pragma GCC target("fpu=neon")
#include <arm_neon.h>
#pragma GCC pop_options
#endif
#if defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_NEON
#define HWCAP_NEON (1 << 12)
#endif
#endif
#endif

static inline int bnn_cpu_has_neon(void) {
#if defined(__aarch64__)
    return 1;
#elif defined(BNN_NEON32) && defined(__linux__)
    return (getauxval(AT_HWCAP) & HWCAP_NEON) != 0;
#elif defined(BNN_NEON32) && defined(__ARM_NEON)
    return 1; /* not Linux, but the toolchain itself targets NEON */
#else
    return 0;
#endif
}

#ifdef BNN_X86
static inline int bnn_cpu_has(const char *what) {
    __builtin_cpu_init();
    /* __builtin_cpu_supports needs a string literal: spell the few we use */
    if (what[0] == 'p') return __builtin_cpu_supports("popcnt");
    if (what[0] == '2') return __builtin_cpu_supports("avx2");
    if (what[0] == 'q') /* AVX-512 VPOPCNTDQ: the binary engine */
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq");
    if (what[0] == 'v') /* AVX-512 VNNI + BW: layer 1 */
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vnni");
    return 0;
}
#endif

static inline int bnn_online_cpus(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}

static inline void bnn_range_split(int64_t total, int tid, int nthr, int64_t *b, int64_t *end) {
    *b = total * tid / nthr;
    *end = total * (tid + 1) / nthr;
}

/* bit 0: first row/column (tap 0 out of bounds), bit 1: last (tap 2 out of bounds) */
static inline int bnn_border_type(int v, int size) { return (v == 0) | ((v == size - 1) << 1); }

#endif /* BNN_CPU_H */
