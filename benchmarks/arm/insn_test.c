/* insn_test.c: a guest program with known instruction counts, to check insn_count.so.
 * Built inside the armhf rootfs (its gcc), run under qemu-arm -plugin; run.sh compares.
 *   region 1: spin(N) on the main thread          -> 3 N instructions (+ a few)
 *   region 2: two threads, spin(2N) each, started and joined inside the region
 *                                                 -> 12 N (+ thread start/join overhead)
 *   region 3: empty                               -> the cost of one marker pair
 * Prints the marker syscall's return value and errno (ENOSYS expected). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MARKER 4093
#define N 1000000u

static void spin(unsigned n)
{
    /* 3 instructions per iteration, in ARM or Thumb-2 state alike */
    __asm__ volatile("1: subs %0, %0, #1\n\t"
                     "nop\n\t"
                     "bne 1b\n\t" : "+r"(n) : : "cc");
}

static void *worker(void *arg)
{
    spin((unsigned)(size_t)arg);
    return NULL;
}

int main(void)
{
    long r = syscall(MARKER, 1, 0);
    int e = errno;
    spin(N);
    syscall(MARKER, 1, 1);

    pthread_t t[2];
    syscall(MARKER, 2, 0);
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, worker, (void *)(size_t)(2 * N));
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    syscall(MARKER, 2, 1);

    syscall(MARKER, 3, 0);
    syscall(MARKER, 3, 1);
    printf("{\"N\": %u, \"marker_return\": %ld, \"marker_errno\": \"%s\"}\n", N, r, strerror(e));
    return 0;
}
