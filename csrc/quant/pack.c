/* Load-time repacking into tiles of 4 rows x 2 blocks (SLM_LAYOUT_R4X2 and R4I, see slm_quant.h).
 * One tile is what a SIMD kernel consumes per step: the 8 scales convert with one instruction,
 * and the 4 rows' quants share each activation load. The stream is one contiguous region per
 * group of 4 rows, which hardware prefetchers follow well. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "quant/kernels_impl.h"

int64_t slm_r4x2_tile_bytes(int type) {
    switch (type) {
    case SLM_TYPE_Q4_0: return 16 + 4 * 32;
    case SLM_TYPE_Q4_1: return 32 + 4 * 32;
    case SLM_TYPE_Q8_0: return 16 + 4 * 64;
    case SLM_TYPE_Q5_0: return 16 + 4 * 8 + 4 * 32;
    case SLM_TYPE_Q5_1: return 32 + 4 * 8 + 4 * 32;
    default: return 0;
    }
}

/* A Q5 pair's fifth bits regrouped the way the 4-bit tile reads its nibbles: word 0 holds the
 * bits of elements 0..15 of block 0 then of block 1 (the low nibbles), word 1 those of
 * elements 16..31 (the high nibbles). */
static void q5_pair_bits(const uint8_t *qh0, const uint8_t *qh1, uint8_t out[8]) {
    uint32_t h0, h1 = 0;
    memcpy(&h0, qh0, 4);
    if (qh1) memcpy(&h1, qh1, 4);
    const uint32_t lo = (h0 & 0xFFFF) | (h1 & 0xFFFF) << 16, hi = (h0 >> 16) | (h1 >> 16) << 16;
    memcpy(out, &lo, 4);
    memcpy(out + 4, &hi, 4);
}

/* One tile's quants for row r, block k of the pair, from the plain block `qs` (qbytes bytes). */
static void put_quants(int layout, int type, uint8_t *qs, int r, int k, const uint8_t *src, int qbytes) {
    if (layout == SLM_LAYOUT_R4X2) {
        memcpy(qs + (2 * r + k) * qbytes, src, (size_t)qbytes);
        return;
    }
    /* R4I: 4 bytes of each row in turn, so one 16-byte load holds 4 rows x 4 bytes */
    uint8_t *blk = qs + k * 4 * qbytes;
    const uint8_t flip = type == SLM_TYPE_Q4_0 ? 0x88 : 0x00;
    for (int i = 0; i < qbytes; i++) blk[16 * (i / 4) + 4 * r + i % 4] = src[i] ^ flip;
}

void slm_pack_rows(const slm_weight *w, int layout, int64_t row0, int64_t n_groups, uint8_t *out) {
    const int64_t tb = slm_r4x2_tile_bytes(w->type);
    const int64_t nb = w->cols / SLM_QK, n_pairs = (nb + 1) / 2;
    /* padding rows/blocks: zero scales, so they add nothing */
    memset(out, 0, (size_t)(n_groups * n_pairs * tb));
    const int64_t bb = slm_type_block_bytes(w->type);
    const int nsc = w->type == SLM_TYPE_Q4_1 || w->type == SLM_TYPE_Q5_1 ? 2 : 1; /* fp16 fields at the block start */
    const int has_qh = w->type == SLM_TYPE_Q5_0 || w->type == SLM_TYPE_Q5_1;
    const int qbytes = (int)(bb - 2 * nsc - 4 * has_qh);
    for (int64_t g = 0; g < n_groups; g++) {
        for (int64_t p = 0; p < n_pairs; p++) {
            uint8_t *tile = out + (g * n_pairs + p) * tb;
            slm_half *d = (slm_half *)tile, *m = d + 8;
            uint8_t *bits = tile + 16 * nsc;
            uint8_t *qs = bits + 32 * has_qh;
            for (int r = 0; r < 4; r++) {
                const int64_t row = row0 + g * 4 + r;
                if (row >= w->rows) break;
                const uint8_t *rowp = (const uint8_t *)w->data + row * w->row_bytes;
                for (int k = 0; k < 2; k++) {
                    const int64_t b = 2 * p + k;
                    if (b >= nb) break;
                    const uint8_t *blk = rowp + b * bb;
                    const int sc = layout == SLM_LAYOUT_R4X2 ? 2 * r + k : 4 * k + r;
                    memcpy(&d[sc], blk, 2);
                    if (nsc == 2) memcpy(&m[sc], blk + 2, 2);
                    put_quants(layout, w->type, qs, r, k, blk + 2 * nsc + 4 * has_qh, qbytes);
                }
                if (has_qh)
                    q5_pair_bits(rowp + 2 * p * bb + 2 * nsc, 2 * p + 1 < nb ? rowp + (2 * p + 1) * bb + 2 * nsc : NULL,
                                 bits + 8 * r);
            }
        }
    }
}

