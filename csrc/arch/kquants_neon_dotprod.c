/* 5-bit and K-type kernels for Armv8.2-A with dotprod (Cortex-A76, Raspberry Pi 5): vdotq_s32. */
#define KQ_DOTPROD 1
#define KQ_FN(name) name##_neon_dotprod
#include "arch/kquants_neon_body.h"

const slm_kernel_set *slm_kq_kernels_neon_dotprod(int type) { return set_neon_dotprod(type); }
