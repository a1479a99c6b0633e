/* counters.c: perf_event_open groups, one set per thread, aggregated and scaled.
 *
 * Every group is opened with read_format GROUP | TOTAL_TIME_ENABLED | TOTAL_TIME_RUNNING | ID,
 * so one read() returns all members plus the times needed to detect multiplexing. Software
 * events take exactly the same path as hardware ones: on machines without a PMU they are
 * what keeps this code exercised.
 */
#include "slm.h"

#include <dirent.h>
#include <linux/perf_event.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* One group opened on one thread: a "slot". */
typedef struct slot {
    pid_t tid;
    int group;                                   /* index into the set's group template */
    int n;                                       /* members */
    int fds[SLM_PERF_MAX_GROUP];                 /* fds[0] is the leader */
    uint64_t ids[SLM_PERF_MAX_GROUP];
    struct perf_event_mmap_page *pages[SLM_PERF_MAX_GROUP];  /* NULL without user read */
} slot;

struct slm_counters {
    slm_perf_event events[SLM_PERF_MAX_EVENTS];
    int n_events;
    int flags;
    int n_groups;
    int group_events[SLM_PERF_MAX_EVENTS][SLM_PERF_MAX_GROUP];  /* [group][member] -> event */
    int group_size[SLM_PERF_MAX_EVENTS];
    slot *slots;           /* [cap_slots] */
    int n_slots, cap_slots;
    pid_t *tids;           /* [cap_tids] threads attached */
    int n_threads, cap_tids;
    int n_fds;
    int user_read_off;     /* slm_counters_allow_user_read(c, 0): read() only */
    /* (thread, group) reads by path, counted under the lock: what was really taken. */
    uint64_t n_user_reads, n_syscall_reads, n_user_fallbacks;
    pthread_mutex_t lock;  /* attach vs read */
};

static long page_size_bytes(void) {
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? p : 4096;
}

static pid_t current_tid(void) {
    static __thread pid_t tid;
    if (!tid) tid = (pid_t)syscall(SYS_gettid);
    return tid;
}

static int perf_open(const slm_perf_event *e, pid_t pid, int group_fd, int flags, int leader) {
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.size = sizeof attr;
    attr.type = e->type;
    attr.config = e->config;
    attr.config1 = e->config1;
    attr.read_format = PERF_FORMAT_GROUP | PERF_FORMAT_TOTAL_TIME_ENABLED |
                       PERF_FORMAT_TOTAL_TIME_RUNNING | PERF_FORMAT_ID;
    /* The leader starts disabled and the whole group is enabled once assembled (or on exec).
     * Observed on 6.x kernels: members added to a leader that is already counting can miss
     * events for a while (faults under a task-clock leader) or read stale (a task-clock
     * under a faults leader); enabling the finished group counts both exactly. */
    attr.disabled = leader ? 1 : 0;
    attr.enable_on_exec = (leader && (flags & SLM_PERF_ENABLE_ON_EXEC)) ? 1 : 0;
    attr.inherit = (flags & SLM_PERF_INHERIT) ? 1 : 0;
    attr.exclude_kernel = (flags & SLM_PERF_EXCLUDE_KERNEL) ? 1 : 0;
    attr.exclude_hv = attr.exclude_kernel;
    long fd = syscall(SYS_perf_event_open, &attr, pid, -1, group_fd, PERF_FLAG_FD_CLOEXEC);
    return fd < 0 ? -errno : (int)fd;
}

int slm_perf_probe(uint32_t type, uint64_t config, uint64_t config1, int flags) {
    slm_perf_event e = {type, config, config1, 0};
    int fd = perf_open(&e, 0, -1, flags & ~SLM_PERF_ENABLE_ON_EXEC, 1);
    if (fd < 0) return fd;
    close(fd);
    return 0;
}

