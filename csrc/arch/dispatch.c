/* Runtime ISA detection and the dispatch from (weight type, ISA) to kernels.
 * The ISA in use is chosen once (best available, or SLMPROF_ISA), and can be changed by
 * slm_isa_set between matrix products (tests, validation). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "model/attention.h"
#include "quant/kquants.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1 << 1)
#endif
#ifndef HWCAP_ASIMDHP
#define HWCAP_ASIMDHP (1 << 10)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif

static const char *const isa_names[SLM_ISA_COUNT] = {"scalar", "avx2", "neon", "neon-dotprod", "avx512-vnni"};

static int isa_supported[SLM_ISA_COUNT]; /* this CPU and this build */
static int active_isa = SLM_ISA_SCALAR;
static int env_status = SLM_OK;          /* result of applying SLMPROF_ISA */
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__) || defined(__i386__)
static int cpu_has_avx2_fma_f16c(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, f16c = (c >> 29) & 1;
    if (!(fma && osxsave && avx && f16c)) return 0;
    unsigned xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    if ((xcr0_lo & 0x6) != 0x6) return 0; /* the OS saves xmm and ymm state */
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    return (b >> 5) & 1;
}

/* AVX-512 F, BW, VL and VNNI, with the OS saving the opmask and zmm state (XCR0 bits 5-7). */
static int cpu_has_avx512_vnni(void) {
    if (!cpu_has_avx2_fma_f16c()) return 0;
    unsigned a, b, c, d;
    __cpuid_count(7, 0, a, b, c, d);
    const int f = (b >> 16) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1, vnni = (c >> 11) & 1;
    if (!(f && bw && vl && vnni)) return 0;
    unsigned xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    return (xcr0_lo & 0xE6) == 0xE6;
}
#endif

static void detect(void);
static void ensure_init(void) { pthread_once(&init_once, detect); }
static int best_supported(void);

static int parse_isa(const char *name) {
    for (int i = 0; i < SLM_ISA_COUNT; i++)
        if (strcmp(name, isa_names[i]) == 0) return i;
    if (strcmp(name, "neon_dotprod") == 0 || strcmp(name, "dotprod") == 0) return SLM_ISA_NEON_DOTPROD;
    if (strcmp(name, "avx512_vnni") == 0 || strcmp(name, "vnni") == 0) return SLM_ISA_AVX512_VNNI;
    return -1;
}

static void detect(void) {
    isa_supported[SLM_ISA_SCALAR] = 1;
#if defined(__x86_64__)
    isa_supported[SLM_ISA_AVX2] = cpu_has_avx2_fma_f16c();
    isa_supported[SLM_ISA_AVX512_VNNI] = cpu_has_avx512_vnni();
#endif
#if defined(__aarch64__)
#if defined(__linux__)
    const unsigned long hw = getauxval(AT_HWCAP);
    isa_supported[SLM_ISA_NEON] = (hw & HWCAP_ASIMD) != 0;
    isa_supported[SLM_ISA_NEON_DOTPROD] = (hw & HWCAP_ASIMDDP) && (hw & HWCAP_ASIMDHP);
#else
    isa_supported[SLM_ISA_NEON] = 1; /* baseline on aarch64 */
#endif
#endif
    active_isa = best_supported();
    const char *env = getenv("SLMPROF_ISA");
    if (env && *env && strcmp(env, "auto") != 0) {
        const int want = parse_isa(env);
        if (want < 0) env_status = SLM_EINVAL;
        else if (!isa_supported[want]) env_status = SLM_ENOSYS;
        else active_isa = want;
    }
}


int slm_isa_available(int isa) {
    ensure_init();
    return isa >= 0 && isa < SLM_ISA_COUNT && isa_supported[isa];
}

static int best_supported(void) {
    for (int i = SLM_ISA_COUNT - 1; i > 0; i--)
        if (isa_supported[i]) return i;
    return SLM_ISA_SCALAR;
}

