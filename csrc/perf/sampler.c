/* sampler.c: a pthread sampling /proc and sysfs into a ring of fixed-size records.
 *
 * Every source is opened once and re-read with pread(fd, buf, n, 0): procfs and sysfs
 * regenerate the text on each read at offset 0, so no open/close per tick. Parsing is
 * hand-written integer scanning of the few fields kept. A failed read clears the source's
 * bit in the record and is counted; the other sources go on (a process that exits takes
 * its /proc files with it, the system ones stay).
 *
 * Rates, chosen by cost (pread on a kept fd, x86 VM: schedstat 1 us, statm 1 us, io 2 us,
 * stat 4 us, status 7 us, /proc/stat 7 us, meminfo 6 us, PSI 2 us each, vmstat 17 us,
 * smaps_rollup 30-360 us growing with the mappings) and by how fast the value moves:
 *   every tick   process CPU clock, schedstat, statm (RSS), io, cpufreq, thermal,
 *                throttling, RAPL
 *   <= 100 Hz    status (peak RSS, context switches), stat (faults), /proc/stat (USER_HZ
 *                ticks of 10 ms), meminfo, PSI          (SLM_SAMPLE_MEDIUM)
 *   slow_every   vmstat, smaps_rollup                   (SLM_SAMPLE_SLOW)
 *
 * Timing: absolute deadlines on CLOCK_MONOTONIC (the region table's clock), waited with a
 * condition variable so stop() is immediate even at 1 Hz. If the thread falls behind by
 * more than a period, the missed ticks are counted and skipped, never bunched.
 *
 * The ring is single-producer (the thread) single-consumer (drain); when it is full the
 * new record is dropped and counted, so what was kept is never overwritten.
 *
 * Process CPU: the POSIX CPU clock of the process (clock_getcpuclockid), which is the sum of
 * every thread's schedstat run time; /proc/PID/schedstat alone covers only the main thread
 * (kept too: its run-queue wait shows CPU contention).
 */
#include "slm.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define SAMPLER_BUF 16384

typedef struct source {
    int kind, slot, fd;
    int last_errno;
    uint64_t n_failed;
} source;

struct slm_sampler {
    int hz, pid, slow_every, medium_every;
    uint64_t period_ns;
    source sources[SLM_SAMPLER_MAX_SOURCES];
    int n_sources;
    slm_sample *ring;                 /* [capacity] */
    uint64_t capacity, mask;
    uint64_t head, tail;              /* atomics: written by thread / by drain */
    pthread_t thread;
    int running;
    int stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    clockid_t proc_clock;
    int have_proc_clock;
    uint64_t n_samples, n_missed, n_dropped, tick;
    uint64_t t_start, t_stop, thread_cpu_ns;
    char buf[SAMPLER_BUF];            /* used by whoever samples (thread or sample_once) */
};

size_t slm_sample_size(void) { return sizeof(slm_sample); }

/* ---- parsing helpers: return pointer past the number, or NULL */

static const char *skip_spaces(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\t')) p++;
    return p;
}

static const char *parse_u64(const char *p, const char *end, uint64_t *out) {
    p = skip_spaces(p, end);
    if (p >= end || *p < '0' || *p > '9') return NULL;
    uint64_t v = 0;
    while (p < end && *p >= '0' && *p <= '9') v = v * 10 + (uint64_t)(*p++ - '0');
    *out = v;
    return p;
}

static const char *parse_i64(const char *p, const char *end, int64_t *out) {
    p = skip_spaces(p, end);
    int neg = 0;
    if (p < end && *p == '-') {
        neg = 1;
        p++;
    }
    uint64_t v;
    p = parse_u64(p, end, &v);
    if (p) *out = neg ? -(int64_t)v : (int64_t)v;
    return p;
}

/* Value after "key" at the start of a line (key includes its ':' or ' '). */
static int field_u64(const char *text, const char *end, const char *key, uint64_t *out) {
    size_t klen = strlen(key);
    const char *p = text;
    while (p < end) {
        if ((size_t)(end - p) > klen && memcmp(p, key, klen) == 0)
            return parse_u64(p + klen, end, out) ? 0 : -1;
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) break;
        p = nl + 1;
    }
    return -1;
}

