/* Type facts and fp16 conversion, shared by every kernel path. */
#include <string.h>

#include "slm.h"

_Static_assert(sizeof(slm_block_q4_0) == 18, "q4_0 block must match ggml");
_Static_assert(sizeof(slm_block_q4_1) == 20, "q4_1 block must match ggml");
_Static_assert(sizeof(slm_block_q8_0) == 34, "q8_0 block must match ggml");
_Static_assert(sizeof(slm_block_q8_1) == 36, "q8_1 block must match ggml");
_Static_assert(sizeof(slm_block_q5_0) == 22, "q5_0 block must match ggml");
_Static_assert(sizeof(slm_block_q5_1) == 24, "q5_1 block must match ggml");
_Static_assert(sizeof(slm_block_q2_K) == 84, "q2_K block must match ggml");
_Static_assert(sizeof(slm_block_q3_K) == 110, "q3_K block must match ggml");
_Static_assert(sizeof(slm_block_q4_K) == 144, "q4_K block must match ggml");
_Static_assert(sizeof(slm_block_q5_K) == 176, "q5_K block must match ggml");
_Static_assert(sizeof(slm_block_q6_K) == 210, "q6_K block must match ggml");
_Static_assert(sizeof(slm_block_q8_K) == 292, "q8_K block must match ggml");

/* ggml's type table (ggml.h enum ggml_type, ggml.c type_traits): ids 4, 5 and 31-33, 36-38
 * are retired or unused. */
static const slm_type_info types[] = {
    {SLM_TYPE_F32, "f32", 1, 4, 0},
    {SLM_TYPE_F16, "f16", 1, 2, 0},
    {SLM_TYPE_Q4_0, "q4_0", SLM_QK, sizeof(slm_block_q4_0), 0},
    {SLM_TYPE_Q4_1, "q4_1", SLM_QK, sizeof(slm_block_q4_1), 0},
    {SLM_TYPE_Q5_0, "q5_0", SLM_QK, sizeof(slm_block_q5_0), 0},
    {SLM_TYPE_Q5_1, "q5_1", SLM_QK, sizeof(slm_block_q5_1), 0},
    {SLM_TYPE_Q8_0, "q8_0", SLM_QK, sizeof(slm_block_q8_0), 0},
    {SLM_TYPE_Q8_1, "q8_1", SLM_QK, sizeof(slm_block_q8_1), 1},
    {SLM_TYPE_Q2_K, "q2_k", SLM_QK_K, sizeof(slm_block_q2_K), 0},
    {SLM_TYPE_Q3_K, "q3_k", SLM_QK_K, sizeof(slm_block_q3_K), 0},
    {SLM_TYPE_Q4_K, "q4_k", SLM_QK_K, sizeof(slm_block_q4_K), 0},
    {SLM_TYPE_Q5_K, "q5_k", SLM_QK_K, sizeof(slm_block_q5_K), 0},
    {SLM_TYPE_Q6_K, "q6_k", SLM_QK_K, sizeof(slm_block_q6_K), 0},
    {SLM_TYPE_Q8_K, "q8_k", SLM_QK_K, sizeof(slm_block_q8_K), 1},
    {16, "iq2_xxs", 256, 66, 0},
    {17, "iq2_xs", 256, 74, 0},
    {18, "iq3_xxs", 256, 98, 0},
    {19, "iq1_s", 256, 50, 0},
    {20, "iq4_nl", 32, 18, 0},
    {21, "iq3_s", 256, 110, 0},
    {22, "iq2_s", 256, 82, 0},
    {23, "iq4_xs", 256, 136, 0},
    {24, "i8", 1, 1, 0},
    {25, "i16", 1, 2, 0},
    {26, "i32", 1, 4, 0},
    {27, "i64", 1, 8, 0},
    {28, "f64", 1, 8, 0},
    {29, "iq1_m", 256, 56, 0},
    {30, "bf16", 1, 2, 0},
    {34, "tq1_0", 256, 54, 0},
    {35, "tq2_0", 256, 66, 0},
    {39, "mxfp4", 32, 17, 0},
};
enum { N_TYPES = sizeof(types) / sizeof(types[0]) };

const slm_type_info *slm_type_info_at(int index) {
    return index >= 0 && index < N_TYPES ? &types[index] : NULL;
}

const slm_type_info *slm_type_info_of(int type) {
    for (int i = 0; i < N_TYPES; i++)
        if (types[i].id == type) return &types[i];
    return NULL;
}

int64_t slm_type_block_elems(int type) {
    const slm_type_info *t = slm_type_info_of(type);
    return t ? t->block_elems : 0;
}

int64_t slm_type_block_bytes(int type) {
    const slm_type_info *t = slm_type_info_of(type);
    return t ? t->block_bytes : 0;
}

int64_t slm_row_bytes(int type, int64_t n) {
    int64_t be = slm_type_block_elems(type);
    if (be == 0 || n < 0 || n % be != 0) return SLM_EINVAL;
    return n / be * slm_type_block_bytes(type);
}

const char *slm_type_name(int type) {
    const slm_type_info *t = slm_type_info_of(type);
    return t ? t->name : "unknown";
}

/* Portable IEEE half <-> float (round to nearest even), no F16C needed. */
float slm_fp16_to_fp32(slm_half h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            exp = 127 - 15 + 1;
            while (!(mant & 0x400)) { mant <<= 1; exp--; }
            bits = sign | (exp << 23) | ((mant & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

slm_half slm_fp32_to_fp16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) /* inf or nan */
        return (slm_half)(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0));
    if (absx >= 0x477ff000u) /* rounds past the largest half */
        return (slm_half)(sign | 0x7c00);
    if (absx < 0x38800000u) { /* subnormal half or zero */
        if (absx < 0x33000000u) return (slm_half)sign;
        uint32_t e = absx >> 23, m = (absx & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t half_m = m >> shift, rem = m & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half_m & 1))) half_m++;
        return (slm_half)(sign | half_m);
    }
    uint32_t e = (absx >> 23) - 127 + 15, m = absx & 0x7fffff;
    uint32_t h = (e << 10) | (m >> 13), rem = m & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++; /* may carry into the exponent: fine */
    return (slm_half)(sign | h);
}
