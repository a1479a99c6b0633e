/* NEON kernels for baseline Armv8-A (Cortex-A72, Raspberry Pi 4): no dot-product instructions. */
#define NEON_DOTPROD 0
#define NEON_FN(name) name##_neon
#include "arch/neon_body.h"

const slm_kernel_set *slm_kernels_neon(int type) { return set_neon(type); }
