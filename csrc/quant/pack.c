/* Load-time repacking into tiles of 4 rows x 2 blocks (SLM_LAYOUT_R4X2, see slm_quant.h).
 * One tile is what a SIMD kernel consumes per step: the 8 scales convert with one instruction,
 * and the 4 rows' quants share each activation load. The stream is one contiguous region per
 * group of 4 rows, which hardware prefetchers follow well. */
#include <stdlib.h>
#include <string.h>

#include "quant/kernels_impl.h"

int64_t slm_r4x2_tile_bytes(int type) {
    switch (type) {
    case SLM_TYPE_Q4_0: return 16 + 4 * 32;
    case SLM_TYPE_Q4_1: return 32 + 4 * 32;
    case SLM_TYPE_Q8_0: return 16 + 4 * 64;
    default: return 0;
    }
}

void slm_pack_r4x2_rows(const slm_weight *w, int64_t row0, int64_t n_groups, uint8_t *out) {
    const int64_t tb = slm_r4x2_tile_bytes(w->type);
    const int64_t nb = w->cols / SLM_QK, n_pairs = (nb + 1) / 2;
    memset(out, 0, (size_t)(n_groups * n_pairs * tb)); /* padding rows/blocks: zero scales and quants */
    const int64_t bb = slm_type_block_bytes(w->type);
    const int nsc = w->type == SLM_TYPE_Q4_1 ? 2 : 1;   /* fp16 fields at the block start */
    const int qbytes = (int)(bb - 2 * nsc);
    for (int64_t g = 0; g < n_groups; g++) {
        for (int64_t p = 0; p < n_pairs; p++) {
            uint8_t *tile = out + (g * n_pairs + p) * tb;
            slm_half *d = (slm_half *)tile, *m = d + 8;
            uint8_t *qs = tile + 16 * nsc;
            for (int r = 0; r < 4; r++) {
                const int64_t row = row0 + g * 4 + r;
                if (row >= w->rows) break;
                for (int k = 0; k < 2; k++) {
                    const int64_t b = 2 * p + k;
                    if (b >= nb) break;
                    const uint8_t *blk = (const uint8_t *)w->data + row * w->row_bytes + b * bb;
                    memcpy(&d[2 * r + k], blk, 2);
                    if (nsc == 2) memcpy(&m[2 * r + k], blk + 2, 2);
                    memcpy(qs + (2 * r + k) * qbytes, blk + 2 * nsc, (size_t)qbytes);
                }
            }
        }
    }
}

int slm_pack_r4x2(slm_weight *w) {
    const int64_t tb = slm_r4x2_tile_bytes(w->type);
    if (!tb) return SLM_EUNSUPPORTED_TYPE;
    const int64_t nb = w->cols / SLM_QK, n_pairs = (nb + 1) / 2, n_groups = (w->rows + 3) / 4;
    const size_t total = (size_t)(n_groups * n_pairs * tb);
    uint8_t *out = aligned_alloc(64, (total + 63) / 64 * 64);
    if (!out) return SLM_ENOMEM;
    slm_pack_r4x2_rows(w, 0, n_groups, out);
    w->packed = out;
    w->layout = SLM_LAYOUT_R4X2;
    return SLM_OK;
}
