/* SIGINT (Ctrl-C) while a forward pass runs.
 *
 * Python's own SIGINT handler only notes the signal; the interpreter acts on it at its next
 * bytecode, which, while a long forward pass runs in C with the interpreter's lock released,
 * is when the pass ends. While someone watches, the handler here counts each SIGINT and then
 * calls the handler it replaced, so Python still sees every signal; the forward pass reads the
 * count between layers (slm_model_stop_on_sigint). The count is only ever read, never reset,
 * so concurrent watchers cannot take a signal from one another.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

#include "slm.h"

static atomic_uint sigint_count;
static struct sigaction replaced; /* called after counting; written only while ours is not installed */
static int watchers;              /* under `lock` */
static int installed;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void on_sigint(int sig, siginfo_t *info, void *uctx) {
    const int saved_errno = errno;
    atomic_fetch_add_explicit(&sigint_count, 1, memory_order_relaxed);
    if (replaced.sa_flags & SA_SIGINFO) {
        if (replaced.sa_sigaction) replaced.sa_sigaction(sig, info, uctx);
    } else if (replaced.sa_handler != SIG_DFL && replaced.sa_handler != SIG_IGN) {
        replaced.sa_handler(sig);
    }
    errno = saved_errno;
}

static int is_ours(const struct sigaction *a) {
    return (a->sa_flags & SA_SIGINFO) && a->sa_sigaction == on_sigint;
}

int slm_sigint_watch(void) {
    int rc = SLM_OK;
    pthread_mutex_lock(&lock);
    if (watchers == 0) {
        struct sigaction cur;
        if (sigaction(SIGINT, NULL, &cur) != 0) {
            rc = -errno;
        } else if (!is_ours(&cur) && ((cur.sa_flags & SA_SIGINFO) ||
                                      (cur.sa_handler != SIG_DFL && cur.sa_handler != SIG_IGN))) {
            /* A default action ends the process anyway, and an ignored signal stops nothing:
             * only a handler is worth chaining to. */
            struct sigaction ours = cur; /* same mask and flags, counting first */
            ours.sa_sigaction = on_sigint;
            ours.sa_flags = (cur.sa_flags | SA_SIGINFO) & ~SA_RESETHAND;
            replaced = cur;
            if (sigaction(SIGINT, &ours, NULL) != 0) rc = -errno;
            else installed = 1;
        }
    }
    if (rc == SLM_OK) watchers++;
    pthread_mutex_unlock(&lock);
    return rc;
}

void slm_sigint_unwatch(void) {
    pthread_mutex_lock(&lock);
    if (watchers > 0 && --watchers == 0 && installed) {
        /* Put the replaced handler back, unless another has been installed over ours since. */
        struct sigaction cur;
        if (sigaction(SIGINT, NULL, &cur) == 0 && is_ours(&cur)) sigaction(SIGINT, &replaced, NULL);
        installed = 0;
    }
    pthread_mutex_unlock(&lock);
}

uint32_t slm_sigint_count(void) {
    return atomic_load_explicit(&sigint_count, memory_order_relaxed);
}