/* "total=N" on the line starting with `prefix` ("some" / "full") of a PSI file. */
static int psi_total(const char *text, const char *end, const char *prefix, uint64_t *out) {
    size_t plen = strlen(prefix);
    const char *p = text;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        if ((size_t)(le - p) > plen && memcmp(p, prefix, plen) == 0) {
            const char *t = memmem(p, (size_t)(le - p), "total=", 6);
            return (t && parse_u64(t + 6, le, out)) ? 0 : -1;
        }
        if (!nl) break;
        p = nl + 1;
    }
    return -1;
}

static int parse_hex(const char *p, const char *end, uint64_t *out) {
    p = skip_spaces(p, end);
    if (end - p >= 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) p += 2;
    uint64_t v = 0;
    int n = 0;
    for (; p < end; p++, n++) {
        char ch = *p;
        int d = (ch >= '0' && ch <= '9') ? ch - '0' : (ch >= 'a' && ch <= 'f') ? ch - 'a' + 10
              : (ch >= 'A' && ch <= 'F') ? ch - 'A' + 10 : -1;
        if (d < 0) break;
        v = v * 16 + (uint64_t)d;
    }
    if (!n) return -1;
    *out = v;
    return 0;
}

/* Parse one source's text into the record; 0 if every field it provides was found. */
static int parse_source(const source *s, const char *t, const char *e, slm_sample *r) {
    uint64_t a, b;
    int64_t si;
    switch (s->kind) {
    case SLM_SRC_SCHEDSTAT: {
        const char *p = parse_u64(t, e, &a);
        if (!p || !parse_u64(p, e, &b)) return -1;
        r->sched_run_ns = a;
        r->sched_wait_ns = b;
        return 0;
    }
    case SLM_SRC_STATUS:
        if (field_u64(t, e, "VmHWM:", &b)) return -1;
        r->peak_rss_bytes = b * 1024;
        if (field_u64(t, e, "voluntary_ctxt_switches:", &r->vol_ctxsw) ||
            field_u64(t, e, "nonvoluntary_ctxt_switches:", &r->invol_ctxsw))
            return -1;
        return 0;
    case SLM_SRC_STAT: {
        /* after the last ')': state ppid pgrp session tty tpgid flags minflt cminflt majflt */
        const char *p = e;
        while (p > t && p[-1] != ')') p--;
        if (p == t) return -1;
        p = skip_spaces(p, e);
        while (p < e && *p != ' ') p++;  /* state */
        for (int field = 4; field <= 12; field++) {
            uint64_t v;
            int64_t sv;
            const char *q = (field == 8) ? parse_i64(p, e, &sv) : parse_u64(p, e, &v);  /* tpgid may be -1 */
            if (!q) return -1;
            if (field == 10) r->minflt = v;
            if (field == 12) r->majflt = v;
            p = q;
        }
        return 0;
    }
    case SLM_SRC_IO:
        if (field_u64(t, e, "rchar:", &r->io_rchar) || field_u64(t, e, "wchar:", &r->io_wchar) ||
            field_u64(t, e, "read_bytes:", &r->io_read_bytes) ||
            field_u64(t, e, "write_bytes:", &r->io_write_bytes))
            return -1;
        return 0;
    case SLM_SRC_SYSSTAT: {
        /* cpu  user nice system idle iowait irq softirq steal (guest is inside user) */
        if (e - t < 4 || memcmp(t, "cpu ", 4) != 0) return -1;
        const char *p = t + 4;
        uint64_t v[8], total = 0;
        for (int i = 0; i < 8; i++) {
            p = parse_u64(p, e, &v[i]);
            if (!p) {
                if (i < 4) return -1;
                v[i] = 0;  /* old kernels print fewer columns */
                p = e;
            }
            total += v[i];
        }
        r->sys_total_ticks = total;
        r->sys_busy_ticks = total - v[3] - v[4];
        return 0;
    }
    case SLM_SRC_MEMINFO:
        if (field_u64(t, e, "MemAvailable:", &a)) return -1;
        r->mem_available_bytes = a * 1024;
        return 0;
    case SLM_SRC_PSI_CPU:
        return psi_total(t, e, "some", &r->psi_cpu_some_us);
    case SLM_SRC_PSI_MEMORY:
        if (psi_total(t, e, "some", &r->psi_mem_some_us)) return -1;
        return psi_total(t, e, "full", &r->psi_mem_full_us);
    case SLM_SRC_PSI_IO:
        if (psi_total(t, e, "some", &r->psi_io_some_us)) return -1;
        return psi_total(t, e, "full", &r->psi_io_full_us);
    case SLM_SRC_CPUFREQ:
        if (!parse_u64(t, e, &a)) return -1;
        r->cpufreq_khz[s->slot] = (uint32_t)a;
        return 0;
    case SLM_SRC_THERMAL:
        if (!parse_i64(t, e, &si)) return -1;
        r->thermal_mc[s->slot] = (int32_t)si;
        return 0;
    case SLM_SRC_THROTTLED:
        if (parse_hex(t, e, &a)) return -1;
        r->throttled = (uint32_t)a;
        return 0;
    case SLM_SRC_UNDERVOLT:
        if (!parse_u64(t, e, &a)) return -1;
        r->undervolt = (uint32_t)a;
        return 0;
    case SLM_SRC_RAPL:
        if (!parse_u64(t, e, &a)) return -1;
        r->rapl_uj[s->slot] = a;
        return 0;
    case SLM_SRC_VMSTAT:
        if (field_u64(t, e, "pgfault ", &r->vm_pgfault) ||
            field_u64(t, e, "pgmajfault ", &r->vm_pgmajfault))
            return -1;
        /* swap counters are absent without CONFIG_SWAP: zero is then exact */
        if (field_u64(t, e, "pswpin ", &r->vm_pswpin)) r->vm_pswpin = 0;
        if (field_u64(t, e, "pswpout ", &r->vm_pswpout)) r->vm_pswpout = 0;
        return 0;
    case SLM_SRC_STATM: {  /* size resident shared text lib data dt, in pages */
        const char *p = parse_u64(t, e, &a);
        if (!p || !parse_u64(p, e, &b)) return -1;
        r->rss_bytes = b * (uint64_t)sysconf(_SC_PAGESIZE);
        return 0;
    }
    case SLM_SRC_SMAPS_ROLLUP:
        if (field_u64(t, e, "Pss:", &a)) return -1;
        r->pss_bytes = a * 1024;
        r->swap_bytes = field_u64(t, e, "Swap:", &b) ? 0 : b * 1024;
        return 0;
    }
    return -1;
}

