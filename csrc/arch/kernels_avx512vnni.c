/* The AVX2 kernels with AVX-512 VNNI dot products (256-bit vpdpbusd) and AVX-512BW byte masks:
 * Intel from Ice Lake and Sapphire Rapids, AMD from Zen 4. */
#define X86_VNNI 1
#include "arch/x86_body.h"

const slm_kernel_set *slm_kernels_avx512vnni(int type) { return x86_set(type); }
