/* Quantized products of the dot-product path (Cortex-A76, Pi 5) over R4I tiles (slm_quant.h),
 * included by neon_body.h when NEON_DOTPROD.
 *
 * One 16-byte register of an R4I block holds 4 bytes of each of 4 rows, so one by-element
 * SDOT (`sdot v.4s, w.16b, a.4b[lane]`) adds 16 products into the 4 rows' sums at once: a block
 * of 32 is 8 SDOTs for 4 rows, its sums land one row per lane, and no horizontal reduction is
 * ever needed. Per block and 4 rows the float work is then one convert, one scale product and
 * one multiply-add. Q4_0 needs no "- 8": its nibbles are stored flipped (x ^ 0x88), so a shift
 * or a mask yields 16 * (q - 8), and the convert divides by 16 for free (SCVTF #4, exact).
 *
 * Decode: 4 rows x 1 token per pass, both blocks of a tile at once (two independent SDOT
 * chains). Prefill: 4 rows x 8 tokens per pass: each unpacked weight register is used by 8
 * tokens, and the activations of the 8 tokens are laid out so that 2 tokens' quants are one
 * load and 4 tokens' scales another. Activations are converted into these layouts once per
 * product (fp16 scales to fp32, quants copied), which the row loops then only read. */

#define DP_TOKS 8 /* tokens per prefill pass */

/* Decode activations, per block pair: both blocks' quants, then [d0 d1 s0 s1] as fp32
 * (s: Q8_1's d * sum, zero for Q8_0). A block past an odd count is zero. */
typedef struct {
    int8_t q[64];
    float ds[4];
} dp_pair; /* 80 bytes */

/* Prefill activations, per DP_TOKS tokens and block: each token's 32 quants, then the
 * tokens' d and s as fp32. */
typedef struct {
    int8_t q[DP_TOKS][32];
    float d[DP_TOKS];
    float s[DP_TOKS];
} dp_tile; /* 320 bytes */

/* Block b of one activation row: its quants, d and s (0 for Q8_0). */
static inline const int8_t *dp_act_block(int type, const uint8_t *row, int64_t b, float *d, float *s) {
    if (type == SLM_TYPE_Q4_1) {
        const slm_block_q8_1 *a = (const slm_block_q8_1 *)row + b;
        *d = h2f(a->d);
        *s = h2f(a->s);
        return a->qs;
    }
    const slm_block_q8_0 *a = (const slm_block_q8_0 *)row + b;
    *d = h2f(a->d);
    *s = 0.0f;
    return a->qs;
}

static void dp_prepare_pairs(int type, const uint8_t *row, int64_t nb, dp_pair *out) {
    for (int64_t p = 0; p < (nb + 1) / 2; p++) {
        for (int k = 0; k < 2; k++) {
            const int64_t b = 2 * p + k;
            if (b >= nb) {
                memset(out[p].q + 32 * k, 0, 32);
                out[p].ds[k] = out[p].ds[2 + k] = 0.0f;
                continue;
            }
            const int8_t *q = dp_act_block(type, row, b, &out[p].ds[k], &out[p].ds[2 + k]);
            vst1q_s8_x2(out[p].q + 32 * k, vld1q_s8_x2(q));
        }
    }
}

/* Tokens [0, nt) of the tile from rows act + t * arb; tokens past nt are zero. */
static void dp_prepare_tile(int type, const uint8_t *act, int64_t arb, int nt, int64_t nb, dp_tile *out) {
    for (int64_t b = 0; b < nb; b++) {
        dp_tile *o = &out[b];
        for (int j = 0; j < DP_TOKS; j++) {
            if (j >= nt) {
                memset(o->q[j], 0, 32);
                o->d[j] = o->s[j] = 0.0f;
                continue;
            }
            const int8_t *q = dp_act_block(type, act + j * arb, b, &o->d[j], &o->s[j]);
            vst1q_s8_x2(o->q[j], vld1q_s8_x2(q));
        }
    }
}

/* One block's quants of a tile, as the 8 registers that pair with activation lanes:
 * w[i] with a0 (elements 0..15) lane i, w[4 + i] with a1 (elements 16..31) lane i. */