int slm_isa_best(void) {
    ensure_init();
    return best_supported();
}

int slm_isa_active(void) {
    ensure_init();
    return __atomic_load_n(&active_isa, __ATOMIC_RELAXED);
}

int slm_isa_env_status(void) {
    ensure_init();
    return __atomic_load_n(&env_status, __ATOMIC_RELAXED);
}

int slm_isa_set(int isa) {
    ensure_init();
    if (isa < 0 || isa >= SLM_ISA_COUNT) return SLM_EINVAL;
    if (!isa_supported[isa]) return SLM_ENOSYS;
    __atomic_store_n(&active_isa, isa, __ATOMIC_RELAXED);
    __atomic_store_n(&env_status, SLM_OK, __ATOMIC_RELAXED); /* an explicit choice replaces the env's */
    return SLM_OK;
}

int slm_isa_restore(int isa, int status) {
    ensure_init();
    if (isa < 0 || isa >= SLM_ISA_COUNT) return SLM_EINVAL;
    if (status != SLM_OK && status != SLM_EINVAL && status != SLM_ENOSYS) return SLM_EINVAL;
    if (!isa_supported[isa]) return SLM_ENOSYS;
    __atomic_store_n(&active_isa, isa, __ATOMIC_RELAXED);
    __atomic_store_n(&env_status, status, __ATOMIC_RELAXED);
    return SLM_OK;
}

const char *slm_isa_name(int isa) {
    return isa >= 0 && isa < SLM_ISA_COUNT ? isa_names[isa] : "unknown";
}

int slm_isa_from_name(const char *name) {
    if (!name) return SLM_EINVAL;
    const int isa = parse_isa(name);
    return isa < 0 ? SLM_EINVAL : isa;
}

/* The kernel set for (type, isa) compiled into this build, or NULL. The 5-bit and K types
 * have files of their own (kquants_*). */
static const slm_kernel_set *kernel_set(int type, int isa) {
    const slm_kernel_set *ks = NULL;
    switch (isa) {
    case SLM_ISA_SCALAR: return slm_kernels_scalar(type);
#if defined(__x86_64__)
    case SLM_ISA_AVX2: ks = slm_kernels_avx2(type); if (!ks) ks = slm_kq_kernels_avx2(type); break;
    /* the K types' AVX2 kernels gain nothing from VNNI (their group scales need maddubs' int16 pairs) */
    case SLM_ISA_AVX512_VNNI: ks = slm_kernels_avx512vnni(type); if (!ks) ks = slm_kq_kernels_avx2(type); break;
#endif
#if defined(__aarch64__)
    case SLM_ISA_NEON: ks = slm_kernels_neon(type); if (!ks) ks = slm_kq_kernels_neon(type); break;
    case SLM_ISA_NEON_DOTPROD: ks = slm_kernels_neon_dotprod(type); if (!ks) ks = slm_kq_kernels_neon_dotprod(type); break;
#endif
    default: break;
    }
    return ks;
}

/* The attention path beside the matrix kernels: the same ISA choice. */
slm_attend_fn slm_attend_for(int isa) {
    if (isa < 0) isa = slm_isa_active();
#if defined(__x86_64__)
    if ((isa == SLM_ISA_AVX2 || isa == SLM_ISA_AVX512_VNNI) && slm_isa_available(isa)) return slm_attend_avx2;
#endif
#if defined(__aarch64__)
    if ((isa == SLM_ISA_NEON || isa == SLM_ISA_NEON_DOTPROD) && slm_isa_available(isa)) return slm_attend_neon;
#endif
    return slm_attend_generic;
}