static int is_slow(int kind) { return kind == SLM_SRC_VMSTAT || kind == SLM_SRC_SMAPS_ROLLUP; }

static int is_medium(int kind) {
    return kind == SLM_SRC_STATUS || kind == SLM_SRC_STAT || kind == SLM_SRC_SYSSTAT ||
           kind == SLM_SRC_MEMINFO || kind == SLM_SRC_PSI_CPU || kind == SLM_SRC_PSI_MEMORY ||
           kind == SLM_SRC_PSI_IO;
}

static int read_source(slm_sampler *sm, source *s, slm_sample *r) {
    if (s->fd < 0) return -1;
    ssize_t n = pread(s->fd, sm->buf, SAMPLER_BUF - 1, 0);
    if (n < 0) {
        s->last_errno = errno;
        s->n_failed++;
        return -1;
    }
    if (parse_source(s, sm->buf, sm->buf + n, r)) {
        s->last_errno = n == 0 ? ENODATA : EINVAL;
        s->n_failed++;
        return -1;
    }
    return 0;
}

static void take_sample(slm_sampler *sm, slm_sample *r, int slow, int medium) {
    memset(r, 0, sizeof *r);
    r->t_ns = slm_monotonic_ns();
    struct timespec ts;
    if (sm->have_proc_clock && clock_gettime(sm->proc_clock, &ts) == 0) {
        r->proc_cpu_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
        r->flags |= SLM_SAMPLE_PROC_CPU;
    }
    if (slow) r->flags |= SLM_SAMPLE_SLOW;
    if (medium) r->flags |= SLM_SAMPLE_MEDIUM;
    for (int i = 0; i < sm->n_sources; i++) {
        source *s = &sm->sources[i];
        if (is_slow(s->kind) && !slow) continue;
        if (is_medium(s->kind) && !medium) continue;
        if (read_source(sm, s, r) == 0) r->valid |= 1ull << i;
    }
}