static inline __attribute__((always_inline)) void dp_unpack(int type, const uint8_t *q, int8x16_t w[8]) {
    /* single loads (GCC pairs them): GCC 12 spills the x4 load structs to the stack */
    if (type == SLM_TYPE_Q8_0) {
        for (int i = 0; i < 8; i++) w[i] = vld1q_s8((const int8_t *)q + 16 * i);
        return;
    }
    for (int i = 0; i < 4; i++) {
        const uint8x16_t v = vld1q_u8(q + 16 * i);
        if (type == SLM_TYPE_Q4_0) { /* 16 * (q - 8), from the flipped nibbles */
            w[i] = vreinterpretq_s8_u8(vshlq_n_u8(v, 4));
            w[4 + i] = vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0xF0)));
        } else {
            w[i] = vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0F)));
            w[4 + i] = vreinterpretq_s8_u8(vshrq_n_u8(v, 4));
        }
    }
}

/* The 4 rows' integer sums of one block against one token's 32 activations, as floats. */
static inline __attribute__((always_inline)) float32x4_t dp_block_sums(int type, const int8x16_t w[8], int8x16_t a0,
                                                                       int8x16_t a1) {
    int32x4_t s = vdupq_n_s32(0);
    s = vdotq_laneq_s32(s, w[0], a0, 0);
    s = vdotq_laneq_s32(s, w[1], a0, 1);
    s = vdotq_laneq_s32(s, w[2], a0, 2);
    s = vdotq_laneq_s32(s, w[3], a0, 3);
    s = vdotq_laneq_s32(s, w[4], a1, 0);
    s = vdotq_laneq_s32(s, w[5], a1, 1);
    s = vdotq_laneq_s32(s, w[6], a1, 2);
    s = vdotq_laneq_s32(s, w[7], a1, 3);
    return type == SLM_TYPE_Q4_0 ? vcvtq_n_f32_s32(s, 4) : vcvtq_f32_s32(s);
}

static inline int dp_quants_at(int type) { return type == SLM_TYPE_Q4_1 ? 32 : 16; }
static inline int dp_block_quants(int type) { return type == SLM_TYPE_Q8_0 ? 128 : 64; }
static inline int64_t dp_tile_bytes(int type) { return dp_quants_at(type) + 2 * dp_block_quants(type); }

/* The prefill kernel, 4 rows x 8 tokens over whole tiles (block pairs), in assembly: written in
 * C, GCC 12 (Debian bookworm's, Raspberry Pi OS's) runs out of the 32 vector registers and
 * spills the accumulators every block. Registers: v8-v15 the 8 tokens' accumulators (operands),
 * v16-v23 the block's unpacked quants (v20-v23 pair with elements 0..15, v16-v19 with 16..31),
 * v0-v3 two tokens' activations, v4/v5 their integer sums, v24/v25 the 8 tokens' d, v28/v29
 * their s (Q4_1), v30/v31 the 4 rows' scales of the tile's two blocks, v26/v27 their mins, v7
 * the nibble mask. Per block: 1 + 8 loads/unpack, then per token 8 SDOTs + 4 (zero, convert,
 * scale, accumulate) + 1/2 load: about 3.5 instructions per row x token x block. */
#define DP_SDOT8(acc, a0, a1)                                                                          \
    "sdot " acc ".4s, v20.16b, " a0 ".4b[0]\n\t"                                                       \
    "sdot " acc ".4s, v21.16b, " a0 ".4b[1]\n\t"                                                       \
    "sdot " acc ".4s, v22.16b, " a0 ".4b[2]\n\t"                                                       \
    "sdot " acc ".4s, v23.16b, " a0 ".4b[3]\n\t"                                                       \
    "sdot " acc ".4s, v16.16b, " a1 ".4b[0]\n\t"                                                       \
    "sdot " acc ".4s, v17.16b, " a1 ".4b[1]\n\t"                                                       \
    "sdot " acc ".4s, v18.16b, " a1 ".4b[2]\n\t"                                                       \
    "sdot " acc ".4s, v19.16b, " a1 ".4b[3]\n\t"
/* tokens j, j + 1 (accumulators A0, A1; their d in lanes L0, L1 of D) against the block's rows
 * with scales WD (and mins WM, s in S) */