int slm_attend_isa(int isa, const float *q, const void *k, const void *v, int64_t kv_stride, int n_pos,
                   int head_dim, float scale, int kv_f16, float *att, float *out) {
    if (!q || !k || !v || !att || !out || n_pos < 1 || head_dim < 1 || kv_stride < head_dim ||
        isa >= SLM_ISA_COUNT)
        return SLM_EINVAL;
    if (isa >= 0 && !slm_isa_available(isa)) return SLM_ENOSYS;
    slm_attend_for(isa)(q, k, v, (size_t)kv_stride, n_pos, head_dim, scale, kv_f16 ? 1 : 0, att, out);
    return SLM_OK;
}

slm_swiglu_fn slm_swiglu_for(int isa) {
    if (isa < 0) isa = slm_isa_active();
#if defined(__aarch64__)
    if ((isa == SLM_ISA_NEON || isa == SLM_ISA_NEON_DOTPROD) && slm_isa_available(isa)) return slm_swiglu_neon;
#endif
#if defined(__x86_64__)
    if ((isa == SLM_ISA_AVX2 || isa == SLM_ISA_AVX512_VNNI) && slm_isa_available(isa)) return slm_swiglu_avx2;
#endif
    return slm_swiglu_generic;
}

int slm_type_computable(int type) { return slm_kernels_scalar(type) != NULL; }

/* ---- test-only corruption switch ---- */

static int corrupt_type = -1, corrupt_isa = -1;

int slm_debug_corrupt_kernel(int type, int isa, int on) {
    if (!slm_kernels_scalar(type) || isa < 0 || isa >= SLM_ISA_COUNT) return SLM_EINVAL;
    if (on) { corrupt_type = type; corrupt_isa = isa; }
    else if (corrupt_type == type && corrupt_isa == isa) { corrupt_type = -1; corrupt_isa = -1; }
    return SLM_OK;
}

static int is_corrupt(int type, int isa) { return type == corrupt_type && isa == corrupt_isa; }

/* A wrong answer that looks plausible: 6% too large, plus an offset. */
static float corrupt_value(float v) { return v * 1.0625f + 0.03125f; }

static slm_vec_dot_fn corrupt_base_dot;
static void corrupt_vec_dot(int64_t n, float *s, const void *w_row, const void *act_row) {
    corrupt_base_dot(n, s, w_row, act_row);
    *s = corrupt_value(*s);
}

const slm_type_traits *slm_get_traits(int type, int isa) {
    if (isa < 0) isa = slm_isa_active();
    if (isa >= SLM_ISA_COUNT || !slm_isa_available(isa)) return NULL;
    const slm_kernel_set *ks = kernel_set(type, isa);
    if (!ks) return NULL;
    if (is_corrupt(type, isa)) {
        static slm_type_traits corrupt_traits;
        corrupt_base_dot = ks->traits.vec_dot;
        corrupt_traits = ks->traits;
        corrupt_traits.vec_dot = corrupt_vec_dot;
        return &corrupt_traits;
    }
    return &ks->traits;
}

/* ---- activations, weights and products ---- */

static int weight_ok(const slm_weight *w) {
    if (!w || !w->data || w->rows <= 0 || w->cols <= 0) return SLM_EINVAL;
    if (!slm_kernels_scalar(w->type)) return SLM_EUNSUPPORTED_TYPE;
    const int64_t rb = slm_row_bytes(w->type, w->cols);
    if (rb < 0 || w->row_bytes != rb) return SLM_ESHAPE;
    return SLM_OK;
}

static int usable_isa(void) {
    ensure_init();
    return env_status == SLM_OK ? SLM_OK : SLM_ENOSYS;
}

int slm_act_row_bytes(int weight_type, int64_t cols) {
    const slm_kernel_set *ks = slm_kernels_scalar(weight_type);
    if (!ks) return SLM_EUNSUPPORTED_TYPE;
    const int64_t rb = slm_row_bytes(ks->traits.vec_dot_type, cols);
    if (rb < 0 || rb > 0x7fffffff) return SLM_ESHAPE;
    return (int)rb;
}