int slm_sampler_create(slm_sampler **out, int hz, int pid, int slow_every, int capacity) {
    *out = NULL;
    if (hz < SLM_SAMPLER_MIN_HZ || hz > SLM_SAMPLER_MAX_HZ) return SLM_ERANGE;
    if (slow_every < 1 || capacity < 1 || capacity > (1 << 24)) return SLM_EINVAL;
    slm_sampler *sm = calloc(1, sizeof *sm);
    if (!sm) return SLM_ENOMEM;
    uint64_t cap = 1;
    while (cap < (uint64_t)capacity) cap <<= 1;
    sm->ring = malloc(cap * sizeof(slm_sample));
    if (!sm->ring) {
        free(sm);
        return SLM_ENOMEM;
    }
    sm->capacity = cap;
    sm->mask = cap - 1;
    sm->hz = hz;
    sm->period_ns = 1000000000ull / (uint64_t)hz;
    sm->pid = pid;
    sm->slow_every = slow_every;
    sm->medium_every = hz > 100 ? hz / 100 : 1;
    if (pid == 0) {
        sm->proc_clock = CLOCK_PROCESS_CPUTIME_ID;
        sm->have_proc_clock = 1;
    } else {
        sm->have_proc_clock = clock_getcpuclockid((pid_t)pid, &sm->proc_clock) == 0;
    }
    pthread_mutex_init(&sm->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&sm->cv, &ca);
    pthread_condattr_destroy(&ca);
    *out = sm;
    return 0;
}

int slm_sampler_add_source(slm_sampler *sm, int kind, int slot, const char *path) {
    if (sm->running) return SLM_EBUSY;
    if (kind < 0 || kind >= SLM_SRC_KIND_COUNT) return SLM_EINVAL;
    if ((kind == SLM_SRC_CPUFREQ && (slot < 0 || slot >= SLM_SAMPLER_MAX_CPUS)) ||
        (kind == SLM_SRC_THERMAL && (slot < 0 || slot >= SLM_SAMPLER_MAX_THERMAL)) ||
        (kind == SLM_SRC_RAPL && (slot < 0 || slot >= SLM_SAMPLER_MAX_RAPL)))
        return SLM_ERANGE;
    if (sm->n_sources >= SLM_SAMPLER_MAX_SOURCES) return SLM_ERANGE;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    source s = {kind, slot, fd, 0, 0};
    slm_sample probe;
    memset(&probe, 0, sizeof probe);
    if (read_source(sm, &s, &probe) != 0) {  /* opens but cannot be read or parsed */
        int err = s.last_errno ? s.last_errno : EINVAL;
        close(fd);
        return -err;
    }
    sm->sources[sm->n_sources] = s;
    return sm->n_sources++;
}

static void push(slm_sampler *sm, const slm_sample *r) {
    uint64_t head = sm->head;
    uint64_t tail = __atomic_load_n(&sm->tail, __ATOMIC_ACQUIRE);
    if (head - tail >= sm->capacity) {
        sm->n_dropped++;
        return;
    }
    sm->ring[head & sm->mask] = *r;
    __atomic_store_n(&sm->head, head + 1, __ATOMIC_RELEASE);
    __atomic_add_fetch(&sm->n_samples, 1, __ATOMIC_RELAXED);
}

