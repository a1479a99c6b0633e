/* Standalone test of the 5-bit and K types on every kernel path this CPU can run:
 *   - the Q8_K activation quantizer of each path bit-identical to the reference
 *   - dot products and blocked products exactly equal to integer sums computed here from the
 *     block bytes, element by element (d = dmin = 1 and small activations keep every partial
 *     sum an exact float)
 *   - full-range products within a named tolerance of a double-precision reference, and
 *     independent of how the rows are split
 * Usage: test_kquants [--expect-best ISA]; exit status 0 only if all pass. Built natively or
 * cross-compiled for aarch64 and run under qemu (scripts/test_arm64_kernels.sh). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slm.h"

#define MATMUL_REL_TOL 1.28e-4 /* |kernel - double| <= tol * sum|w_i a_i| */

static int failures, checks;

#define CHECK(cond, ...)                                    \
    do {                                                    \
        checks++;                                           \
        if (!(cond)) {                                      \
            failures++;                                     \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);     \
            printf(__VA_ARGS__);                            \
            printf("\n");                                   \
        }                                                   \
    } while (0)

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}
static float rnd_normalish(void) {
    float s = 0;
    for (int i = 0; i < 4; i++) s += (float)(rnd() % 20001) / 10000.0f - 1.0f;
    return s;
}

static const int types[] = {SLM_TYPE_Q5_0, SLM_TYPE_Q5_1, SLM_TYPE_Q2_K, SLM_TYPE_Q3_K,
                            SLM_TYPE_Q4_K, SLM_TYPE_Q5_K, SLM_TYPE_Q6_K};
#define N_TYPES (int)(sizeof types / sizeof types[0])

static int is_k(int t) { return t >= SLM_TYPE_Q2_K && t <= SLM_TYPE_Q6_K; }
static int act_type(int t) { return is_k(t) ? SLM_TYPE_Q8_K : t == SLM_TYPE_Q5_1 ? SLM_TYPE_Q8_1 : SLM_TYPE_Q8_0; }

/* ---- the block layouts, element by element (independent of csrc/quant) ---- */

/* Integer value of element e of a block (the offset taken off), its group's integer scale and
 * min: the float value is d*scale*value - dmin*min (Q5: d*value (+ m)). */
