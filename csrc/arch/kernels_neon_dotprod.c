/* NEON kernels for Armv8.2-A with dotprod (Cortex-A76, Raspberry Pi 5): vdotq_s32. */
#define NEON_DOTPROD 1
#define NEON_FN(name) name##_neon_dotprod
#include "arch/neon_body.h"

const slm_kernel_set *slm_kernels_neon_dotprod(int type) { return set_neon_dotprod(type); }