static void *sampler_main(void *arg) {
    slm_sampler *sm = arg;
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);  /* wake on the deadline, not up to 50 µs late */
    slm_sample r;
    uint64_t next = slm_monotonic_ns();
    pthread_mutex_lock(&sm->mu);
    while (!sm->stop) {
        pthread_mutex_unlock(&sm->mu);
        take_sample(sm, &r, sm->tick % (uint64_t)sm->slow_every == 0,
                    sm->tick % (uint64_t)sm->medium_every == 0);
        sm->tick++;
        push(sm, &r);
        next += sm->period_ns;
        uint64_t now = slm_monotonic_ns();
        if (now > next + sm->period_ns) {  /* fell behind: skip, do not bunch */
            uint64_t behind = (now - next) / sm->period_ns;
            __atomic_add_fetch(&sm->n_missed, behind, __ATOMIC_RELAXED);
            next += behind * sm->period_ns;
        }
        struct timespec dl = {(time_t)(next / 1000000000ull), (long)(next % 1000000000ull)};
        pthread_mutex_lock(&sm->mu);
        while (!sm->stop && pthread_cond_timedwait(&sm->cv, &sm->mu, &dl) != ETIMEDOUT) {
        }
    }
    pthread_mutex_unlock(&sm->mu);
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    sm->thread_cpu_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    return NULL;
}

int slm_sampler_start(slm_sampler *sm) {
    if (sm->running) return SLM_EBUSY;
    sm->stop = 0;
    sm->t_start = slm_monotonic_ns();
    sm->t_stop = 0;
    /* The thread blocks every signal, so Ctrl-C is delivered to the caller's thread. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&sm->thread, NULL, sampler_main, sm);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) return -rc;
    sm->running = 1;
    return 0;
}

int slm_sampler_stop(slm_sampler *sm) {
    if (!sm->running) return 0;
    pthread_mutex_lock(&sm->mu);
    sm->stop = 1;
    pthread_cond_signal(&sm->cv);
    pthread_mutex_unlock(&sm->mu);
    pthread_join(sm->thread, NULL);
    sm->running = 0;
    sm->t_stop = slm_monotonic_ns();
    return 0;
}

int slm_sampler_drain(slm_sampler *sm, slm_sample *out, int max) {
    uint64_t tail = sm->tail;
    uint64_t head = __atomic_load_n(&sm->head, __ATOMIC_ACQUIRE);
    int n = 0;
    while (tail != head && n < max) out[n++] = sm->ring[tail++ & sm->mask];
    __atomic_store_n(&sm->tail, tail, __ATOMIC_RELEASE);
    return n;
}

int slm_sampler_stats_get(slm_sampler *sm, slm_sampler_stats *out) {
    out->n_samples = __atomic_load_n(&sm->n_samples, __ATOMIC_RELAXED);
    out->n_missed = __atomic_load_n(&sm->n_missed, __ATOMIC_RELAXED);
    out->n_dropped = sm->n_dropped;
    out->thread_cpu_ns = sm->thread_cpu_ns;
    if (sm->running) {
        clockid_t cid;
        struct timespec ts;
        if (pthread_getcpuclockid(sm->thread, &cid) == 0 && clock_gettime(cid, &ts) == 0)
            out->thread_cpu_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    }
    uint64_t end = sm->running || !sm->t_stop ? slm_monotonic_ns() : sm->t_stop;
    out->elapsed_ns = sm->t_start ? end - sm->t_start : 0;
    return 0;
}

int slm_sampler_source(slm_sampler *sm, int i, int *kind, int *slot, int *last_errno,
                       uint64_t *n_failed) {
    if (i < 0 || i >= sm->n_sources) return SLM_EINVAL;
    *kind = sm->sources[i].kind;
    *slot = sm->sources[i].slot;
    *last_errno = sm->sources[i].last_errno;
    *n_failed = sm->sources[i].n_failed;
    return 0;
}

int slm_sampler_n_sources(const slm_sampler *sm) { return sm->n_sources; }

int slm_sampler_sample_once(slm_sampler *sm, slm_sample *out) {
    if (sm->running) return SLM_EBUSY;  /* the thread owns the read buffer */
    take_sample(sm, out, 1, 1);
    return 0;
}

void slm_sampler_destroy(slm_sampler *sm) {
    if (!sm) return;
    slm_sampler_stop(sm);
    for (int i = 0; i < sm->n_sources; i++)
        if (sm->sources[i].fd >= 0) close(sm->sources[i].fd);
    pthread_mutex_destroy(&sm->mu);
    pthread_cond_destroy(&sm->cv);
    free(sm->ring);
    free(sm);
}