void slm_pack_r4x2_rows(const slm_weight *w, int64_t row0, int64_t n_groups, uint8_t *out) {
    slm_pack_rows(w, SLM_LAYOUT_R4X2, row0, n_groups, out);
}

/* Packed weights are streamed once per token. They are carved out of 2 MiB-aligned chunks
 * marked for transparent huge pages (before the first touch), so the stream crosses few TLB
 * entries: on a VM with nested paging that alone lifted a single core's gemv from DRAM from
 * ~17 to ~27 GB/s. Small matrices share chunks (a model's many 0.2-0.5 MB projections would
 * otherwise never fill a huge page). Each allocation records its chunk; a chunk is freed when
 * its last allocation is. Without THP the pages are ordinary ones; nothing fails. */
#define CHUNK_BYTES ((size_t)32 << 20)
#define HUGE_BYTES ((size_t)2 << 20)
#define HDR 64 /* keeps every allocation 64-byte aligned */

typedef struct chunk {
    size_t size, used;
    int64_t live;
} chunk;

static pthread_mutex_t arena_lock = PTHREAD_MUTEX_INITIALIZER;
static chunk *arena_current;

/* Chunks are mapped directly, not taken from malloc: glibc serves 32 MiB requests from its heap
 * once its mmap threshold has risen, and freed heap memory stays resident, so a process that
 * loads a model twice (bench: cold, then warm) would carry the first copy. munmap returns it. */
static chunk *chunk_new(size_t size) {
    size = (size + HUGE_BYTES - 1) / HUGE_BYTES * HUGE_BYTES;
    const size_t span = size + HUGE_BYTES; /* room to align the start to a huge page */
    uint8_t *raw = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return NULL;
    uint8_t *p = (uint8_t *)(((uintptr_t)raw + HUGE_BYTES - 1) / HUGE_BYTES * HUGE_BYTES);
    if (p > raw) munmap(raw, (size_t)(p - raw));
    if (raw + span > p + size) munmap(p + size, (size_t)(raw + span - (p + size)));
#ifdef MADV_HUGEPAGE
    madvise(p, size, MADV_HUGEPAGE);
#endif
    chunk *c = (chunk *)p;
    c->size = size;
    c->used = HDR;
    c->live = 0;
    return c;
}

static void chunk_free(chunk *c) { munmap(c, c->size); }

static void *alloc_packed(size_t bytes) {
    const size_t need = HDR + (bytes + 63) / 64 * 64;
    pthread_mutex_lock(&arena_lock);
    chunk *c;
    if (need > CHUNK_BYTES / 2) {
        c = chunk_new(HDR + need); /* a big matrix gets a chunk of its own */
    } else {
        if (!arena_current || arena_current->used + need > arena_current->size) {
            /* the chunk left behind is freed by its last allocation's slm_packed_free */
            chunk *fresh = chunk_new(CHUNK_BYTES);
            if (fresh) arena_current = fresh;
        }
        c = arena_current && arena_current->used + need <= arena_current->size ? arena_current : NULL;
    }
    uint8_t *p = NULL;
    if (c) {
        p = (uint8_t *)c + c->used;
        memcpy(p, &c, sizeof c);
        c->used += need;
        c->live++;
    }
    pthread_mutex_unlock(&arena_lock);
    return p ? p + HDR : NULL;
}

void slm_packed_free(void *ptr) {
    if (!ptr) return;
    chunk *c;
    memcpy(&c, (uint8_t *)ptr - HDR, sizeof c);
    pthread_mutex_lock(&arena_lock);
    if (--c->live == 0) {
        /* the last weight of a closed model: nothing of it stays mapped */
        if (c == arena_current) arena_current = NULL;
        chunk_free(c);
    }
    pthread_mutex_unlock(&arena_lock);
}

static int pack(slm_weight *w, int layout) {
    const int64_t tb = slm_r4x2_tile_bytes(w->type);
    if (!tb) return SLM_EUNSUPPORTED_TYPE;
    const int64_t nb = w->cols / SLM_QK, n_pairs = (nb + 1) / 2, n_groups = (w->rows + 3) / 4;
    const size_t total = (size_t)(n_groups * n_pairs * tb);
    uint8_t *out = alloc_packed(total);
    if (!out) return SLM_ENOMEM;
    slm_pack_rows(w, layout, 0, n_groups, out);
    w->packed = out;
    w->layout = layout;
    return SLM_OK;
}

int slm_pack_r4x2(slm_weight *w) { return pack(w, SLM_LAYOUT_R4X2); }

int slm_pack_copy(slm_weight *w) {
    const size_t total = (size_t)(w->rows * w->row_bytes);
    uint8_t *out = alloc_packed(total);
    if (!out) return SLM_ENOMEM;
    memcpy(out, w->data, total);
    w->packed = out;
    w->layout = SLM_LAYOUT_COPY;
    return SLM_OK;
}
int slm_pack_r4i(slm_weight *w) { return pack(w, SLM_LAYOUT_R4I); }
