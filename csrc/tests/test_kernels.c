/* Standalone kernel test: every kernel path this CPU can run against the reference.
 *   - activation quantizers bit-identical to slm_quantize_row_ref
 *   - integer block dot products exact (power-of-two scales make every float step exact)
 *   - float products within named tolerances of a double-precision reference
 *   - bad arguments return status codes
 * Usage: test_kernels [--expect-best ISA] [--expect-active ISA]; exit status 0 only if all pass.
 * Built natively or cross-compiled for aarch64 and run under qemu (scripts/test_arm64_kernels.sh). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slm.h"
#include "model/attention.h"

/* |kernel - double reference| <= MATMUL_REL_TOL * sum|w_i a_i| for every output. */
#define MATMUL_REL_TOL 1.28e-4
/* |attention output - double reference| <= ATTEND_REL_TOL * sum_p att_p |v_p,i| (a convex sum of
 * the values, each score with float rounding and an exponential within 2e-7). */
#define ATTEND_REL_TOL 2e-5

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

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}
static float rnd_normalish(void) { /* sum of uniforms: bell-shaped, deterministic */
    float s = 0;
    for (int i = 0; i < 4; i++) s += (float)(rnd() % 20001) / 10000.0f - 1.0f;
    return s;
}

static const int quant_types[] = {SLM_TYPE_Q4_0, SLM_TYPE_Q4_1, SLM_TYPE_Q8_0};
static const int weight_types[] = {SLM_TYPE_Q4_0, SLM_TYPE_Q4_1, SLM_TYPE_Q8_0, SLM_TYPE_F16, SLM_TYPE_F32};

static int act_type(int wt) {
    return wt == SLM_TYPE_Q4_1 ? SLM_TYPE_Q8_1 : wt == SLM_TYPE_F16 || wt == SLM_TYPE_F32 ? SLM_TYPE_F32 : SLM_TYPE_Q8_0;
}

static void fill_x(float *x, int64_t n, int kind) {
    for (int64_t i = 0; i < n; i++) {
        switch (kind) {
        case 0: x[i] = rnd_normalish(); break;
        case 1: x[i] = (float)((int)(rnd() % 509) - 254) / 2.0f; break; /* exact rounding ties */
        case 2: x[i] = 0.0f; break;
        default: x[i] = (i % 37 == 0 ? 300.0f : 1.0f) * rnd_normalish() * 0.02f; break; /* outliers */
        }
    }
}

static void test_activation_quantizers(int isa) {
    const int64_t n = 320;
    float x[320];
    uint8_t ref[400], got[400];
    for (size_t k = 0; k < sizeof quant_types / sizeof quant_types[0]; k++) {
        const int wt = quant_types[k];
        const slm_type_traits *tr = slm_get_traits(wt, isa);
        CHECK(tr != NULL, "%s has no %s kernel", slm_isa_name(isa), slm_type_name(wt));
        if (!tr) continue;
        for (int kind = 0; kind < 4; kind++) {
            fill_x(x, n, kind);
            const int64_t rb = slm_row_bytes(act_type(wt), n);
            slm_quantize_row_ref(act_type(wt), x, ref, n);
            memset(got, 0xAB, sizeof got);
            tr->from_float(x, got, n);
            CHECK(memcmp(ref, got, (size_t)rb) == 0, "%s %s activation quantizer differs from reference (kind %d)",
                  slm_isa_name(isa), slm_type_name(wt), kind);
        }
    }
}

