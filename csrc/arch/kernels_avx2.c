/* AVX2 + FMA + F16C kernels (x86-64), compiled with those flags only for this file. */
#define X86_VNNI 0
#include "arch/x86_body.h"

const slm_kernel_set *slm_kernels_avx2(int type) { return x86_set(type); }