#define DP_TOKEN_PAIR(A0, A1, D, S, L0, L1, CVT, WD, MIN_TERM)                                         \
    "ld1 {v0.16b-v3.16b}, [%[a]], #64\n\t"                                                             \
    "movi v4.4s, #0\n\t"                                                                               \
    "movi v5.4s, #0\n\t"                                                                               \
    DP_SDOT8("v4", "v0", "v1") DP_SDOT8("v5", "v2", "v3")                                              \
    "scvtf v4.4s, v4.4s" CVT "\n\t"                                                                    \
    "scvtf v5.4s, v5.4s" CVT "\n\t"                                                                    \
    "fmul v4.4s, v4.4s, " WD ".4s\n\t"                                                                 \
    "fmul v5.4s, v5.4s, " WD ".4s\n\t"                                                                 \
    "fmla %[" A0 "].4s, v4.4s, " D ".s[" L0 "]\n\t"                                                    \
    "fmla %[" A1 "].4s, v5.4s, " D ".s[" L1 "]\n\t"                                                    \
    MIN_TERM(A0, A1, S, L0, L1)
#define DP_NO_MIN(A0, A1, S, L0, L1, ...) ""
#define DP_MIN_V26(A0, A1, S, L0, L1) "fmla %[" A0 "].4s, v26.4s, " S ".s[" L0 "]\n\t" \
                                      "fmla %[" A1 "].4s, v26.4s, " S ".s[" L1 "]\n\t"
#define DP_MIN_V27(A0, A1, S, L0, L1) "fmla %[" A0 "].4s, v27.4s, " S ".s[" L0 "]\n\t" \
                                      "fmla %[" A1 "].4s, v27.4s, " S ".s[" L1 "]\n\t"
/* one block: unpack (UNPACK), the 8 tokens' d (and s), 4 token pairs, then past d and s */
#define DP_BLOCK(UNPACK, CVT, WD, MIN_TERM)                                                            \
    UNPACK                                                                                             \
    "ldp q24, q25, [%[a], #256]\n\t"                                                                   \
    "ldp q28, q29, [%[a], #288]\n\t"                                                                   \
    DP_TOKEN_PAIR("a0", "a1", "v24", "v28", "0", "1", CVT, WD, MIN_TERM)                               \
    DP_TOKEN_PAIR("a2", "a3", "v24", "v28", "2", "3", CVT, WD, MIN_TERM)                               \
    DP_TOKEN_PAIR("a4", "a5", "v25", "v29", "0", "1", CVT, WD, MIN_TERM)                               \
    DP_TOKEN_PAIR("a6", "a7", "v25", "v29", "2", "3", CVT, WD, MIN_TERM)                               \
    "add %[a], %[a], #64\n\t"
#define DP_UNPACK_Q4_0                                                                                 \
    "ld1 {v16.16b-v19.16b}, [%[w]], #64\n\t"                                                           \
    "shl v20.16b, v16.16b, #4\n\t" "shl v21.16b, v17.16b, #4\n\t"                                      \
    "shl v22.16b, v18.16b, #4\n\t" "shl v23.16b, v19.16b, #4\n\t"                                      \
    "and v16.16b, v16.16b, v7.16b\n\t" "and v17.16b, v17.16b, v7.16b\n\t"                              \
    "and v18.16b, v18.16b, v7.16b\n\t" "and v19.16b, v19.16b, v7.16b\n\t"
#define DP_UNPACK_Q4_1                                                                                 \
    "ld1 {v16.16b-v19.16b}, [%[w]], #64\n\t"                                                           \
    "and v20.16b, v16.16b, v7.16b\n\t" "and v21.16b, v17.16b, v7.16b\n\t"                              \
    "and v22.16b, v18.16b, v7.16b\n\t" "and v23.16b, v19.16b, v7.16b\n\t"                              \
    "ushr v16.16b, v16.16b, #4\n\t" "ushr v17.16b, v17.16b, #4\n\t"                                    \
    "ushr v18.16b, v18.16b, #4\n\t" "ushr v19.16b, v19.16b, #4\n\t"
#define DP_UNPACK_Q8_0                                                                                 \
    "ld1 {v20.16b-v23.16b}, [%[w]], #64\n\t"                                                           \
    "ld1 {v16.16b-v19.16b}, [%[w]], #64\n\t"