/* Independent integer product of one weight row and one activation row (from the bytes). */
static int64_t exact_dot(int wt, const uint8_t *w, const uint8_t *a, int64_t n) {
    int64_t total = 0;
    const int64_t wbb = slm_type_block_bytes(wt), abb = slm_type_block_bytes(act_type(wt));
    for (int64_t b = 0; b < n / 32; b++) {
        const uint8_t *wb = w + b * wbb, *ab = a + b * abb;
        const int8_t *aq = (const int8_t *)(ab + abb - 32);
        for (int j = 0; j < 32; j++) {
            int wv;
            if (wt == SLM_TYPE_Q8_0) wv = ((const int8_t *)(wb + 2))[j];
            else {
                const uint8_t byte = wb[wbb - 16 + (j & 15)];
                wv = (j < 16 ? byte & 15 : byte >> 4) - (wt == SLM_TYPE_Q4_0 ? 8 : 0);
            }
            total += (int64_t)wv * aq[j];
        }
        if (wt == SLM_TYPE_Q4_1) {
            slm_half m, s;
            memcpy(&m, wb + 2, 2);
            memcpy(&s, ab + 2, 2);
            total += (int64_t)slm_fp16_to_fp32(m) * (int64_t)slm_fp16_to_fp32(s);
        }
    }
    return total;
}

static void test_exact_integer_dots(int isa) {
    enum { ROWS = 13, N = 224, NTOK = 11 }; /* 11 tokens: a whole prefill pass of 8 and a rest */
    const slm_half one = slm_fp32_to_fp16(1.0f);
    for (size_t k = 0; k < sizeof quant_types / sizeof quant_types[0]; k++) {
        const int wt = quant_types[k], at = act_type(wt);
        const int64_t wrb = slm_row_bytes(wt, N), arb = slm_row_bytes(at, N);
        const int64_t wbb = slm_type_block_bytes(wt), abb = slm_type_block_bytes(at);
        uint8_t *w = malloc((size_t)(ROWS * wrb)), *a = malloc((size_t)(NTOK * arb));
        for (int64_t i = 0; i < ROWS * wrb; i++) w[i] = (uint8_t)rnd();
        for (int64_t r = 0; r < ROWS; r++)
            for (int64_t b = 0; b < N / 32; b++) {
                uint8_t *blk = w + r * wrb + b * wbb;
                memcpy(blk, &one, 2);
                if (wt == SLM_TYPE_Q4_1) {
                    const slm_half m = slm_fp32_to_fp16((float)((int)(rnd() % 7) - 3));
                    memcpy(blk + 2, &m, 2);
                }
            }
        for (int64_t t = 0; t < NTOK; t++)
            for (int64_t b = 0; b < N / 32; b++) {
                uint8_t *blk = a + t * arb + b * abb;
                memcpy(blk, &one, 2);
                if (at == SLM_TYPE_Q8_1) {
                    const slm_half s = slm_fp32_to_fp16((float)((int)(rnd() % 81) - 40));
                    memcpy(blk + 2, &s, 2);
                }
                for (int j = 0; j < 32; j++) blk[abb - 32 + j] = (uint8_t)(int8_t)((int)(rnd() % 255) - 127);
            }
        const slm_type_traits *tr = slm_get_traits(wt, isa);
        for (int64_t r = 0; r < ROWS && tr; r++) {
            float s = 0;
            tr->vec_dot(N, &s, w + r * wrb, a);
            const int64_t e = exact_dot(wt, w + r * wrb, a, N);
            CHECK((double)s == (double)e, "%s %s vec_dot row %lld: %.1f != %lld", slm_isa_name(isa),
                  slm_type_name(wt), (long long)r, s, (long long)e);
        }
        for (int prepared = 0; prepared < 2; prepared++) {
            slm_weight wm = {wt, ROWS, N, wrb, w, NULL, 0};
            if (prepared) CHECK(slm_weight_prepare(&wm) == SLM_OK, "prepare");
            for (int64_t nt = 1; nt <= NTOK; nt += NTOK - 1) {
                float y[NTOK * ROWS];
                const int st = slm_matmul_rows_isa(&wm, a, arb, nt, y, ROWS, 0, ROWS, isa);
                CHECK(st == SLM_OK, "matmul status %d", st);
                for (int64_t t = 0; t < nt; t++)
                    for (int64_t r = 0; r < ROWS; r++) {
                        const int64_t e = exact_dot(wt, w + r * wrb, a + t * arb, N);
                        CHECK((double)y[t * ROWS + r] == (double)e,
                              "%s %s matmul (%s, n_tok %lld) [%lld,%lld]: %.1f != %lld", slm_isa_name(isa),
                              slm_type_name(wt), prepared ? "packed" : "plain", (long long)nt, (long long)t,
                              (long long)r, y[t * ROWS + r], (long long)e);
                    }
            }
            slm_weight_release(&wm);
        }
        free(w);
        free(a);
    }
}