int slm_perf_scale(uint64_t value, uint64_t enabled, uint64_t running, double *scaled) {
    if (enabled == 0) {           /* the task never ran while enabled: the zero is exact */
        *scaled = (double)value;
        return SLM_COUNT_IDLE;
    }
    if (running == 0) {           /* enabled but never on the PMU: there is no value */
        *scaled = 0.0;
        return SLM_COUNT_NOT_COUNTED;
    }
    if (running < enabled) {
        *scaled = (double)value * ((double)enabled / (double)running);
        return SLM_COUNT_SCALED;
    }
    *scaled = (double)value;
    return SLM_COUNT_EXACT;
}

int slm_perf_parse_group(const uint64_t *buf, size_t n_words, int expected_nr, int has_id,
                         uint64_t *values, uint64_t *ids, uint64_t *enabled, uint64_t *running) {
    /* layout: nr, time_enabled, time_running, { value, id? }[nr] */
    if (n_words < 3) return SLM_EINVAL;
    uint64_t nr = buf[0];
    size_t stride = has_id ? 2 : 1;
    if ((int64_t)nr != expected_nr || n_words < 3 + nr * stride) return SLM_EINVAL;
    *enabled = buf[1];
    *running = buf[2];
    for (uint64_t i = 0; i < nr; i++) {
        values[i] = buf[3 + i * stride];
        if (has_id && ids) ids[i] = buf[3 + i * stride + 1];
    }
    return 0;
}

int slm_counters_create(slm_counters **out, const slm_perf_event *events, int n_events, int flags) {
    *out = NULL;
    if (n_events < 1 || n_events > SLM_PERF_MAX_EVENTS) return SLM_EINVAL;
    slm_counters *c = calloc(1, sizeof *c);
    if (!c) return SLM_ENOMEM;
    c->n_events = n_events;
    c->flags = flags;
    memcpy(c->events, events, sizeof(*events) * (size_t)n_events);
    /* Group template: group indices as given, renumbered densely in first-seen order. */
    int seen[SLM_PERF_MAX_EVENTS];
    int n_seen = 0;
    for (int i = 0; i < n_events; i++) {
        int g = -1;
        for (int k = 0; k < n_seen; k++)
            if (seen[k] == events[i].group) g = k;
        if (g < 0) {
            g = n_seen;
            seen[n_seen++] = events[i].group;
        }
        if (c->group_size[g] >= SLM_PERF_MAX_GROUP) {
            free(c);
            return SLM_EINVAL;
        }
        c->group_events[g][c->group_size[g]++] = i;
    }
    c->n_groups = n_seen;
    pthread_mutex_init(&c->lock, NULL);
    *out = c;
    return 0;
}

static void slot_close(slot *s) {
    long page = page_size_bytes();
    for (int i = 0; i < s->n; i++) {
        if (s->pages[i]) munmap(s->pages[i], (size_t)page);
        if (s->fds[i] >= 0) close(s->fds[i]);
        s->pages[i] = NULL;
        s->fds[i] = -1;
    }
}

/* Open group g of the template on tid into *s. */
static int slot_open(slm_counters *c, int g, pid_t tid, slot *s) {
    memset(s, 0, sizeof *s);
    s->tid = tid;
    s->group = g;
    s->n = 0;
    for (int m = 0; m < c->group_size[g]; m++) s->fds[m] = -1;
    long page = page_size_bytes();
    for (int m = 0; m < c->group_size[g]; m++) {
        const slm_perf_event *e = &c->events[c->group_events[g][m]];
        int fd = perf_open(e, tid, m == 0 ? -1 : s->fds[0], c->flags, m == 0);
        if (fd < 0) {
            slot_close(s);
            return fd;
        }
        s->fds[m] = fd;
        s->n = m + 1;
        if (ioctl(fd, PERF_EVENT_IOC_ID, &s->ids[m]) < 0) {
            int err = -errno;
            slot_close(s);
            return err;
        }
        /* The mmap page is what rdpmc/mrs read; software events never expose a counter. */
        if ((c->flags & SLM_PERF_USER_READ) && e->type != PERF_TYPE_SOFTWARE) {
            void *p = mmap(NULL, (size_t)page, PROT_READ, MAP_SHARED, fd, 0);
            s->pages[m] = (p == MAP_FAILED) ? NULL : (struct perf_event_mmap_page *)p;
        }
    }
    if (!(c->flags & SLM_PERF_ENABLE_ON_EXEC) &&
        ioctl(s->fds[0], PERF_EVENT_IOC_ENABLE, PERF_IOC_FLAG_GROUP) < 0) {
        int err = -errno;
        slot_close(s);
        return err;
    }
    return 0;
}

