/* Type facts and fp16 conversion, shared by every kernel path. */
#include <string.h>

#include "slm.h"

_Static_assert(sizeof(slm_block_q4_0) == 18, "q4_0 block must match ggml");
_Static_assert(sizeof(slm_block_q4_1) == 20, "q4_1 block must match ggml");
_Static_assert(sizeof(slm_block_q8_0) == 34, "q8_0 block must match ggml");
_Static_assert(sizeof(slm_block_q8_1) == 36, "q8_1 block must match ggml");

int64_t slm_type_block_elems(int type) {
    switch (type) {
    case SLM_TYPE_F32: case SLM_TYPE_F16: return 1;
    case SLM_TYPE_Q4_0: case SLM_TYPE_Q4_1: case SLM_TYPE_Q8_0: case SLM_TYPE_Q8_1: return SLM_QK;
    default: return 0;
    }
}

int64_t slm_type_block_bytes(int type) {
    switch (type) {
    case SLM_TYPE_F32: return 4;
    case SLM_TYPE_F16: return 2;
    case SLM_TYPE_Q4_0: return sizeof(slm_block_q4_0);
    case SLM_TYPE_Q4_1: return sizeof(slm_block_q4_1);
    case SLM_TYPE_Q8_0: return sizeof(slm_block_q8_0);
    case SLM_TYPE_Q8_1: return sizeof(slm_block_q8_1);
    default: return 0;
    }
}

int64_t slm_row_bytes(int type, int64_t n) {
    int64_t be = slm_type_block_elems(type);
    if (be == 0 || n < 0 || n % be != 0) return SLM_EINVAL;
    return n / be * slm_type_block_bytes(type);
}

const char *slm_type_name(int type) {
    switch (type) {
    case SLM_TYPE_F32: return "f32";
    case SLM_TYPE_F16: return "f16";
    case SLM_TYPE_Q4_0: return "q4_0";
    case SLM_TYPE_Q4_1: return "q4_1";
    case SLM_TYPE_Q8_0: return "q8_0";
    case SLM_TYPE_Q8_1: return "q8_1";
    default: return "unknown";
    }
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