static void test_float_products(int isa) {
    static const int64_t shapes[][3] = {{576, 576, 1}, {37, 160, 5}, {130, 96, 17}, {8, 32, 2}};
    for (size_t k = 0; k < sizeof weight_types / sizeof weight_types[0]; k++) {
        const int wt = weight_types[k], at = act_type(wt);
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            const int64_t rows = shapes[s][0], n = shapes[s][1], nt = shapes[s][2];
            const int64_t wrb = slm_row_bytes(wt, n), arb = slm_row_bytes(at, n);
            float *wf = malloc(sizeof(float) * (size_t)(rows * n)), *x = malloc(sizeof(float) * (size_t)(nt * n));
            float *wd = malloc(sizeof(float) * (size_t)(rows * n)), *ad = malloc(sizeof(float) * (size_t)(nt * n));
            float *y = malloc(sizeof(float) * (size_t)(nt * rows));
            uint8_t *w = malloc((size_t)(rows * wrb)), *a = malloc((size_t)(nt * arb));
            fill_x(wf, rows * n, 0);
            fill_x(x, nt * n, 0);
            for (int64_t r = 0; r < rows; r++) {
                slm_quantize_row_ref(wt, wf + r * n, w + r * wrb, n);
                slm_dequantize_row(wt, w + r * wrb, wd + r * n, n);
            }
            const slm_type_traits *tr = slm_get_traits(wt, isa);
            for (int64_t t = 0; t < nt && tr; t++) {
                tr->from_float(x + t * n, a + t * arb, n);
                slm_dequantize_row(at, a + t * arb, ad + t * n, n);
            }
            for (int prepared = 0; prepared < 2 && tr; prepared++) {
                slm_weight wm = {wt, rows, n, wrb, w, NULL, 0};
                if (prepared) slm_weight_prepare(&wm);
                CHECK(slm_matmul_rows_isa(&wm, a, arb, nt, y, rows, 0, rows, isa) == SLM_OK, "matmul");
                double worst = 0;
                for (int64_t t = 0; t < nt; t++)
                    for (int64_t r = 0; r < rows; r++) {
                        double e = 0, scale = 0;
                        for (int64_t i = 0; i < n; i++) {
                            double wv = wd[r * n + i];
                            if (wt == SLM_TYPE_Q4_1) { /* the min term goes through the block's s */
                                slm_half m;
                                memcpy(&m, w + r * wrb + (i / 32) * 20 + 2, 2);
                                wv -= slm_fp16_to_fp32(m);
                            }
                            e += wv * ad[t * n + i];
                            scale += fabs(wv * ad[t * n + i]);
                        }
                        if (wt == SLM_TYPE_Q4_1)
                            for (int64_t b = 0; b < n / 32; b++) {
                                slm_half m, sh;
                                memcpy(&m, w + r * wrb + b * 20 + 2, 2);
                                memcpy(&sh, a + t * arb + b * 36 + 2, 2);
                                e += (double)slm_fp16_to_fp32(m) * slm_fp16_to_fp32(sh);
                                scale += fabs((double)slm_fp16_to_fp32(m) * slm_fp16_to_fp32(sh));
                            }
                        const double rel = fabs(y[t * rows + r] - e) / (scale > 0 ? scale : 1);
                        if (rel > worst) worst = rel;
                    }
                /* rows split at an odd row (as threads split them) give identical numbers */
                float *y2 = malloc(sizeof(float) * (size_t)(nt * rows));
                const int64_t cut = rows / 2 | 1;
                slm_matmul_rows_isa(&wm, a, arb, nt, y2, rows, 0, cut, isa);
                slm_matmul_rows_isa(&wm, a, arb, nt, y2, rows, cut, rows, isa);
                CHECK(memcmp(y, y2, sizeof(float) * (size_t)(nt * rows)) == 0, "%s %s %lldx%lld n_tok %lld (%s): "
                      "result depends on the row split", slm_isa_name(isa), slm_type_name(wt), (long long)rows,
                      (long long)n, (long long)nt, prepared ? "packed" : "plain");
                free(y2);
                CHECK(worst <= MATMUL_REL_TOL, "%s %s %lldx%lld n_tok %lld (%s): relative error %.3g > %.3g",
                      slm_isa_name(isa), slm_type_name(wt), (long long)rows, (long long)n, (long long)nt,
                      prepared ? "packed" : "plain", worst, MATMUL_REL_TOL);
                slm_weight_release(&wm);
            }
            free(wf); free(x); free(wd); free(ad); free(y); free(w); free(a);
        }
    }
}