#define DP_SCALES "ldr q6, [%[w]], #16\n\t" "fcvtl v30.4s, v6.4h\n\t" "fcvtl2 v31.4s, v6.8h\n\t"
#define DP_MINS "ldr q6, [%[w]], #16\n\t" "fcvtl v26.4s, v6.4h\n\t" "fcvtl2 v27.4s, v6.8h\n\t"
#define DP_GEMM_ASM(BODY, MASK)                                                                        \
    __asm__ volatile("movi v7.16b, #" MASK "\n\t"                                                      \
                     "1:\n\t" BODY "subs %[n], %[n], #1\n\t"                                           \
                     "b.ne 1b\n\t"                                                                     \
                     : [w] "+r"(t), [a] "+r"(a), [n] "+r"(n), [a0] "+w"(acc[0]), [a1] "+w"(acc[1]),   \
                       [a2] "+w"(acc[2]), [a3] "+w"(acc[3]), [a4] "+w"(acc[4]), [a5] "+w"(acc[5]),     \
                       [a6] "+w"(acc[6]), [a7] "+w"(acc[7])                                            \
                     :                                                                                 \
                     : "memory", "cc", "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v16", "v17",   \
                       "v18", "v19", "v20", "v21", "v22", "v23", "v24", "v25", "v26", "v27", "v28",    \
                       "v29", "v30", "v31")

/* n_pairs whole tiles from t against the tile of 8 tokens at a (its blocks in order), into acc. */
static void dp_gemm_pairs_q4_0(const uint8_t *t, const dp_tile *a, int64_t n, float32x4_t acc[DP_TOKS]) {
    DP_GEMM_ASM(DP_SCALES DP_BLOCK(DP_UNPACK_Q4_0, ", #4", "v30", DP_NO_MIN)
                DP_BLOCK(DP_UNPACK_Q4_0, ", #4", "v31", DP_NO_MIN), "0xf0");
}
static void dp_gemm_pairs_q4_1(const uint8_t *t, const dp_tile *a, int64_t n, float32x4_t acc[DP_TOKS]) {
    DP_GEMM_ASM(DP_SCALES DP_MINS DP_BLOCK(DP_UNPACK_Q4_1, "", "v30", DP_MIN_V26)
                DP_BLOCK(DP_UNPACK_Q4_1, "", "v31", DP_MIN_V27), "0x0f");
}
static void dp_gemm_pairs_q8_0(const uint8_t *t, const dp_tile *a, int64_t n, float32x4_t acc[DP_TOKS]) {
    DP_GEMM_ASM(DP_SCALES DP_BLOCK(DP_UNPACK_Q8_0, "", "v30", DP_NO_MIN)
                DP_BLOCK(DP_UNPACK_Q8_0, "", "v31", DP_NO_MIN), "0x00");
}

/* The decode kernel in assembly, for the same reason: one group of 4 rows against one token,
 * both blocks of a tile per step (two independent SDOT chains), every load post-indexed (GCC
 * computes each address apart). Odd block counts need no tail: the pairs are zero-padded.
 * v0-v3 the pair's activations, v24 its [d0 d1 s0 s1], v4/v5 the blocks' integer sums. */
#define DP_GEMV_STEP(UNPACK, CVT, MINS, MIN_TERMS)                                                     \
    "ldr q6, [%[w]], #16\n\t" MINS                                                                     \
    "ld1 {v0.16b-v3.16b}, [%[a]], #64\n\t"                                                             \
    "ldr q24, [%[a]], #16\n\t"                                                                         \
    "fcvtl v30.4s, v6.4h\n\t"                                                                          \
    "fcvtl2 v31.4s, v6.8h\n\t"                                                                         \
    UNPACK "movi v4.4s, #0\n\t" DP_SDOT8("v4", "v0", "v1")                                             \
    UNPACK "movi v5.4s, #0\n\t" DP_SDOT8("v5", "v2", "v3")                                             \
    "scvtf v4.4s, v4.4s" CVT "\n\t"                                                                    \
    "scvtf v5.4s, v5.4s" CVT "\n\t"                                                                    \
    "fmul v30.4s, v30.4s, v24.s[0]\n\t"                                                                \
    "fmul v31.4s, v31.4s, v24.s[1]\n\t"                                                                \
    "fmla %[c0].4s, v4.4s, v30.4s\n\t"                                                                 \
    "fmla %[c1].4s, v5.4s, v31.4s\n\t" MIN_TERMS