static void element(int t, const uint8_t *blk, int e, int *value, int *scale, int *min) {
    *scale = 1;
    *min = 0;
    switch (t) {
    case SLM_TYPE_Q5_0:
    case SLM_TYPE_Q5_1: {
        const int o = t == SLM_TYPE_Q5_0 ? 2 : 4;
        const uint32_t qh = blk[o] | blk[o + 1] << 8 | blk[o + 2] << 16 | (uint32_t)blk[o + 3] << 24;
        const uint8_t byte = blk[o + 4 + e % 16];
        const int v = (e < 16 ? byte & 15 : byte >> 4) | ((qh >> e) & 1) << 4;
        *value = v - (t == SLM_TYPE_Q5_0 ? 16 : 0);
        return;
    }
    case SLM_TYPE_Q2_K: { /* scales[16] qs[64] d dmin */
        *value = (blk[16 + 32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
        *scale = blk[e / 16] & 15;
        *min = blk[e / 16] >> 4;
        return;
    }
    case SLM_TYPE_Q3_K: { /* hmask[32] qs[64] scales[12] d */
        const int low = (blk[32 + 32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
        const int high = (blk[e % 32] >> (e / 32)) & 1;
        *value = low - (high ? 0 : 4);
        const int j = e / 16;
        const uint8_t *s = blk + 96;
        const int lo = j < 8 ? s[j] & 15 : s[j - 8] >> 4;
        *scale = (lo | ((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4) - 32;
        return;
    }
    case SLM_TYPE_Q4_K:
    case SLM_TYPE_Q5_K: { /* d dmin scales[12] [qh[32]] qs[128] */
        const uint8_t *s = blk + 4;
        const int j = e / 32;
        if (j < 4) {
            *scale = s[j] & 63;
            *min = s[j + 4] & 63;
        } else {
            *scale = (s[j + 4] & 15) | (s[j - 4] >> 6) << 4;
            *min = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
        }
        const uint8_t *qs = blk + (t == SLM_TYPE_Q5_K ? 48 : 16);
        const uint8_t byte = qs[32 * (e / 64) + e % 32];
        *value = e % 64 < 32 ? byte & 15 : byte >> 4;
        if (t == SLM_TYPE_Q5_K) *value |= ((blk[16 + e % 32] >> (e / 32)) & 1) << 4;
        return;
    }
    default: { /* Q6_K: ql[128] qh[64] scales[16] d */
        const int h = e / 128, c = (e % 128) / 32, l = e % 32;
        const uint8_t lb = blk[64 * h + 32 * (c & 1) + l];
        const int low = c < 2 ? lb & 15 : lb >> 4;
        const int high = (blk[128 + 32 * h + l] >> (2 * c)) & 3;
        *value = (low | high << 4) - 32;
        *scale = (int8_t)blk[192 + e / 16];
        return;
    }
    }
}

/* Byte offsets of the fp16 d (and dmin / m) fields of a block. */
static void scale_fields(int t, int *d_off, int *d2_off) {
    *d2_off = -1;
    switch (t) {
    case SLM_TYPE_Q5_0: *d_off = 0; break;
    case SLM_TYPE_Q5_1: *d_off = 0; *d2_off = 2; break;
    case SLM_TYPE_Q2_K: *d_off = 80; *d2_off = 82; break;
    case SLM_TYPE_Q3_K: *d_off = 108; break;
    case SLM_TYPE_Q4_K:
    case SLM_TYPE_Q5_K: *d_off = 0; *d2_off = 2; break;
    default: *d_off = 208; break;
    }
}

/* Exact w . a with d = dmin = 1 on both sides (Q5_1: + m*s per block, m and s small integers). */
static int64_t exact_dot(int t, const uint8_t *w, const uint8_t *a, int64_t n) {
    const int64_t be = slm_type_block_elems(t), wbb = slm_type_block_bytes(t), abb = slm_type_block_bytes(act_type(t));
    int64_t total = 0;
    for (int64_t b = 0; b < n / be; b++) {
        const uint8_t *wb = w + b * wbb, *ab = a + b * abb;
        const int8_t *aq = (const int8_t *)(ab + (is_k(t) ? 4 : abb - 32));
        for (int e = 0; e < be; e++) {
            int v, sc, mn;
            element(t, wb, e, &v, &sc, &mn);
            total += (int64_t)sc * v * aq[e] - (int64_t)mn * aq[e];
        }
        if (t == SLM_TYPE_Q5_1) {
            slm_half m, s;
            memcpy(&m, wb + 2, 2);
            memcpy(&s, ab + 2, 2);
            total += (int64_t)slm_fp16_to_fp32(m) * (int64_t)slm_fp16_to_fp32(s);
        }
    }
    return total;
}

/* Random weight bytes with fp16 d = dmin = 1 (Q5_1's m a small integer). */
static void random_weights(int t, uint8_t *w, int64_t rows, int64_t n) {
    const int64_t rb = slm_row_bytes(t, n), bb = slm_type_block_bytes(t);
    const slm_half one = slm_fp32_to_fp16(1.0f);
    int d_off, d2_off;
    scale_fields(t, &d_off, &d2_off);
    for (int64_t i = 0; i < rows * rb; i++) w[i] = (uint8_t)rnd();
    for (int64_t b = 0; b < rows * rb / bb; b++) {
        uint8_t *blk = w + b * bb;
        memcpy(blk + d_off, &one, 2);
        if (d2_off >= 0) {
            const slm_half m = t == SLM_TYPE_Q5_1 ? slm_fp32_to_fp16((float)((int)(rnd() % 7) - 3)) : one;
            memcpy(blk + d2_off, &m, 2);
        }
    }
}

/* Random activation rows in the type's activation format: d = 1, quants in -lim..lim, and
 * consistent Q8_K bsums (Q8_1: a small integer s). */
static void random_acts(int t, uint8_t *a, int64_t n_tok, int64_t n, int lim) {
    const int at = act_type(t);
    const int64_t bb = slm_type_block_bytes(at), nb = n_tok * slm_row_bytes(at, n) / bb;
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *blk = a + b * bb;
        if (at == SLM_TYPE_Q8_K) {
            slm_block_q8_K *k = (slm_block_q8_K *)blk;
            k->d = 1.0f;
            for (int i = 0; i < SLM_QK_K; i++) k->qs[i] = (int8_t)((int)(rnd() % (2 * lim + 1)) - lim);
            for (int g = 0; g < 16; g++) {
                int s = 0;
                for (int i = 0; i < 16; i++) s += k->qs[16 * g + i];
                k->bsums[g] = (int16_t)s;
            }
        } else {
            const slm_half one = slm_fp32_to_fp16(1.0f);
            memcpy(blk, &one, 2);
            if (at == SLM_TYPE_Q8_1) {
                const slm_half s = slm_fp32_to_fp16((float)((int)(rnd() % 81) - 40));
                memcpy(blk + 2, &s, 2);
            }
            for (int j = 0; j < 32; j++) blk[bb - 32 + j] = (uint8_t)(int8_t)((int)(rnd() % (2 * lim + 1)) - lim);
        }
    }
}

static void test_q8_K_quantizer(int isa) {
    const slm_type_traits *tr = slm_get_traits(SLM_TYPE_Q4_K, isa);
    CHECK(tr != NULL && tr->vec_dot_type == SLM_TYPE_Q8_K, "%s: Q4_K takes Q8_K activations", slm_isa_name(isa));
    if (!tr) return;
    enum { N = 768 };
    float x[N];
    slm_block_q8_K ref[N / 256], got[N / 256];
    for (int kind = 0; kind < 5; kind++) {
        for (int i = 0; i < N; i++) {
            switch (kind) {
            case 0: x[i] = rnd_normalish(); break;
            case 1: x[i] = (float)((int)(rnd() % 253) - 126) + 0.5f; break; /* rounding ties */
            case 2: x[i] = 0.0f; break;
            case 3: x[i] = (i % 41 == 0 ? 300.0f : 1.0f) * rnd_normalish(); break;
            default: x[i] = (i % 256 == 7) ? 2.0f : (i % 256 == 9) ? -2.0f : 0.01f * rnd_normalish(); break;
            }
        }
        if (kind == 1)
            for (int b = 0; b < N / 256; b++) x[256 * b + 3] = -127.0f; /* scale 1: x*iscale exact */
        slm_quantize_row_ref(SLM_TYPE_Q8_K, x, ref, N);
        memset(got, 0xAB, sizeof got);
        tr->from_float(x, got, N);
        CHECK(memcmp(ref, got, sizeof ref) == 0, "%s Q8_K activation quantizer differs from the reference (kind %d)",
              slm_isa_name(isa), kind);
    }
}

static void test_exact(int isa) {
    enum { ROWS = 11, N = 512, NTOK = 6 };
    for (int k = 0; k < N_TYPES; k++) {
        const int t = types[k], at = act_type(t);
        const int64_t wrb = slm_row_bytes(t, N), arb = slm_row_bytes(at, N);
        uint8_t *w = malloc((size_t)(ROWS * wrb)), *a = malloc((size_t)(NTOK * arb));
        random_weights(t, w, ROWS, N);
        random_acts(t, a, NTOK, N, is_k(t) ? 7 : 127);
        const slm_type_traits *tr = slm_get_traits(t, isa);
        CHECK(tr != NULL, "%s has no %s kernels", slm_isa_name(isa), slm_type_name(t));
        if (!tr) { free(w); free(a); continue; }
        CHECK(tr->vec_dot_type == at, "%s %s: activation type %d, expected %d", slm_isa_name(isa), slm_type_name(t),
              tr->vec_dot_type, at);
        for (int64_t r = 0; r < ROWS; r++)
            for (int64_t j = 0; j < NTOK; j++) {
                float s = 0;
                tr->vec_dot(N, &s, w + r * wrb, a + j * arb);
                const int64_t e = exact_dot(t, w + r * wrb, a + j * arb, N);
                CHECK((double)s == (double)e, "%s %s vec_dot row %lld tok %lld: %.1f != %lld", slm_isa_name(isa),
                      slm_type_name(t), (long long)r, (long long)j, s, (long long)e);
            }
        for (int prepared = 0; prepared < 2; prepared++) {
            slm_weight wm = {t, ROWS, N, wrb, w, NULL, 0};
            if (prepared) CHECK(slm_weight_prepare(&wm) == SLM_OK, "prepare %s", slm_type_name(t));
            for (int64_t nt = 1; nt <= NTOK; nt++) {
                float y[NTOK * ROWS];
                const int st = slm_matmul_rows_isa(&wm, a, arb, nt, y, ROWS, 0, ROWS, isa);
                CHECK(st == SLM_OK, "matmul status %d", st);
                for (int64_t j = 0; j < nt; j++)
                    for (int64_t r = 0; r < ROWS; r++) {
                        const int64_t e = exact_dot(t, w + r * wrb, a + j * arb, N);
                        CHECK((double)y[j * ROWS + r] == (double)e, "%s %s matmul (%s, n_tok %lld) [%lld,%lld]: %.1f != %lld",
                              slm_isa_name(isa), slm_type_name(t), prepared ? "prepared" : "plain", (long long)nt,
                              (long long)j, (long long)r, y[j * ROWS + r], (long long)e);
                    }
            }
            slm_weight_release(&wm);
        }
        free(w);
        free(a);
    }
}

/* Full-range data: real quantized weights and activations against double arithmetic. */
static void test_float_products(int isa) {
    static const int64_t shapes[][3] = {{33, 512, 1}, {37, 768, 5}, {70, 256, 17}, {8, 1536, 2}};
    for (int k = 0; k < N_TYPES; k++) {
        const int t = types[k], at = act_type(t);
        const slm_type_traits *tr = slm_get_traits(t, isa);
        if (!tr) continue;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            const int64_t rows = shapes[s][0], n = shapes[s][1], nt = shapes[s][2];
            const int64_t wrb = slm_row_bytes(t, n), arb = slm_row_bytes(at, n);
            float *wf = malloc(sizeof(float) * (size_t)(rows * n)), *x = malloc(sizeof(float) * (size_t)(nt * n));
            float *wd = malloc(sizeof(float) * (size_t)(rows * n)), *ad = malloc(sizeof(float) * (size_t)(nt * n));
            float *y = malloc(sizeof(float) * (size_t)(nt * rows)), *y2 = malloc(sizeof(float) * (size_t)(nt * rows));
            uint8_t *w = malloc((size_t)(rows * wrb)), *a = malloc((size_t)(nt * arb));
            for (int64_t i = 0; i < rows * n; i++) wf[i] = rnd_normalish() * (i % 97 == 0 ? 8.0f : 1.0f);
            for (int64_t i = 0; i < nt * n; i++) x[i] = rnd_normalish() * (i % 61 == 0 ? 20.0f : 1.0f);
            for (int64_t r = 0; r < rows; r++) {
                CHECK(slm_quantize_row_ref(t, wf + r * n, w + r * wrb, n) == SLM_OK, "quantize");
                slm_dequantize_row(t, w + r * wrb, wd + r * n, n);
            }
            for (int64_t j = 0; j < nt; j++) {
                tr->from_float(x + j * n, a + j * arb, n);
                slm_dequantize_row(at, a + j * arb, ad + j * n, n);
            }
            for (int prepared = 0; prepared < 2; prepared++) {
                slm_weight wm = {t, rows, n, wrb, w, NULL, 0};
                if (prepared) slm_weight_prepare(&wm);
                CHECK(slm_matmul_rows_isa(&wm, a, arb, nt, y, rows, 0, rows, isa) == SLM_OK, "matmul");
                double worst = 0;
                for (int64_t j = 0; j < nt; j++)
                    for (int64_t r = 0; r < rows; r++) {
                        double e = 0, scale = 0;
                        for (int64_t i = 0; i < n; i++) {
                            double wv = wd[r * n + i];
                            if (t == SLM_TYPE_Q5_1) { /* the min term goes through the block's s */
                                slm_half m;
                                memcpy(&m, w + r * wrb + (i / 32) * 24 + 2, 2);
                                wv -= slm_fp16_to_fp32(m);
                            }
                            e += wv * ad[j * n + i];
                            scale += fabs(wv * ad[j * n + i]);
                        }
                        if (t == SLM_TYPE_Q5_1)
                            for (int64_t b = 0; b < n / 32; b++) {
                                slm_half m, sh;
                                memcpy(&m, w + r * wrb + b * 24 + 2, 2);
                                memcpy(&sh, a + j * arb + b * 36 + 2, 2);
                                e += (double)slm_fp16_to_fp32(m) * slm_fp16_to_fp32(sh);
                                scale += fabs((double)slm_fp16_to_fp32(m) * slm_fp16_to_fp32(sh));
                            }
                        const double rel = fabs(y[j * rows + r] - e) / (scale > 0 ? scale : 1);
                        if (rel > worst) worst = rel;
                    }
                const int64_t cut = rows / 2 | 1;
                slm_matmul_rows_isa(&wm, a, arb, nt, y2, rows, 0, cut, isa);
                slm_matmul_rows_isa(&wm, a, arb, nt, y2, rows, cut, rows, isa);
                CHECK(memcmp(y, y2, sizeof(float) * (size_t)(nt * rows)) == 0,
                      "%s %s %lldx%lld n_tok %lld (%s): result depends on the row split", slm_isa_name(isa),
                      slm_type_name(t), (long long)rows, (long long)n, (long long)nt, prepared ? "prepared" : "plain");
                CHECK(worst <= MATMUL_REL_TOL, "%s %s %lldx%lld n_tok %lld (%s): relative error %.3g > %.3g",
                      slm_isa_name(isa), slm_type_name(t), (long long)rows, (long long)n, (long long)nt,
                      prepared ? "prepared" : "plain", worst, MATMUL_REL_TOL);
                slm_weight_release(&wm);
            }
            free(wf); free(x); free(wd); free(ad); free(y); free(y2); free(w); free(a);
        }
    }
}

/* Reference round trip: dequantize(quantize(x)) close to x, and the row-length rules. */
static void test_reference(void) {
    enum { N = 1024 };
    float x[N], back[N];
    uint8_t q[N * 2];
    /* relative RMSE bounds on bell-shaped data (the formats give about 0.04 .. 0.33) */
    static const double bound[] = {[SLM_TYPE_Q5_0] = 0.06, [SLM_TYPE_Q5_1] = 0.05, [SLM_TYPE_Q2_K] = 0.40,
                                   [SLM_TYPE_Q3_K] = 0.20, [SLM_TYPE_Q4_K] = 0.10, [SLM_TYPE_Q5_K] = 0.05,
                                   [SLM_TYPE_Q6_K] = 0.025};
    for (int i = 0; i < N; i++) x[i] = rnd_normalish();
    for (int k = 0; k < N_TYPES; k++) {
        const int t = types[k];
        CHECK(slm_type_computable(t), "%s computable", slm_type_name(t));
        CHECK(slm_quantize_row_ref(t, x, q, N) == SLM_OK, "quantize %s", slm_type_name(t));
        CHECK(slm_dequantize_row(t, q, back, N) == SLM_OK, "dequantize %s", slm_type_name(t));
        double se = 0, ss = 0;
        for (int i = 0; i < N; i++) {
            se += (double)(x[i] - back[i]) * (x[i] - back[i]);
            ss += (double)x[i] * x[i];
        }
        CHECK(sqrt(se / ss) <= bound[t], "%s round trip relative RMSE %.4f > %.4f", slm_type_name(t), sqrt(se / ss), bound[t]);
        const int64_t be = slm_type_block_elems(t);
        CHECK(slm_quantize_row_ref(t, x, q, be + 32 * (be > 32)) == SLM_ESHAPE || be == 32,
              "%s: a row of %lld elements is refused", slm_type_name(t), (long long)(be + 32));
    }
    CHECK(slm_quantize_row_ref(SLM_TYPE_Q4_K, x, q, 576) == SLM_ESHAPE, "Q4_K row of 576 refused");
    CHECK(slm_dequantize_row(SLM_TYPE_Q6_K, q, back, 288) == SLM_ESHAPE, "Q6_K row of 288 refused");
    x[5] = NAN;
    CHECK(slm_quantize_row_ref(SLM_TYPE_Q6_K, x, q, 256) == SLM_EINVAL, "NaN refused");
    float z[256] = {0};
    CHECK(slm_quantize_row_ref(SLM_TYPE_Q3_K, z, q, 256) == SLM_OK, "zeros");
    slm_dequantize_row(SLM_TYPE_Q3_K, q, back, 256);
    int zero = 1;
    for (int i = 0; i < 256; i++) zero &= back[i] == 0.0f;
    CHECK(zero, "Q3_K zeros round trip");
}

int main(int argc, char **argv) {
    const char *expect_best = NULL;
    for (int i = 1; i + 1 < argc; i += 2)
        if (strcmp(argv[i], "--expect-best") == 0) expect_best = argv[i + 1];
    if (expect_best)
        CHECK(strcmp(expect_best, slm_isa_name(slm_isa_best())) == 0, "best path is %s, expected %s",
              slm_isa_name(slm_isa_best()), expect_best);
    test_reference();
    for (int isa = 0; isa < SLM_ISA_COUNT; isa++) {
        if (!slm_isa_available(isa)) continue;
        const int before = failures;
        slm_isa_set(isa);
        test_q8_K_quantizer(isa);
        test_exact(isa);
        test_float_products(isa);
        printf("%s %s\n", failures == before ? "PASS" : "FAIL", slm_isa_name(isa));
    }
    printf("%d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