int slm_quantize_activations(int weight_type, const float *x, int64_t x_stride, int64_t n_tok,
                             int64_t cols, void *act, int64_t *act_row_bytes) {
    if (usable_isa() < 0) return SLM_ENOSYS;
    if (!x || !act || n_tok < 0 || cols <= 0 || (n_tok > 1 && x_stride < cols)) return SLM_EINVAL;
    const int rb = slm_act_row_bytes(weight_type, cols);
    if (rb < 0) return rb;
    const slm_type_traits *tr = slm_get_traits(weight_type, -1);
    if (!tr) return SLM_EUNSUPPORTED_TYPE;
    for (int64_t t = 0; t < n_tok; t++)
        tr->from_float(x + t * x_stride, (uint8_t *)act + t * rb, cols);
    if (act_row_bytes) *act_row_bytes = rb;
    return SLM_OK;
}

int slm_weight_prepare(slm_weight *w) {
    const int st = weight_ok(w);
    if (st < 0) return st;
    if (usable_isa() < 0) return SLM_ENOSYS;
    slm_weight_release(w);
    const slm_kernel_set *ks = kernel_set(w->type, slm_isa_active());
    if (ks && ks->prepare) return ks->prepare(w);
    /* plain rows are what this path reads: the K types' in huge pages, the others where they are */
    if (ks && slm_type_block_elems(w->type) == SLM_QK_K) return slm_pack_copy(w);
    return SLM_OK;
}

void slm_weight_release(slm_weight *w) {
    if (!w) return;
    slm_packed_free(w->packed);
    w->packed = NULL;
    w->layout = SLM_LAYOUT_PLAIN;
}

int slm_matmul_rows_isa(const slm_weight *w, const void *act, int64_t act_row_bytes, int64_t n_tok,
                        float *y, int64_t y_stride, int64_t r0, int64_t r1, int isa) {
    int st = weight_ok(w);
    if (st < 0) return st;
    if (!act || !y || n_tok < 0 || r0 < 0 || r1 < r0 || r1 > w->rows) return SLM_EINVAL;
    if (n_tok > 1 && y_stride < r1) return SLM_EINVAL;
    const int need = slm_act_row_bytes(w->type, w->cols);
    if (need < 0) return need;
    if (act_row_bytes < need && n_tok > 0) return SLM_ESHAPE;
    if (isa < 0) {
        if (usable_isa() < 0) return SLM_ENOSYS;
        isa = slm_isa_active();
    } else if (!slm_isa_available(isa)) {
        return SLM_ENOSYS;
    }
    if (n_tok == 0 || r0 == r1) return SLM_OK;
    const slm_kernel_set *ks = kernel_set(w->type, isa);
    if (!ks) return SLM_EUNSUPPORTED_TYPE;
    if (w->packed && w->layout != SLM_LAYOUT_PLAIN && ks->matmul_packed && w->layout == ks->packed_layout) {
        ks->matmul_packed(w, act, act_row_bytes, n_tok, y, y_stride, r0, r1);
    } else if (w->packed && w->layout == SLM_LAYOUT_COPY) {
        const slm_weight copy = {.type = w->type, .rows = w->rows, .cols = w->cols,
                                 .row_bytes = w->row_bytes, .data = w->packed};
        ks->matmul_plain(&copy, act, act_row_bytes, n_tok, y, y_stride, r0, r1);
    } else {
        ks->matmul_plain(w, act, act_row_bytes, n_tok, y, y_stride, r0, r1);
    }
    if (is_corrupt(w->type, isa))
        for (int64_t t = 0; t < n_tok; t++)
            for (int64_t r = r0; r < r1; r++) y[t * y_stride + r] = corrupt_value(y[t * y_stride + r]);
    return SLM_OK;
}

int slm_matmul_rows(const slm_weight *w, const void *act, int64_t act_row_bytes, int64_t n_tok,
                    float *y, int64_t y_stride, int64_t r0, int64_t r1) {
    return slm_matmul_rows_isa(w, act, act_row_bytes, n_tok, y, y_stride, r0, r1, -1);
}
