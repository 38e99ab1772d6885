/*
 * insn_count.c: a QEMU TCG plugin (qemu-user, QEMU 7.2 API, plugin version 1) that counts
 * executed guest instructions per vCPU and snapshots them at *markers*.
 *
 * Build (host gcc, no QEMU headers needed: the API is declared below):
 *     gcc -O2 -shared -fPIC -fvisibility=hidden -o insn_count.so insn_count.c
 * Run:
 *     qemu-arm -plugin ./insn_count.so,out=/tmp/counts.json[,marker=4093] prog args...
 *
 * Counting: one callback per executed translation block adds the block's instruction count to
 * the counter of the vCPU that runs it. Under qemu-user every guest thread is a vCPU running in
 * its own host thread, and each counter is written only by its own thread (relaxed atomic
 * stores, so other threads can read it without a data race); no shared inline add, which would
 * lose counts when two guest threads run at once. A block is counted when it starts, so a block
 * left early (a fault) counts whole: the error is a few instructions per exception.
 *
 * Markers: the guest calls syscall(MARKER, id, kind) with an unused syscall number (default
 * 4093); qemu answers ENOSYS, as a real kernel would, so the same guest code runs unchanged
 * without the plugin or on a board. The syscall callback records (id, kind, total over all
 * vCPUs, per-vCPU counts). The snapshot reads the other threads' counters while they may be
 * running; take markers where worker threads are idle (before start / after join) for exact
 * figures. kind is free for the guest (stages.py: 0 = begin, 1 = end).
 *
 * Output (JSON, written at exit): {"marker_syscall": N, "events": [{"id", "kind", "vcpu",
 * "total", "per_vcpu": [...]}, ...], "final_total", "final_per_vcpu", "n_vcpus_seen",
 * "tb_translations"}.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdbool.h>
#include <pthread.h>

/* ---- the QEMU 7.2 plugin API, declared by hand (include/qemu/qemu-plugin.h) ---- */
#define QEMU_PLUGIN_EXPORT __attribute__((visibility("default")))
typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t {
    const char *target_name;
    struct { int min; int cur; } version;
    bool system_emulation;
    union { struct { int smp_vcpus; int max_vcpus; } system; };
} qemu_info_t;
struct qemu_plugin_tb;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
typedef void (*qemu_plugin_vcpu_simple_cb_t)(qemu_plugin_id_t id, unsigned int vcpu_index);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_syscall_cb_t)(qemu_plugin_id_t id, unsigned int vcpu_index,
                                              int64_t num, uint64_t a1, uint64_t a2, uint64_t a3,
                                              uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7,
                                              uint64_t a8);
extern void qemu_plugin_register_vcpu_init_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_simple_cb_t cb);
extern void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
extern void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, qemu_plugin_vcpu_udata_cb_t cb,
                                                 enum qemu_plugin_cb_flags flags, void *userdata);
extern size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
extern void qemu_plugin_register_vcpu_syscall_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_syscall_cb_t cb);
extern void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
extern void qemu_plugin_outs(const char *string);
#define QEMU_PLUGIN_VERSION 1  /* QEMU 7.2 accepts 0..1 */
QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;
/* ---- end of the API ---- */

#define MAX_VCPUS 1024  /* vCPU indices are reused after a thread exits; more is an error */

typedef struct { uint64_t n; char pad[56]; } counter_t;  /* one cache line each */
static counter_t counts[MAX_VCPUS];
static unsigned int vcpus_seen;  /* highest index + 1, atomically raised */
static uint64_t overflow;        /* blocks run by a vCPU index >= MAX_VCPUS (atomic add) */
static uint64_t translations;

typedef struct {
    uint64_t id, kind, total;
    unsigned int vcpu, n;
    uint64_t *per_vcpu;
} event_t;
static event_t *events;
static size_t n_events, cap_events;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t marker_nr = 4093;
static char out_path[4096] = "insn_count.json";