/* One head's attention against a double reference: head sizes that take the vector paths (64,
 * Gemma's 256, 80 with a tail of 16) and one that falls back (6); fp32 and fp16 caches; the
 * cached rows kv_stride apart (grouped heads interleaved). */
static void test_attention(int isa) {
    static const int dims[] = {64, 256, 80, 6}, positions[] = {1, 7, 37};
    const slm_attend_fn attend = slm_attend_for(isa);
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++)
        for (size_t pi = 0; pi < sizeof positions / sizeof positions[0]; pi++)
            for (int f16 = 0; f16 < 2; f16++) {
                const int hd = dims[di], n_pos = positions[pi];
                const size_t stride = (size_t)hd * 3;
                float *q = malloc(sizeof(float) * (size_t)hd), *att = malloc(sizeof(float) * (size_t)n_pos);
                float *out = malloc(sizeof(float) * (size_t)hd);
                float *kf = malloc(sizeof(float) * stride * (size_t)n_pos), *vf = malloc(sizeof(float) * stride * (size_t)n_pos);
                slm_half *kh = malloc(sizeof(slm_half) * stride * (size_t)n_pos), *vh = malloc(sizeof(slm_half) * stride * (size_t)n_pos);
                fill_x(q, hd, 0);
                fill_x(kf, (int64_t)stride * n_pos, 0);
                fill_x(vf, (int64_t)stride * n_pos, 0);
                for (size_t i = 0; i < stride * (size_t)n_pos; i++) {
                    kh[i] = slm_fp32_to_fp16(kf[i]);
                    vh[i] = slm_fp32_to_fp16(vf[i]);
                    if (f16) kf[i] = slm_fp16_to_fp32(kh[i]), vf[i] = slm_fp16_to_fp32(vh[i]);
                }
                const float scale = 1.0f / sqrtf((float)hd);
                attend(q, f16 ? (const void *)kh : kf, f16 ? (const void *)vh : vf, stride, n_pos, hd, scale, f16, att, out);
                double *w = malloc(sizeof(double) * (size_t)n_pos), max = -1e300, sum = 0, worst = 0;
                for (int p = 0; p < n_pos; p++) {
                    double d = 0;
                    for (int i = 0; i < hd; i++) d += (double)q[i] * kf[(size_t)p * stride + i];
                    w[p] = d * scale;
                    if (w[p] > max) max = w[p];
                }
                for (int p = 0; p < n_pos; p++) sum += (w[p] = exp(w[p] - max));
                for (int i = 0; i < hd; i++) {
                    double e = 0, mag = 0;
                    for (int p = 0; p < n_pos; p++) {
                        e += w[p] / sum * vf[(size_t)p * stride + i];
                        mag += w[p] / sum * fabs(vf[(size_t)p * stride + i]);
                    }
                    const double rel = fabs(out[i] - e) / (mag > 0 ? mag : 1);
                    if (rel > worst) worst = rel;
                }
                CHECK(worst <= ATTEND_REL_TOL, "%s attention head %d, %d positions, %s: relative error %.3g > %.3g",
                      slm_isa_name(isa), hd, n_pos, f16 ? "fp16" : "f32", worst, ATTEND_REL_TOL);
                free(q); free(att); free(out); free(kf); free(vf); free(kh); free(vh); free(w);
            }
}