static int grow(void **arr, int *cap, int need, size_t elem) {
    if (need <= *cap) return 0;
    int ncap = *cap ? *cap * 2 : 8;
    while (ncap < need) ncap *= 2;
    void *p = realloc(*arr, (size_t)ncap * elem);
    if (!p) return SLM_ENOMEM;
    *arr = p;
    *cap = ncap;
    return 0;
}

/* Open every group on tid; caller holds the lock. 0, -ESRCH (thread gone) or -errno. */
static int attach_locked(slm_counters *c, pid_t tid) {
    for (int i = 0; i < c->n_threads; i++)
        if (c->tids[i] == tid) return 0;
    int rc = grow((void **)&c->slots, &c->cap_slots, c->n_slots + c->n_groups, sizeof(slot));
    if (rc) return rc;
    rc = grow((void **)&c->tids, &c->cap_tids, c->n_threads + 1, sizeof(pid_t));
    if (rc) return rc;
    for (int g = 0; g < c->n_groups; g++) {
        rc = slot_open(c, g, tid, &c->slots[c->n_slots + g]);
        if (rc < 0) {
            for (int k = 0; k < g; k++) slot_close(&c->slots[c->n_slots + k]);
            return rc;
        }
    }
    for (int g = 0; g < c->n_groups; g++) c->n_fds += c->slots[c->n_slots + g].n;
    c->n_slots += c->n_groups;
    c->tids[c->n_threads++] = tid;
    return 1;
}

int slm_counters_attach_task(slm_counters *c, int tid) {
    pthread_mutex_lock(&c->lock);
    int rc = attach_locked(c, (pid_t)tid);
    pthread_mutex_unlock(&c->lock);
    return rc < 0 ? rc : 0;
}

int slm_counters_attach_threads(slm_counters *c, int pid) {
    char path[64];
    if (pid > 0)
        snprintf(path, sizeof path, "/proc/%d/task", pid);
    else
        snprintf(path, sizeof path, "/proc/self/task");
    DIR *d = opendir(path);
    if (!d) return -errno;
    int added = 0, rc = 0;
    pthread_mutex_lock(&c->lock);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9') continue;
        pid_t tid = (pid_t)atoi(de->d_name);
        int r = attach_locked(c, tid);
        if (r == -ESRCH) continue;          /* exited since the listing: nothing to count */
        if (r < 0) {
            rc = r;
            break;
        }
        added += r;
    }
    pthread_mutex_unlock(&c->lock);
    closedir(d);
    return rc < 0 ? rc : added;
}

static int ioctl_leaders(slm_counters *c, unsigned long request) {
    int rc = 0;
    pthread_mutex_lock(&c->lock);
    for (int i = 0; i < c->n_slots; i++)
        if (ioctl(c->slots[i].fds[0], request, PERF_IOC_FLAG_GROUP) < 0) rc = -errno;
    pthread_mutex_unlock(&c->lock);
    return rc;
}

int slm_counters_enable(slm_counters *c) { return ioctl_leaders(c, PERF_EVENT_IOC_ENABLE); }
int slm_counters_disable(slm_counters *c) { return ioctl_leaders(c, PERF_EVENT_IOC_DISABLE); }

/* ---- user-space reads (self-monitoring only) */

#if defined(__x86_64__) || defined(__i386__)
#define HAVE_USER_READ 1
static inline uint64_t user_counter(uint32_t idx) {
    uint32_t lo, hi;
    __asm__ volatile("rdpmc" : "=a"(lo), "=d"(hi) : "c"(idx));
    return ((uint64_t)hi << 32) | lo;
}
static inline uint64_t user_timestamp(void) {
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}
#define USER_READ_PATH SLM_READ_RDPMC
#elif defined(__aarch64__)
#define HAVE_USER_READ 1
/* PMEVCNTR<n>_EL0 by name rather than through PMSELR_EL0 + PMXEVCNTR_EL0: no selector state
 * to race with, and one instruction per read. */