#define DP_GEMV_MINS "ldr q26, [%[w]], #16\n\t" "fcvtl2 v27.4s, v26.8h\n\t" "fcvtl v26.4s, v26.4h\n\t"
#define DP_GEMV_MIN_TERMS "fmla %[c0].4s, v26.4s, v24.s[2]\n\t" "fmla %[c1].4s, v27.4s, v24.s[3]\n\t"
#define DP_GEMV_ASM(STEP, MASK)                                                                        \
    float32x4_t c0 = vdupq_n_f32(0.0f), c1 = c0;                                                       \
    __asm__ volatile("movi v7.16b, #" MASK "\n\t"                                                      \
                     "1:\n\t" STEP "subs %[n], %[n], #1\n\t"                                           \
                     "b.ne 1b\n\t"                                                                     \
                     : [w] "+r"(t), [a] "+r"(a), [n] "+r"(n), [c0] "+w"(c0), [c1] "+w"(c1)             \
                     :                                                                                 \
                     : "memory", "cc", "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v16", "v17",   \
                       "v18", "v19", "v20", "v21", "v22", "v23", "v24", "v26", "v27", "v30", "v31");   \
    return vaddq_f32(c0, c1)

/* n (> 0) tiles from t against n prepared pairs from a: the 4 rows' outputs. */
static inline float32x4_t dp_gemv_q4_0(const uint8_t *t, const dp_pair *a, int64_t n) {
    DP_GEMV_ASM(DP_GEMV_STEP(DP_UNPACK_Q4_0, ", #4", "", ""), "0xf0");
}
static inline float32x4_t dp_gemv_q4_1(const uint8_t *t, const dp_pair *a, int64_t n) {
    DP_GEMV_ASM(DP_GEMV_STEP(DP_UNPACK_Q4_1, "", DP_GEMV_MINS, DP_GEMV_MIN_TERMS), "0x0f");
}
static inline float32x4_t dp_gemv_q8_0(const uint8_t *t, const dp_pair *a, int64_t n) {
    DP_GEMV_ASM(DP_GEMV_STEP(DP_UNPACK_Q8_0, "", "", ""), "0x00");
}

static inline __attribute__((always_inline)) float32x4_t dp_gemv4(int type, const uint8_t *t, int64_t n_pairs,
                                                                  const dp_pair *ap) {
    if (n_pairs <= 0) return vdupq_n_f32(0.0f);
    if (type == SLM_TYPE_Q4_0) return dp_gemv_q4_0(t, ap, n_pairs);
    if (type == SLM_TYPE_Q4_1) return dp_gemv_q4_1(t, ap, n_pairs);
    return dp_gemv_q8_0(t, ap, n_pairs);
}

/* One block (the first of the tile at t) of 4 rows x 8 tokens, in C: an odd count's last. */
static inline __attribute__((always_inline)) void dp_block4x8(int type, const uint8_t *t, const dp_tile *A,
                                                              float32x4_t acc[DP_TOKS]) {
    int8x16_t w[8];
    dp_unpack(type, t + dp_quants_at(type), w);
    const float32x4_t wd = vcvt_f32_f16(vld1_f16((const __fp16 *)t));
    const float32x4_t wm = vcvt_f32_f16(vld1_f16((const __fp16 *)t + 8));
    float d[DP_TOKS];
    for (int j = 0; j < DP_TOKS; j++) d[j] = A->d[j];
    for (int j = 0; j < DP_TOKS; j++) {
        const float32x4_t sums = dp_block_sums(type, w, vld1q_s8(A->q[j]), vld1q_s8(A->q[j] + 16));
        acc[j] = vfmaq_f32(acc[j], sums, vmulq_n_f32(wd, d[j]));
        if (type == SLM_TYPE_Q4_1) acc[j] = vfmaq_n_f32(acc[j], wm, A->s[j]);
    }
}

/* 4 rows (one group's tiles from t) x 8 tokens (`at`: the tile's nb blocks): acc[j] gets token
 * j's 4 rows. */
static inline __attribute__((always_inline)) void dp_gemm4x8(int type, const uint8_t *t, int64_t nb,
                                                             const dp_tile *at, float32x4_t acc[DP_TOKS]) {
    for (int j = 0; j < DP_TOKS; j++) acc[j] = vdupq_n_f32(0.0f);
    const int64_t n_whole = nb / 2;
    if (n_whole > 0) {
        if (type == SLM_TYPE_Q4_0) dp_gemm_pairs_q4_0(t, at, n_whole, acc);
        else if (type == SLM_TYPE_Q4_1) dp_gemm_pairs_q4_1(t, at, n_whole, acc);
        else dp_gemm_pairs_q8_0(t, at, n_whole, acc);
    }
    if (nb % 2) dp_block4x8(type, t + n_whole * dp_tile_bytes(type), &at[nb - 1], acc);
}