/* SwiGLU against double precision, over ordinary values and far tails (exp's clamped range). */
static void test_swiglu(int isa) {
    enum { N = 203 };
    float g[N], u[N];
    fill_x(g, N, 0);
    fill_x(u, N, 0);
    for (int i = 0; i < N; i++) g[i] *= 8.0f;
    g[0] = 95.0f, g[1] = -95.0f, g[2] = 0.0f, g[3] = 87.5f, g[4] = -87.5f;
    double ref[N];
    for (int i = 0; i < N; i++) ref[i] = (double)g[i] / (1.0 + exp(-(double)g[i])) * u[i];
    slm_swiglu_for(isa)(g, u, N);
    double worst = 0;
    for (int i = 0; i < N; i++) {
        const double err = fabs(g[i] - ref[i]) / (fabs(ref[i]) > 1e-30 ? fabs(ref[i]) : 1.0);
        if (err > worst) worst = err;
    }
    CHECK(worst <= 1e-6, "%s swiglu: relative error %.3g > 1e-6", slm_isa_name(isa), worst);
}

static void test_bad_input(void) {
    uint8_t w[4 * 18] = {0};
    uint8_t a[34] = {0};
    float y[8];
    slm_weight wm = {SLM_TYPE_Q4_0, 4, 32, 18, w, NULL, 0};
    CHECK(slm_matmul_rows(&wm, a, 34, 1, y, 4, 0, 5) == SLM_EINVAL, "rows past the end");
    CHECK(slm_matmul_rows(&wm, a, 10, 1, y, 4, 0, 4) == SLM_ESHAPE, "short activation rows");
    CHECK(slm_matmul_rows(NULL, a, 34, 1, y, 4, 0, 4) == SLM_EINVAL, "null weight");
    wm.row_bytes = 17;
    CHECK(slm_matmul_rows(&wm, a, 34, 1, y, 4, 0, 4) == SLM_ESHAPE, "inconsistent row bytes");
    wm.row_bytes = 18;
    wm.type = 20; /* iq4_nl: a ggml type without kernels here */
    CHECK(slm_matmul_rows(&wm, a, 34, 1, y, 4, 0, 4) == SLM_EUNSUPPORTED_TYPE, "unknown type");
    float x[33] = {0};
    CHECK(slm_quantize_row_ref(SLM_TYPE_Q8_0, x, a, 33) == SLM_ESHAPE, "row not a whole block");
    CHECK(slm_isa_set(99) == SLM_EINVAL, "bad isa id");
}

int main(int argc, char **argv) {
    const char *expect_best = NULL, *expect_active = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--expect-best") == 0) expect_best = argv[i + 1];
        else if (strcmp(argv[i], "--expect-active") == 0) expect_active = argv[i + 1];
    }
    const int best = slm_isa_best(), active = slm_isa_active();
    printf("kernel paths:");
    for (int isa = 0; isa < SLM_ISA_COUNT; isa++)
        if (slm_isa_available(isa)) printf(" %s", slm_isa_name(isa));
    printf("\nbest: %s\nactive: %s\n", slm_isa_name(best), slm_isa_name(active));
    if (expect_best) CHECK(strcmp(expect_best, slm_isa_name(best)) == 0, "best path is %s, expected %s", slm_isa_name(best), expect_best);
    if (expect_active) CHECK(strcmp(expect_active, slm_isa_name(active)) == 0, "active path is %s, expected %s", slm_isa_name(active), expect_active);
    if (slm_isa_env_status() != SLM_OK) {
        printf("SLMPROF_ISA names a path this CPU cannot run (status %d)\n", slm_isa_env_status());
        return 1;
    }
    for (int isa = 0; isa < SLM_ISA_COUNT; isa++) {
        if (!slm_isa_available(isa)) continue;
        const int before = failures;
        slm_isa_set(isa);
        test_activation_quantizers(isa);
        test_exact_integer_dots(isa);
        test_float_products(isa);
        test_attention(isa);
        test_swiglu(isa);
        printf("%s %s\n", failures == before ? "PASS" : "FAIL", slm_isa_name(isa));
    }
    slm_isa_set(active);
    test_bad_input();
    printf("%d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
