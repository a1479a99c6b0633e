/* Per-thread scratch buffers for the kernels (prefill activation tiles, on-the-fly packing):
 * allocated on first use, grown when a larger product needs more, reused by every later call on
 * that thread (no malloc/mmap and page faults per matrix product), freed when the thread exits. */
#include <pthread.h>
#include <stdlib.h>

#include "quant/kernels_impl.h"

#define N_SLOTS 3

typedef struct {
    void *buf[N_SLOTS];
    size_t size[N_SLOTS];
} scratch_set;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static int scratch_key_ok;

static void scratch_free(void *p) {
    scratch_set *s = p;
    for (int i = 0; i < N_SLOTS; i++) free(s->buf[i]);
    free(s);
}

static void scratch_init(void) { scratch_key_ok = pthread_key_create(&scratch_key, scratch_free) == 0; }

void *slm_scratch(int slot, size_t bytes) {
    pthread_once(&scratch_once, scratch_init);
    if (!scratch_key_ok || slot < 0 || slot >= N_SLOTS) return NULL;
    scratch_set *s = pthread_getspecific(scratch_key);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s || pthread_setspecific(scratch_key, s) != 0) {
            free(s);
            return NULL;
        }
    }
    if (s->size[slot] < bytes) {
        const size_t want = (bytes + 4095) / 4096 * 4096;
        void *p = aligned_alloc(64, want);
        if (!p) return NULL;
        free(s->buf[slot]);
        s->buf[slot] = p;
        s->size[slot] = want;
    }
    return s->buf[slot];
}