#define PMEVCNTR_CASE(n) \
    case n: __asm__ volatile("mrs %0, pmevcntr" #n "_el0" : "=r"(v)); break;
static inline uint64_t user_counter(uint32_t idx) {
    uint64_t v = 0;
    switch (idx) {
        PMEVCNTR_CASE(0) PMEVCNTR_CASE(1) PMEVCNTR_CASE(2) PMEVCNTR_CASE(3)
        PMEVCNTR_CASE(4) PMEVCNTR_CASE(5) PMEVCNTR_CASE(6) PMEVCNTR_CASE(7)
        PMEVCNTR_CASE(8) PMEVCNTR_CASE(9) PMEVCNTR_CASE(10) PMEVCNTR_CASE(11)
        PMEVCNTR_CASE(12) PMEVCNTR_CASE(13) PMEVCNTR_CASE(14) PMEVCNTR_CASE(15)
        PMEVCNTR_CASE(16) PMEVCNTR_CASE(17) PMEVCNTR_CASE(18) PMEVCNTR_CASE(19)
        PMEVCNTR_CASE(20) PMEVCNTR_CASE(21) PMEVCNTR_CASE(22) PMEVCNTR_CASE(23)
        PMEVCNTR_CASE(24) PMEVCNTR_CASE(25) PMEVCNTR_CASE(26) PMEVCNTR_CASE(27)
        PMEVCNTR_CASE(28) PMEVCNTR_CASE(29) PMEVCNTR_CASE(30)
    case 31:  /* the dedicated cycle counter (the kernel reports it as index 32) */
        __asm__ volatile("mrs %0, pmccntr_el0" : "=r"(v));
        break;
    }
    return v;
}
#undef PMEVCNTR_CASE
static inline uint64_t user_timestamp(void) {
    uint64_t v;
    __asm__ volatile("isb" : : : "memory");
    __asm__ volatile("mrs %0, cntvct_el0" : "=r"(v));
    return v;
}
#define USER_READ_PATH SLM_READ_MRS
#else
#define HAVE_USER_READ 0
#define USER_READ_PATH SLM_READ_SYSCALL
#endif

#if HAVE_USER_READ
/* The seqlock protocol of perf_event_mmap_page (perf_event_open(2), "rdpmc" and "time_*").
 * Returns 0 and the count (plus times when want_times) or -1 when the counter is not
 * user-readable right now (not scheduled, multiplexed out, access revoked). */
static int page_read(volatile struct perf_event_mmap_page *pc, int want_times, uint64_t *count,
                     uint64_t *enabled, uint64_t *running) {
    uint32_t seq, idx;
    uint64_t cnt, en = 0, run = 0;
    do {
        seq = pc->lock;
        __atomic_signal_fence(__ATOMIC_SEQ_CST);
        if (!pc->cap_user_rdpmc) return -1;
        idx = pc->index;
        if (!idx) return -1;
        if (want_times) {
            if (!pc->cap_user_time) return -1;
            en = pc->time_enabled;
            run = pc->time_running;
            uint64_t cyc = user_timestamp();
            if (pc->cap_user_time_short)
                cyc = pc->time_cycles + ((cyc - pc->time_cycles) & pc->time_mask);
            uint16_t shift = pc->time_shift;
            uint64_t quot = cyc >> shift, rem = cyc & (((uint64_t)1 << shift) - 1);
            uint64_t delta = pc->time_offset + quot * pc->time_mult +
                             ((rem * pc->time_mult) >> shift);
            en += delta;
            run += delta;  /* idx != 0: the event is on the PMU now */
        }
        cnt = pc->offset;
        uint16_t width = pc->pmc_width;
        uint64_t pmc = user_counter(idx - 1);
        if (width && width < 64) {
            pmc <<= 64 - width;
            pmc = (uint64_t)((int64_t)pmc >> (64 - width));
        }
        cnt += pmc;
        __atomic_signal_fence(__ATOMIC_SEQ_CST);
    } while (pc->lock != seq);
    *count = cnt;
    if (want_times) {
        *enabled = en;
        *running = run;
    }
    return 0;
}
#endif

static int slot_user_readable(const slm_counters *c, const slot *s) {
#if HAVE_USER_READ
    if (c->user_read_off || s->n == 0 || s->tid != current_tid()) return 0;
    for (int m = 0; m < s->n; m++)
        if (!s->pages[m] || !s->pages[m]->cap_user_rdpmc) return 0;
    return 1;
#else
    (void)c;
    (void)s;
    return 0;
#endif
}

/* Read one slot: values[n], enabled, running. User path first where possible. Caller holds
 * the lock. */
static int slot_read(slm_counters *c, const slot *s, uint64_t *values, uint64_t *enabled,
                     uint64_t *running) {
#if HAVE_USER_READ
    if (slot_user_readable(c, s)) {
        int ok = 1;
        for (int m = 0; m < s->n && ok; m++)
            ok = page_read(s->pages[m], m == 0, &values[m], enabled, running) == 0;
        if (ok) {
            c->n_user_reads++;
            return 0;
        }
        c->n_user_fallbacks++;  /* not on the PMU right now (multiplexed out): read() */
    }
#endif
    c->n_syscall_reads++;
    uint64_t buf[3 + 2 * SLM_PERF_MAX_GROUP];
    ssize_t n = read(s->fds[0], buf, sizeof buf);
    if (n < 0) return -errno;
    uint64_t ids[SLM_PERF_MAX_GROUP], vals[SLM_PERF_MAX_GROUP];
    int rc = slm_perf_parse_group(buf, (size_t)n / sizeof(uint64_t), s->n, 1, vals, ids,
                                  enabled, running);
    if (rc) return rc;
    /* Members come back in the kernel's sibling order; place them by id. */
    for (int m = 0; m < s->n; m++) {
        values[m] = 0;
        for (int k = 0; k < s->n; k++)
            if (ids[k] == s->ids[m]) values[m] = vals[k];
    }
    return 0;
}

static void accumulate(slm_perf_value *v, uint64_t raw, uint64_t enabled, uint64_t running) {
    double scaled;
    int how = slm_perf_scale(raw, enabled, running, &scaled);
    v->raw += raw;
    v->scaled += scaled;
    v->enabled_ns += enabled;
    v->running_ns += running;
    if (how == SLM_COUNT_SCALED) v->n_scaled++;
    if (how == SLM_COUNT_NOT_COUNTED) v->n_not_counted++;
}

int slm_counters_read(slm_counters *c, slm_perf_value *out) {
    memset(out, 0, sizeof(*out) * (size_t)c->n_events);
    int rc = 0;
    pthread_mutex_lock(&c->lock);
    for (int i = 0; i < c->n_slots; i++) {
        const slot *s = &c->slots[i];
        uint64_t vals[SLM_PERF_MAX_GROUP], en, run;
        int r = slot_read(c, s, vals, &en, &run);
        if (r) {
            rc = r;
            continue;
        }
        for (int m = 0; m < s->n; m++)
            accumulate(&out[c->group_events[s->group][m]], vals[m], en, run);
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

#define SNAP_STRIDE (SLM_PERF_MAX_GROUP + 2)

int slm_counters_snapshot_take(slm_counters *c, slm_counters_snapshot *s) {
    int rc = 0;
    pthread_mutex_lock(&c->lock);
    if (s->capacity < c->n_slots) {
        int cap = c->cap_slots > c->n_slots ? c->cap_slots : c->n_slots;
        uint64_t *w = realloc(s->words, (size_t)cap * SNAP_STRIDE * sizeof(uint64_t));
        if (!w) {
            pthread_mutex_unlock(&c->lock);
            s->n_slots = 0;
            return SLM_ENOMEM;
        }
        s->words = w;
        s->capacity = cap;
    }
    for (int i = 0; i < c->n_slots; i++) {
        uint64_t *w = &s->words[(size_t)i * SNAP_STRIDE];
        int r = slot_read(c, &c->slots[i], w, &w[SLM_PERF_MAX_GROUP], &w[SLM_PERF_MAX_GROUP + 1]);
        if (r) {  /* unreadable now: make the slot contribute nothing to the delta */
            memset(w, 0xff, SNAP_STRIDE * sizeof(uint64_t));
            rc = r;
        }
    }
    s->n_slots = c->n_slots;
    pthread_mutex_unlock(&c->lock);
    return rc;
}

int slm_counters_snapshot_delta(slm_counters *c, const slm_counters_snapshot *before,
                                const slm_counters_snapshot *now, slm_perf_value *out) {
    static const uint64_t zeros[SNAP_STRIDE];
    pthread_mutex_lock(&c->lock);  /* attach may grow (move) the slot array meanwhile */
    for (int i = 0; i < now->n_slots && i < c->n_slots; i++) {
        const slot *s = &c->slots[i];
        const uint64_t *b = i < before->n_slots ? &before->words[(size_t)i * SNAP_STRIDE] : zeros;
        const uint64_t *a = &now->words[(size_t)i * SNAP_STRIDE];
        if (a[SLM_PERF_MAX_GROUP] == UINT64_MAX || b[SLM_PERF_MAX_GROUP] == UINT64_MAX) continue;
        uint64_t en = a[SLM_PERF_MAX_GROUP] - b[SLM_PERF_MAX_GROUP];
        uint64_t run = a[SLM_PERF_MAX_GROUP + 1] - b[SLM_PERF_MAX_GROUP + 1];
        for (int m = 0; m < s->n; m++)
            accumulate(&out[c->group_events[s->group][m]], a[m] - b[m], en, run);
    }
    pthread_mutex_unlock(&c->lock);
    return 0;
}

void slm_counters_snapshot_free(slm_counters_snapshot *s) {
    free(s->words);
    s->words = NULL;
    s->capacity = s->n_slots = 0;
}

int slm_counters_n_events(const slm_counters *c) { return c->n_events; }
int slm_counters_n_threads(const slm_counters *c) { return c->n_threads; }
int slm_counters_n_fds(const slm_counters *c) { return c->n_fds; }

int slm_counters_read_path(slm_counters *c) {
    int path = SLM_READ_SYSCALL;
    pthread_mutex_lock(&c->lock);
    for (int i = 0; i < c->n_slots; i++)
        if (slot_user_readable(c, &c->slots[i])) path = USER_READ_PATH;
    pthread_mutex_unlock(&c->lock);
    return path;
}

void slm_counters_allow_user_read(slm_counters *c, int allow) {
    pthread_mutex_lock(&c->lock);
    c->user_read_off = !allow;
    pthread_mutex_unlock(&c->lock);
}

void slm_counters_read_stats(slm_counters *c, uint64_t *user_reads, uint64_t *syscall_reads,
                             uint64_t *user_fallbacks) {
    pthread_mutex_lock(&c->lock);
    *user_reads = c->n_user_reads;
    *syscall_reads = c->n_syscall_reads;
    *user_fallbacks = c->n_user_fallbacks;
    pthread_mutex_unlock(&c->lock);
}

void slm_counters_destroy(slm_counters *c) {
    if (!c) return;
    for (int i = 0; i < c->n_slots; i++) slot_close(&c->slots[i]);
    free(c->slots);
    free(c->tids);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* A loop with a known instruction count: 2 instructions per iteration (decrement, branch),
 * for checking instruction counters against an exact figure. */
void slm_perf_spin(uint64_t n) {
    if (!n) return;
#if defined(__x86_64__)
    __asm__ volatile("1: dec %0\n\tjnz 1b" : "+r"(n) : : "cc");
#elif defined(__aarch64__)
    __asm__ volatile("1: subs %0, %0, #1\n\tb.ne 1b" : "+r"(n) : : "cc");
#else
    volatile uint64_t i = n;
    while (i) i--;
#endif
}