/* Rows g*4 .. g*4+3 of token row y, those inside [r0, r1). */
static inline void dp_store4(float *y, int64_t g, int64_t r0, int64_t r1, float32x4_t v) {
    const int64_t row = g * 4;
    if (row >= r0 && row + 4 <= r1) {
        vst1q_f32(y + row, v);
        return;
    }
    float o[4];
    vst1q_f32(o, v);
    for (int r = 0; r < 4; r++)
        if (row + r >= r0 && row + r < r1) y[row + r] = o[r];
}

/* Groups [g0, g1) (tiles from `tiles`, group g0 first) for one token / one tile of tokens. */
static inline __attribute__((always_inline)) void dp_gemv_groups(int type, const uint8_t *tiles, int64_t g0,
                                                                 int64_t g1, int64_t n_pairs, const dp_pair *ap,
                                                                 float *y, int64_t r0, int64_t r1) {
    const int64_t gbytes = n_pairs * dp_tile_bytes(type);
    for (int64_t g = g0; g < g1; g++, tiles += gbytes) dp_store4(y, g, r0, r1, dp_gemv4(type, tiles, n_pairs, ap));
}

static inline __attribute__((always_inline)) void dp_gemm_groups(int type, const uint8_t *tiles, int64_t g0,
                                                                 int64_t g1, int64_t nb, const dp_tile *at,
                                                                 float *y, int64_t ys, int64_t r0, int64_t r1) {
    const int64_t gbytes = (nb + 1) / 2 * dp_tile_bytes(type);
    for (int64_t g = g0; g < g1; g++, tiles += gbytes) {
        float32x4_t acc[DP_TOKS];
        dp_gemm4x8(type, tiles, nb, at, acc);
        for (int j = 0; j < DP_TOKS; j++) dp_store4(y + j * ys, g, r0, r1, acc[j]);
    }
}

#define DP_TYPE_FNS(t, T)                                                                              \
    static void dp_gemv_groups_##t(const uint8_t *tiles, int64_t g0, int64_t g1, int64_t n_pairs,      \
                                   const dp_pair *ap, float *y, int64_t r0, int64_t r1) {              \
        dp_gemv_groups(T, tiles, g0, g1, n_pairs, ap, y, r0, r1);                                      \
    }                                                                                                  \
    static void dp_gemm_groups_##t(const uint8_t *tiles, int64_t g0, int64_t g1, int64_t nb,           \
                                   const dp_tile *at, float *y, int64_t ys, int64_t r0, int64_t r1) {  \
        dp_gemm_groups(T, tiles, g0, g1, nb, at, y, ys, r0, r1);                                       \
    }
DP_TYPE_FNS(q4_0, SLM_TYPE_Q4_0)
DP_TYPE_FNS(q4_1, SLM_TYPE_Q4_1)
DP_TYPE_FNS(q8_0, SLM_TYPE_Q8_0)

/* Rows [r0, r1) of W . act for n_tok tokens, from R4I tiles `packed` whose first group is row
 * packed_row0 (a multiple of 4). Groups are at absolute multiples of 4 rows, so any split of
 * the rows gives identical numbers. */