static void raise_seen(unsigned int vcpu)
{
    unsigned int seen = __atomic_load_n(&vcpus_seen, __ATOMIC_RELAXED);
    while (vcpu + 1 > seen &&
           !__atomic_compare_exchange_n(&vcpus_seen, &seen, vcpu + 1, true,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
}

static void vcpu_init(qemu_plugin_id_t id, unsigned int vcpu)
{
    (void)id;
    raise_seen(vcpu < MAX_VCPUS ? vcpu : MAX_VCPUS - 1);
}

static void tb_exec(unsigned int vcpu, void *udata)
{
    uint64_t n = (uint64_t)(uintptr_t)udata;
    if (vcpu < MAX_VCPUS) {
        /* only this vCPU's thread writes its counter: load + store, no lock */
        uint64_t v = __atomic_load_n(&counts[vcpu].n, __ATOMIC_RELAXED);
        __atomic_store_n(&counts[vcpu].n, v + n, __ATOMIC_RELAXED);
    } else {
        __atomic_fetch_add(&overflow, n, __ATOMIC_RELAXED);
    }
}

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    __atomic_fetch_add(&translations, 1, __ATOMIC_RELAXED);
    qemu_plugin_register_vcpu_tb_exec_cb(tb, tb_exec, QEMU_PLUGIN_CB_NO_REGS, (void *)(uintptr_t)n);
}

static uint64_t snapshot(uint64_t *per, unsigned int *n_out)
{
    unsigned int n = __atomic_load_n(&vcpus_seen, __ATOMIC_RELAXED);
    uint64_t total = __atomic_load_n(&overflow, __ATOMIC_RELAXED);
    for (unsigned int i = 0; i < n; i++) {
        uint64_t v = __atomic_load_n(&counts[i].n, __ATOMIC_RELAXED);
        if (per) per[i] = v;
        total += v;
    }
    *n_out = n;
    return total;
}

static void vcpu_syscall(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, uint64_t a1,
                         uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6,
                         uint64_t a7, uint64_t a8)
{
    (void)id; (void)a3; (void)a4; (void)a5; (void)a6; (void)a7; (void)a8;
    if (num != marker_nr) return;
    raise_seen(vcpu < MAX_VCPUS ? vcpu : MAX_VCPUS - 1);
    uint64_t *per = calloc(MAX_VCPUS, sizeof(uint64_t));
    if (!per) return;
    unsigned int n;
    uint64_t total = snapshot(per, &n);
    pthread_mutex_lock(&lock);
    if (n_events == cap_events) {
        size_t cap = cap_events ? 2 * cap_events : 256;
        event_t *e = realloc(events, cap * sizeof(event_t));
        if (!e) { pthread_mutex_unlock(&lock); free(per); return; }
        events = e;
        cap_events = cap;
    }
    events[n_events++] = (event_t){ .id = a1, .kind = a2, .total = total, .vcpu = vcpu,
                                    .n = n, .per_vcpu = per };
    pthread_mutex_unlock(&lock);
}

static void write_list(FILE *f, const uint64_t *v, unsigned int n)
{
    fputc('[', f);
    for (unsigned int i = 0; i < n; i++) fprintf(f, "%s%llu", i ? ", " : "", (unsigned long long)v[i]);
    fputc(']', f);
}

static void at_exit(qemu_plugin_id_t id, void *p)
{
    (void)id; (void)p;
    static uint64_t per[MAX_VCPUS];
    unsigned int n;
    uint64_t total = snapshot(per, &n);
    FILE *f = fopen(out_path, "w");
    if (!f) {
        qemu_plugin_outs("insn_count: cannot open the output file\n");
        return;
    }
    pthread_mutex_lock(&lock);
    fprintf(f, "{\"plugin\": \"insn_count\", \"marker_syscall\": %lld,\n \"events\": [",
            (long long)marker_nr);
    for (size_t i = 0; i < n_events; i++) {
        event_t *e = &events[i];
        fprintf(f, "%s\n  {\"id\": %llu, \"kind\": %llu, \"vcpu\": %u, \"total\": %llu, \"per_vcpu\": ",
                i ? "," : "", (unsigned long long)e->id, (unsigned long long)e->kind, e->vcpu,
                (unsigned long long)e->total);
        write_list(f, e->per_vcpu, e->n);
        fputc('}', f);
    }
    fprintf(f, "],\n \"final_total\": %llu, \"final_per_vcpu\": ", (unsigned long long)total);
    write_list(f, per, n);
    fprintf(f, ", \"n_vcpus_seen\": %u, \"overflow\": %llu, \"tb_translations\": %llu}\n", n,
            (unsigned long long)__atomic_load_n(&overflow, __ATOMIC_RELAXED),
            (unsigned long long)__atomic_load_n(&translations, __ATOMIC_RELAXED));
    pthread_mutex_unlock(&lock);
    fclose(f);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                           int argc, char **argv)
{
    if (info->system_emulation) {
        qemu_plugin_outs("insn_count: written for qemu-user (one vCPU per guest thread)\n");
    }
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0) {
            snprintf(out_path, sizeof out_path, "%s", argv[i] + 4);
        } else if (strncmp(argv[i], "marker=", 7) == 0) {
            marker_nr = strtoll(argv[i] + 7, NULL, 0);
        } else {
            fprintf(stderr, "insn_count: unknown argument %s (out=FILE, marker=N)\n", argv[i]);
            return -1;
        }
    }
    qemu_plugin_register_vcpu_init_cb(id, vcpu_init);
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_vcpu_syscall_cb(id, vcpu_syscall);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
