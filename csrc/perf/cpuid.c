/* cpuid.c: which core this is, from the core itself where the kernel allows it.
 *
 * On arm64 the kernel traps and emulates `mrs MIDR_EL1` from user space when it advertises
 * HWCAP_CPUID; this works where /proc/cpuinfo cannot be trusted (user-mode emulation shows
 * the host's file). Elsewhere the answer is -ENOSYS and Python falls back to /proc/cpuinfo.
 */
#include "slm.h"

#if defined(__aarch64__)
#include <sys/auxv.h>
#ifndef HWCAP_CPUID
#define HWCAP_CPUID (1 << 11)
#endif
#endif

/* MIDR_EL1 of the calling core (implementer in bits 31:24, part number in bits 15:4). */
int64_t slm_cpu_midr(void) {
#if defined(__aarch64__)
    if (!(getauxval(AT_HWCAP) & HWCAP_CPUID)) return SLM_ENOSYS;
    uint64_t midr;
    __asm__ volatile("mrs %0, midr_el1" : "=r"(midr));
    return (int64_t)(midr & 0xffffffffu);
#else
    return SLM_ENOSYS;
#endif
}