static void dp_products(const slm_weight *w, const uint8_t *packed, int64_t packed_row0, const uint8_t *act,
                        int64_t arb, int64_t n_tok, float *y, int64_t ys, int64_t r0, int64_t r1) {
    const int type = w->type;
    const int64_t nb = w->cols / SLM_QK, n_pairs = (nb + 1) / 2;
    const int64_t gbytes = n_pairs * dp_tile_bytes(type);
    const int64_t n_tiles = n_tok / DP_TOKS, n_rest = n_tok - n_tiles * DP_TOKS;
    const size_t tile_bytes = (size_t)(n_tiles * nb) * sizeof(dp_tile);
    uint8_t *buf = slm_scratch(0, tile_bytes + (size_t)(n_rest * n_pairs) * sizeof(dp_pair));
    if (!buf) { /* no memory for the prepared activations: the plain scalar path needs none */
        slm_matmul_scalar_plain(w, act, arb, n_tok, y, ys, r0, r1);
        return;
    }
    dp_tile *tiles = (dp_tile *)buf;
    dp_pair *pairs = (dp_pair *)(buf + tile_bytes);
    for (int64_t i = 0; i < n_tiles; i++)
        dp_prepare_tile(type, act + i * DP_TOKS * arb, arb, DP_TOKS, nb, tiles + i * nb);
    for (int64_t i = 0; i < n_rest; i++)
        dp_prepare_pairs(type, act + (n_tiles * DP_TOKS + i) * arb, nb, pairs + i * n_pairs);
    void (*gemv)(const uint8_t *, int64_t, int64_t, int64_t, const dp_pair *, float *, int64_t, int64_t) =
        type == SLM_TYPE_Q4_0 ? dp_gemv_groups_q4_0 : type == SLM_TYPE_Q4_1 ? dp_gemv_groups_q4_1 : dp_gemv_groups_q8_0;
    void (*gemm)(const uint8_t *, int64_t, int64_t, int64_t, const dp_tile *, float *, int64_t, int64_t, int64_t) =
        type == SLM_TYPE_Q4_0 ? dp_gemm_groups_q4_0 : type == SLM_TYPE_Q4_1 ? dp_gemm_groups_q4_1 : dp_gemm_groups_q8_0;
    const int64_t g0 = r0 / 4, g1 = (r1 + 3) / 4;
    if (n_tiles == 0) { /* decode: the rows stream past once */
        for (int64_t i = 0; i < n_rest; i++)
            gemv(packed + (g0 - packed_row0 / 4) * gbytes, g0, g1, n_pairs, pairs + i * n_pairs, y + i * ys, r0, r1);
        return;
    }
    for (int64_t gc = g0; gc < g1; gc += ROW_CHUNK / 4) { /* a chunk of rows stays in cache for every token */
        const int64_t gc1 = gc + ROW_CHUNK / 4 < g1 ? gc + ROW_CHUNK / 4 : g1;
        const uint8_t *tiles_c = packed + (gc - packed_row0 / 4) * gbytes;
        for (int64_t i = 0; i < n_tiles; i++)
            gemm(tiles_c, gc, gc1, nb, tiles + i * nb, y + i * DP_TOKS * ys, ys, r0, r1);
        for (int64_t i = 0; i < n_rest; i++)
            gemv(tiles_c, gc, gc1, n_pairs, pairs + i * n_pairs, y + (n_tiles * DP_TOKS + i) * ys, r0, r1);
    }
}

static void NEON_FN(matmul_r4i)(const slm_weight *w, const uint8_t *act, int64_t arb, int64_t n_tok, float *y,
                                int64_t y_stride, int64_t r0, int64_t r1) {
    dp_products(w, w->packed, 0, act, arb, n_tok, y, y_stride, r0, r1);
}

static const slm_kernel_set *NEON_FN(set)(int type);

/* Plain rows: decode row by row; prefill packs a chunk of rows at a time on the fly. */
static void NEON_FN(matmul_plain_r4i)(const slm_weight *w, const uint8_t *act, int64_t arb, int64_t n_tok,
                                      float *y, int64_t y_stride, int64_t r0, int64_t r1) {
    if (n_tok == 1) {
        const slm_vec_dot_fn dot = NEON_FN(set)(w->type)->traits.vec_dot;
        for (int64_t r = r0; r < r1; r++) dot(w->cols, &y[r], (const uint8_t *)w->data + r * w->row_bytes, act);
        return;
    }
    const int64_t n_pairs = (w->cols / SLM_QK + 1) / 2;
    uint8_t *buf = slm_scratch(1, (size_t)(ROW_CHUNK / 4 * n_pairs * slm_r4x2_tile_bytes(w->type)));
    if (!buf) {
        slm_matmul_scalar_plain(w, act, arb, n_tok, y, y_stride, r0, r1);
        return;
    }
    for (int64_t c0 = r0 / 4 * 4; c0 < r1; c0 += ROW_CHUNK) {
        const int64_t c1 = c0 + ROW_CHUNK < r1 ? c0 + ROW_CHUNK : r1;
        slm_pack_rows(w, SLM_LAYOUT_R4I, c0, (c1 - c0 + 3) / 4, buf);
        dp_products(w, buf, c0, act, arb, n_tok, y, y_stride, c0 > r0 ? c0 : r0, c1);
    }
}

#define QUANT_MATMUL_PLAIN NEON_FN(matmul_plain_r4i)
#define QUANT_MATMUL_PACKED NEON_FN(matmul_r4i)
#define QUANT_PREPARE slm_pack_r4i
#define QUANT_LAYOUT SLM_LAYOUT_R4I
