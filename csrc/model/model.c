/* The forward pass of the llama family (llama, qwen2, qwen3, gemma3): weights, run state,
 * KV cache, forward.
 *
 * Read top to bottom: structs, loading (set_tensor / ready), the small math blocks, then
 * forward. Every thread runs the whole forward (SPMD). Each parallel step is cut into fixed
 * chunks (output rows, head units, (token, head) items) that threads claim from an atomic
 * counter; a thread moves on once every chunk of the step is done. A chunk is computed the
 * same way whichever thread takes it, and no reduction is ever split, so any thread count
 * gives bit-identical results. Steps, for one layer of llama / qwen2:
 *
 *   norm+quant | q,k,v+bias+RoPE -> cache | attention+quant | wo+residual |
 *   norm+quant | gate,up+SwiGLU+quant     | down+residual
 *
 * qwen3 and gemma3 norm each head of q and k before RoPE, in a step of its own after q,k,v:
 *
 *   ... | q,k,v, v -> cache | q/k norm+RoPE, k -> cache | attention+quant | ...
 *
 * and gemma3 normalizes the attention and FFN outputs before each residual add, and gates
 * with GELU in a step of its own (every operation is a region):
 *
 *   ... | wo | post-norm+residual | norm+quant | gate,up | GELU*up+quant | down | post-norm+residual
 *
 * For one token every thread computes the RMSNorm and activation quantization itself into a
 * private buffer (576 floats cost less than a wait), so a decoded layer has five waits. A
 * thread the OS has descheduled delays the others only by the chunk it holds. Chunks are
 * large enough that claiming one (an atomic add on a shared line) costs under 1% of it.
 * Profiling: with hooks that take per-thread spans, every thread reads the clock when it
 * begins an operation and when it has finished its own share of it (before waiting for the
 * others), into its own row of a buffer; the chunk's spans go to the hooks once the chunk is
 * done. No thread waits for the profiler and no thread's clock stands for another's: a thread
 * the OS deschedules stretches only the operation it is in. Older hooks (begin/end/edge only)
 * are called by thread 0 at each edge, after a step whose work is complete, while the others
 * go on. Only hooks that read every thread's counters at layer edges hold the threads there.
 */
#include <math.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "slm.h"
#include "model/attention.h"
#include "model/pool.h"


typedef struct {
    int present;
    int type;
    int64_t rows, cols, nbytes;
    const void *data;
} tensor_ref;

/* Activations quantized once per format and shared by the weights that read them
 * (q/k/v, gate/up): slot[i] is the act slot of weight i, slot_type[s] a weight type of slot s. */
typedef struct {
    int n_slots;
    int slot[3];
    int slot_type[3];
} act_group;

typedef struct {
    const float *attn_norm;    /* (dim) */
    const float *q_norm, *k_norm; /* (head_dim) or NULL: qwen3, gemma3 */
    const float *attn_post_norm, *ffn_post_norm; /* (dim) or NULL: gemma3 */
    int sliding;               /* attends to the last cfg.sliding_window positions only */
    slm_weight wq;             /* (q_dim, dim) */
    slm_weight wk, wv;         /* (kv_dim, dim) */
    const float *bq;           /* (q_dim) or NULL */
    const float *bk, *bv;      /* (kv_dim) or NULL */
    slm_weight wo;             /* (dim, q_dim) */
    const float *ffn_norm;     /* (dim) */
    slm_weight gate, up;       /* (ffn_dim, dim) */
    slm_weight down;           /* (dim, ffn_dim) */
    act_group qkv_acts, gate_up_acts;
} layer_weights;

/* Activation buffers. The "A" side holds normed inputs (q/k/v, gate/up, LM head); the "B" side
 * holds attention and SwiGLU outputs (wo, down), so writing one never races a reader of the other. */
typedef struct {
    float *x;          /* (B, dim) residual stream */
    float *xb;         /* (B, dim) normed input */
    float *q;          /* (B, q_dim) queries after RoPE */
    float *k, *v;      /* (B, kv_dim) new keys (after RoPE) and values before the cache store */
    float *att_out;    /* (B, q_dim) attention output, heads side by side */
    float *hg;         /* (B, ffn_dim) gate, then silu(gate) * up */
    float *hu;         /* (B, ffn_dim) up */
    float *y;          /* (B, dim) wo / down output before the residual add */
    float *scores;     /* (n_threads, n_ctx) attention weights, one row per thread */
    float *rope_cs;    /* (B, head_dim/2, 2) cos, sin for this chunk's positions */
    float *rope_cs_swa; /* (B, head_dim/2, 2) the same at the sliding layers' base, or NULL */
    uint8_t *act_a;    /* 3 slots of (B, act_bytes(dim)) */
    uint8_t *act_b;    /* (B, act_bytes(max(q_dim, ffn_dim))) */
    float *xb_own;     /* (n_threads, dim) per-thread normed input for one-token steps */
    uint8_t *act_own;  /* (n_threads, 3 slots of act_bytes(dim)) per-thread quantized input */
    void *key_cache;   /* (n_layer, n_ctx, kv_dim) of kv_type */
    void *value_cache; /* (n_layer, n_ctx, kv_dim) of kv_type */
} run_state;

/* Work of one parallel step, handed out in fixed chunks: `next` is the next chunk to claim,
 * `done` counts finished ones. Each pair on its own cache line. */
typedef struct {
    _Alignas(64) atomic_uint next;
    atomic_uint done;
} work_counter;

/* What one slm_model_forward chunk asks of the threads. */
typedef struct {
    const int32_t *tokens; /* (n_tok) */
    int n_tok;
    int pos0;              /* position of tokens[0] */
    float *logits;         /* (n_out, vocab) */
    int out0, n_out;       /* tokens [out0, out0 + n_out) get logits; n_out = 0: none */
    slm_region_hooks hooks;
    int region_ops;        /* operation edges too, not only layer edges */
    int spans_on;          /* every thread stamps its own operation spans (hooks.spans) */
    int n_span_ops;        /* operations stamped in this chunk (set by thread 0) */
    slm_attend_fn attend;  /* attention path for the active ISA */
    slm_swiglu_fn swiglu;  /* and SwiGLU's */
    int watch_sigint;      /* stop at a layer boundary once the SIGINT count leaves sigint_seen */
    uint32_t sigint_seen;
} chunk_job;

struct slm_model {
    slm_model_config cfg;
    int q_dim, kv_dim, kv_mul; /* kv_mul: query heads per KV head */
    int max_batch;
    int ready;
    int n_past;
    tensor_ref tensors[SLM_T_COUNT];
    tensor_ref *layer_tensors; /* (n_layer, SLM_T_COUNT) */
    /* weights */
    slm_weight token_embd;     /* (vocab, dim); rows are read as stored for the lookup */
    const float *output_norm;  /* (dim) */
    slm_weight output;         /* (vocab, dim), unused when tied */
    const slm_weight *lm_head; /* &output or &token_embd */
    double *inv_freq;          /* (head_dim/2) RoPE frequency per pair, rope_freqs applied */
    double *inv_freq_swa;      /* (head_dim/2) at rope_base_swa, or NULL when it is rope_base */
    float attn_scale, embed_scale;
    layer_weights *layers;     /* (n_layer) */
    int64_t act_be[16], act_bb[16]; /* activation block elements and bytes, by weight type */
    int64_t act_a_slot;        /* bytes of one act_a slot: B * act_bytes(dim) at most */
    run_state s;
    slm_pool *pool;
    slm_region_hooks hooks;
    int region_ops;
    chunk_job job;
    work_counter *counters;    /* (max_ops) one per parallel step of a forward chunk */
    int max_ops;
    /* per-thread operation spans, allocated when hooks that take them are attached */
    slm_thread_span *spans;    /* (n_threads, max_span_ops) each row written by its own thread */
    int32_t *span_ops;         /* (max_span_ops) operation region ids, written by thread 0 */
    int32_t *span_layers;      /* (max_span_ops) their layer regions */
    int32_t *tids;             /* (n_threads) kernel thread id of each worker */
    int max_span_ops;
    struct { int thread; int32_t region; uint32_t us; } delay; /* slm_model_debug_delay */
    int watch_sigint;
    uint32_t sigint_seen;
    /* This chunk's decisions at layer boundaries (see stop_here): 2l = boundary l undecided,
     * 2l+1 = stop there, 2l+2 = go on. */
    _Alignas(64) atomic_int gate;
};

/* ---- loading --------------------------------------------------------------------------- */

int slm_model_create(const slm_model_config *cfg, slm_model **out) {
    *out = NULL;
    const slm_model_config c = *cfg;
    if (c.arch < 0 || c.arch >= SLM_ARCH_COUNT) return SLM_EINVAL;
    if (c.n_layer < 1 || c.n_layer > 4096 || c.dim < 32 || c.dim > (1 << 16) || c.ffn_dim < 32 ||
        c.ffn_dim > (1 << 18) || c.n_head < 1 || c.n_kv_head < 1 || c.n_head % c.n_kv_head != 0 ||
        c.head_dim < 2 || c.head_dim % 2 != 0 || c.head_dim > 1024 || c.vocab < 1 ||
        c.vocab > (1 << 24))
        return SLM_ESHAPE;
    /* Activation quantization works on blocks of 32 along every matmul input. */
    if (c.dim % SLM_QK != 0 || c.ffn_dim % SLM_QK != 0 || (c.n_head * c.head_dim) % SLM_QK != 0)
        return SLM_ESHAPE;
    if (c.n_ctx < 1 || c.n_ctx > SLM_MAX_CTX || c.max_batch < 0) return SLM_EINVAL;
    if (c.kv_type != SLM_TYPE_F32 && c.kv_type != SLM_TYPE_F16) return SLM_EINVAL;
    if (c.n_threads < 1 || c.n_threads > SLM_MAX_THREADS) return SLM_EINVAL;
    if (!(c.rope_base > 0) || !(c.norm_eps >= 0)) return SLM_EINVAL;
    if (c.sliding_window < 0 || c.sliding_window_pattern < 0) return SLM_EINVAL;
    /* !(x >= 0) also refuses NaN; infinities are no scale either */
    if (!(c.rope_base_swa >= 0) || !(c.attn_scale >= 0) || !(c.embed_scale >= 0) ||
        !(c.logit_softcap >= 0) || isinf(c.rope_base_swa) || isinf(c.attn_scale) ||
        isinf(c.embed_scale) || isinf(c.logit_softcap))
        return SLM_EINVAL;
    slm_model *m = calloc(1, sizeof *m);
    if (!m) return SLM_ENOMEM;
    m->cfg = c;
    m->q_dim = c.n_head * c.head_dim;
    m->kv_dim = c.n_kv_head * c.head_dim;
    m->kv_mul = c.n_head / c.n_kv_head;
    m->attn_scale = c.attn_scale > 0 ? c.attn_scale : 1.0f / sqrtf((float)c.head_dim);
    m->embed_scale = c.embed_scale > 0 ? c.embed_scale : 1.0f;
    m->max_batch = c.max_batch ? c.max_batch : SLM_DEFAULT_MAX_BATCH;
    m->region_ops = 1;
    if (m->max_batch > c.n_ctx) m->max_batch = c.n_ctx;
    m->layer_tensors = calloc((size_t)c.n_layer * SLM_T_COUNT, sizeof(tensor_ref));
    m->layers = calloc((size_t)c.n_layer, sizeof(layer_weights));
    if (!m->layer_tensors || !m->layers) { slm_model_free(m); return SLM_ENOMEM; }
    *out = m;
    return SLM_OK;
}

const char *slm_op_name(int op) {
    static const char *const names[SLM_OP_COUNT] = {
        [SLM_OP_LAYER] = "layer", [SLM_OP_EMBED] = "embed", [SLM_OP_ATTN_NORM] = "attn_norm",
        [SLM_OP_QKV] = "qkv", [SLM_OP_QK_NORM] = "qk_norm", [SLM_OP_ROPE_ATTN] = "rope_attn",
        [SLM_OP_ATTN_OUT] = "attn_out", [SLM_OP_ATTN_POST_NORM] = "attn_post_norm",
        [SLM_OP_FFN_NORM] = "ffn_norm", [SLM_OP_GATE_UP] = "gate_up", [SLM_OP_GELU] = "gelu",
        [SLM_OP_DOWN] = "down", [SLM_OP_FFN_POST_NORM] = "ffn_post_norm",
        [SLM_OP_OUTPUT_NORM] = "output_norm", [SLM_OP_LM_HEAD] = "lm_head"};
    return op >= 0 && op < SLM_OP_COUNT && names[op] ? names[op] : "unknown";
}

/* What sets the architectures apart, in one place. */
static int arch_qk_norm(int arch) { return arch == SLM_ARCH_QWEN3 || arch == SLM_ARCH_GEMMA3; }
static int arch_post_norms(int arch) { return arch == SLM_ARCH_GEMMA3; }
static int arch_gelu(int arch) { return arch == SLM_ARCH_GEMMA3; }
static int arch_neox(int arch) { return arch != SLM_ARCH_LLAMA; }

int slm_arch_has_op(int arch, int op) {
    if (arch < 0 || arch >= SLM_ARCH_COUNT || op < 0 || op >= SLM_OP_COUNT) return 0;
    switch (op) {
    case SLM_OP_QK_NORM: return arch_qk_norm(arch);
    case SLM_OP_ATTN_POST_NORM:
    case SLM_OP_FFN_POST_NORM: return arch_post_norms(arch);
    case SLM_OP_GELU: return arch_gelu(arch);
    default: return 1;
    }
}

static int is_layer_kind(int kind) { return kind >= SLM_T_ATTN_NORM && kind < SLM_T_COUNT; }

int slm_model_set_tensor(slm_model *m, int kind, int layer, int type, int64_t rows, int64_t cols,
                         const void *data, int64_t nbytes) {
    if (m->ready || kind < 0 || kind >= SLM_T_COUNT || !data || rows < 1 || cols < 1) return SLM_EINVAL;
    int64_t rb = slm_row_bytes(type, cols);
    if (!slm_type_computable(type)) return SLM_EUNSUPPORTED_TYPE;
    if (rb < 0 || rb * rows != nbytes) return SLM_ESHAPE;
    tensor_ref *t;
    if (is_layer_kind(kind)) {
        if (layer < 0 || layer >= m->cfg.n_layer) return SLM_EINVAL;
        t = &m->layer_tensors[(size_t)layer * SLM_T_COUNT + kind];
    } else {
        t = &m->tensors[kind];
    }
    *t = (tensor_ref){1, type, rows, cols, nbytes, data};
    return SLM_OK;
}

/* A vector (norm weight, bias, rope_freqs): f32, n elements. */
static int take_vector(const tensor_ref *t, int64_t n, int required, const float **out) {
    *out = NULL;
    if (!t->present) return required ? SLM_EINVAL : SLM_OK;
    if (t->type != SLM_TYPE_F32) return SLM_EUNSUPPORTED_TYPE;
    if (t->rows * t->cols != n) return SLM_ESHAPE;
    *out = t->data;
    return SLM_OK;
}

/* Unmap the whole pages inside [data, data + nbytes) of a shared file mapping. Pages shared
 * with a neighbouring tensor stay; a failure only leaves the pages resident. */
static void drop_file_pages(const void *data, int64_t nbytes) {
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t start = ((uintptr_t)data + page - 1) / page * page;
    const uintptr_t end = ((uintptr_t)data + (uintptr_t)nbytes) / page * page;
    if (end > start) (void)madvise((void *)start, end - start, MADV_DONTNEED);
}

static int take_matrix(slm_model *m, const tensor_ref *t, int64_t rows, int64_t cols, slm_weight *w) {
    if (!t->present) return SLM_EINVAL;
    if (t->rows != rows || t->cols != cols) return SLM_ESHAPE;
    if (!slm_get_traits(t->type, -1)) return SLM_EUNSUPPORTED_TYPE;
    if (!m->act_be[t->type]) { /* the activation format this weight type's kernels read */
        const int vdt = slm_get_traits(t->type, -1)->vec_dot_type;
        m->act_be[t->type] = slm_type_block_elems(vdt);
        m->act_bb[t->type] = slm_type_block_bytes(vdt);
        if (m->act_be[t->type] <= 0 || cols % m->act_be[t->type]) return SLM_EUNSUPPORTED_TYPE;
    }
    *w = (slm_weight){.type = t->type, .rows = rows, .cols = cols,
                      .row_bytes = slm_row_bytes(t->type, cols), .data = t->data};
    int rc = slm_weight_prepare(w);
    if (rc == SLM_OK && w->packed && m->cfg.weights_file_backed)
        drop_file_pages(t->data, t->nbytes);
    return rc;
}

/* Bytes of n activation elements in the format weight type `type` reads (n a whole number
 * of that format's blocks: 32 elements, 256 for the K types' Q8_K). */
static inline int64_t act_bytes(const slm_model *m, int type, int64_t n) {
    return n / m->act_be[type] * m->act_bb[type];
}

static void group_acts(act_group *g, const slm_weight *const *ws, int n) {
    g->n_slots = 0;
    for (int i = 0; i < n; i++) {
        int vdt = slm_get_traits(ws[i]->type, -1)->vec_dot_type, s;
        for (s = 0; s < g->n_slots; s++)
            if (slm_get_traits(g->slot_type[s], -1)->vec_dot_type == vdt) break;
        if (s == g->n_slots) g->slot_type[g->n_slots++] = ws[i]->type;
        g->slot[i] = s;
    }
}

static void *alloc_floats(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

int slm_model_ready(slm_model *m) {
    if (m->ready) return SLM_EINVAL;
    const slm_model_config *c = &m->cfg;
    int rc;
    const int64_t dim = c->dim, ffn = c->ffn_dim, qd = m->q_dim, kvd = m->kv_dim;

    if ((rc = take_matrix(m, &m->tensors[SLM_T_TOKEN_EMBD], c->vocab, dim, &m->token_embd))) return rc;
    if (!slm_get_traits(m->token_embd.type, -1)) return SLM_EUNSUPPORTED_TYPE;
    if ((rc = take_vector(&m->tensors[SLM_T_OUTPUT_NORM], dim, 1, &m->output_norm))) return rc;
    if (m->tensors[SLM_T_OUTPUT].present) {
        if ((rc = take_matrix(m, &m->tensors[SLM_T_OUTPUT], c->vocab, dim, &m->output))) return rc;
        m->lm_head = &m->output;
    } else {
        m->lm_head = &m->token_embd;
    }
    const float *rope_freqs;
    if ((rc = take_vector(&m->tensors[SLM_T_ROPE_FREQS], c->head_dim / 2, 0, &rope_freqs))) return rc;
    const int swa_base = c->sliding_window > 0 && c->rope_base_swa > 0 && c->rope_base_swa != c->rope_base;
    m->inv_freq = calloc((size_t)c->head_dim / 2, sizeof(double));
    if (swa_base) m->inv_freq_swa = calloc((size_t)c->head_dim / 2, sizeof(double));
    if (!m->inv_freq || (swa_base && !m->inv_freq_swa)) return SLM_ENOMEM;
    for (int i = 0; i < c->head_dim / 2; i++) {
        /* theta_i = pos * base^(-2i/head_dim) / rope_freqs[i], as ggml's rope does. */
        m->inv_freq[i] = pow((double)c->rope_base, -2.0 * i / c->head_dim);
        if (swa_base) m->inv_freq_swa[i] = pow((double)c->rope_base_swa, -2.0 * i / c->head_dim);
        if (rope_freqs) {
            if (!(rope_freqs[i] > 0)) return SLM_EINVAL;
            m->inv_freq[i] /= rope_freqs[i];
            if (swa_base) m->inv_freq_swa[i] /= rope_freqs[i];
        }
    }

    for (int l = 0; l < c->n_layer; l++) {
        const tensor_ref *t = &m->layer_tensors[(size_t)l * SLM_T_COUNT];
        layer_weights *L = &m->layers[l];
        int bias_required = c->arch == SLM_ARCH_QWEN2;
        if ((rc = take_vector(&t[SLM_T_ATTN_NORM], dim, 1, &L->attn_norm)) ||
            (rc = take_matrix(m, &t[SLM_T_WQ], qd, dim, &L->wq)) ||
            (rc = take_matrix(m, &t[SLM_T_WK], kvd, dim, &L->wk)) ||
            (rc = take_matrix(m, &t[SLM_T_WV], kvd, dim, &L->wv)) ||
            (rc = take_vector(&t[SLM_T_BQ], qd, bias_required, &L->bq)) ||
            (rc = take_vector(&t[SLM_T_BK], kvd, bias_required, &L->bk)) ||
            (rc = take_vector(&t[SLM_T_BV], kvd, bias_required, &L->bv)) ||
            (rc = take_matrix(m, &t[SLM_T_WO], dim, qd, &L->wo)) ||
            (rc = take_vector(&t[SLM_T_FFN_NORM], dim, 1, &L->ffn_norm)) ||
            (rc = take_matrix(m, &t[SLM_T_FFN_GATE], ffn, dim, &L->gate)) ||
            (rc = take_matrix(m, &t[SLM_T_FFN_UP], ffn, dim, &L->up)) ||
            (rc = take_matrix(m, &t[SLM_T_FFN_DOWN], dim, ffn, &L->down)))
            return rc;
        const int qk = arch_qk_norm(c->arch), post = arch_post_norms(c->arch);
        if ((rc = take_vector(&t[SLM_T_ATTN_Q_NORM], c->head_dim, qk, &L->q_norm)) ||
            (rc = take_vector(&t[SLM_T_ATTN_K_NORM], c->head_dim, qk, &L->k_norm)) ||
            (rc = take_vector(&t[SLM_T_ATTN_POST_NORM], dim, post, &L->attn_post_norm)) ||
            (rc = take_vector(&t[SLM_T_FFN_POST_NORM], dim, post, &L->ffn_post_norm)))
            return rc;
        if (!qk) L->q_norm = L->k_norm = NULL;  /* architectures run what they define */
        if (!post) L->attn_post_norm = L->ffn_post_norm = NULL;
        const int period = c->sliding_window_pattern;
        L->sliding = c->sliding_window > 0 && (period == 0 || l % period < period - 1);
        const slm_weight *qkv[3] = {&L->wq, &L->wk, &L->wv}, *gu[2] = {&L->gate, &L->up};
        group_acts(&L->qkv_acts, qkv, 3);
        group_acts(&L->gate_up_acts, gu, 2);
    }

    /* Run state. Activations are at most 4 bytes per element (plain f32). */
    const size_t B = (size_t)m->max_batch, nth = (size_t)c->n_threads;
    run_state *s = &m->s;
    m->act_a_slot = (int64_t)B * 4 * dim;
    s->x = alloc_floats(B * dim);
    s->xb = alloc_floats(B * dim);
    s->q = alloc_floats(B * qd);
    s->k = alloc_floats(B * kvd);
    s->v = alloc_floats(B * kvd);
    s->att_out = alloc_floats(B * qd);
    s->hg = alloc_floats(B * ffn);
    s->hu = alloc_floats(B * ffn);
    s->y = alloc_floats(B * dim);
    s->scores = alloc_floats(nth * c->n_ctx);
    s->rope_cs = alloc_floats(B * c->head_dim);
    if (m->inv_freq_swa && !(s->rope_cs_swa = alloc_floats(B * c->head_dim))) return SLM_ENOMEM;
    s->act_a = malloc(3 * (size_t)m->act_a_slot);
    s->act_b = malloc(B * 4 * (size_t)(qd > ffn ? qd : ffn));
    s->xb_own = alloc_floats(nth * dim);
    s->act_own = malloc(nth * 3 * 4 * (size_t)dim);
    size_t kv_elem = c->kv_type == SLM_TYPE_F16 ? 2 : 4;
    size_t cache_bytes = (size_t)c->n_layer * c->n_ctx * kvd * kv_elem;
    s->key_cache = malloc(cache_bytes);
    s->value_cache = malloc(cache_bytes);
    if (!s->x || !s->xb || !s->q || !s->k || !s->v || !s->att_out || !s->hg || !s->hu || !s->y ||
        !s->scores || !s->rope_cs || !s->act_a || !s->act_b || !s->xb_own || !s->act_own ||
        !s->key_cache || !s->value_cache)
        return SLM_ENOMEM;
    m->max_ops = 4 + 13 * c->n_layer;
    m->counters = aligned_alloc(64, (size_t)m->max_ops * sizeof(work_counter));
    if (!m->counters) return SLM_ENOMEM;
    if ((rc = slm_pool_create(c->n_threads, &m->pool))) return rc;
    m->ready = 1;
    return SLM_OK;
}

void slm_model_free(slm_model *m) {
    if (!m) return;
    slm_pool_free(m->pool);
    slm_weight_release(&m->token_embd);
    slm_weight_release(&m->output);
    if (m->layers)
        for (int l = 0; l < m->cfg.n_layer; l++) {
            layer_weights *L = &m->layers[l];
            slm_weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->gate, &L->up, &L->down};
            for (size_t i = 0; i < sizeof ws / sizeof *ws; i++) slm_weight_release(ws[i]);
        }
    run_state *s = &m->s;
    void *bufs[] = {s->x, s->xb, s->q, s->k, s->v, s->att_out, s->hg, s->hu, s->y, s->scores,
                    s->rope_cs, s->rope_cs_swa, s->act_a, s->act_b, s->xb_own, s->act_own,
                    s->key_cache, s->value_cache, m->inv_freq, m->inv_freq_swa, m->layers,
                    m->layer_tensors, m->counters, m->spans, m->span_ops, m->span_layers, m->tids};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
    free(m);
}

int32_t slm_model_n_past(const slm_model *m) { return m->n_past; }
int32_t slm_model_threads(const slm_model *m) { return m->cfg.n_threads; }

int slm_model_set_n_past(slm_model *m, int32_t n_past) {
    if (n_past < 0 || n_past > m->n_past) return SLM_EINVAL;
    m->n_past = n_past;
    return SLM_OK;
}

int slm_model_set_hooks(slm_model *m, const slm_region_hooks *hooks) {
    if (hooks && (!hooks->begin || !hooks->end)) return SLM_EINVAL;
    if (hooks && hooks->spans && !m->spans) {
        if (!m->ready) return SLM_EINVAL;
        /* embedding, every operation a block can run (SLM_OP_ATTN_NORM .. SLM_OP_FFN_POST_NORM),
         * output norm and LM head; rows of whole lines */
        const int per_block = SLM_OP_FFN_POST_NORM - SLM_OP_ATTN_NORM + 1;
        const int n = (3 + per_block * m->cfg.n_layer + 1) & ~1;
        const size_t nth = (size_t)m->cfg.n_threads;
        m->spans = aligned_alloc(64, nth * n * sizeof(slm_thread_span));
        m->span_ops = calloc((size_t)n, sizeof(int32_t));
        m->span_layers = calloc((size_t)n, sizeof(int32_t));
        m->tids = calloc(nth, sizeof(int32_t));
        if (!m->spans || !m->span_ops || !m->span_layers || !m->tids) {
            free(m->spans), free(m->span_ops), free(m->span_layers), free(m->tids);
            m->spans = NULL, m->span_ops = m->span_layers = m->tids = NULL;
            return SLM_ENOMEM;
        }
        m->max_span_ops = n;
    }
    m->hooks = hooks ? *hooks : (slm_region_hooks){0};
    return SLM_OK;
}

int slm_model_debug_delay(slm_model *m, int thread, int32_t region, uint32_t us) {
    if (thread < 0 || thread >= m->cfg.n_threads || us > 10000000) return SLM_EINVAL;
    m->delay.thread = thread;
    m->delay.region = region;
    m->delay.us = us;
    return SLM_OK;
}

int slm_model_set_region_ops(slm_model *m, int ops) {
    m->region_ops = ops != 0;
    return SLM_OK;
}

int slm_model_stop_on_sigint(slm_model *m, int watch, uint32_t seen) {
    m->watch_sigint = watch != 0;
    m->sigint_seen = seen;
    return SLM_OK;
}

/* ---- the neural net blocks ------------------------------------------------------------- */

static void rmsnorm(float *o, const float *x, const float *w, int n, float eps) {
    double ss = 0; /* in double, as ggml does: long rows of large activations */
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float scale = 1.0f / sqrtf((float)(ss / n) + eps);
    for (int i = 0; i < n; i++) o[i] = x[i] * scale * w[i];
}

/* Rotate one head's vector. llama GGUFs pair adjacent dims (the converter permuted Q/K rows);
 * qwen2 pairs dim i with i + head_dim/2 (NEOX). cs: (head_dim/2, 2) cos, sin. */
static void rope(float *v, const float *cs, int head_dim, int neox) {
    int half = head_dim / 2, stride = neox ? half : 1, step = neox ? 1 : 2;
    for (int i = 0; i < half; i++) {
        float *a = &v[i * step], *b = a + stride;
        float c = cs[2 * i], s = cs[2 * i + 1], a0 = *a, b0 = *b;
        *a = a0 * c - b0 * s;
        *b = a0 * s + b0 * c;
    }
}

/* e^x to about 2 ulp for x in [-60, 60] (clamped there), without branches or library calls, so
 * that loops over it vectorize (with -fno-trapping-math, which lets the clamps become selects).
 * The clamp is ±60, not the float range's ±87: the compiler computes both sides of a select in
 * every lane, and a side that divides by 1 + e^87 makes denormals, which x86 computes in
 * microcode at a hundred times the cost. */
static inline float exp_clamped(float x) {
    x = x > -60.0f ? x : -60.0f;
    x = x < 60.0f ? x : 60.0f;
    const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round(x / ln 2) */
    const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;              /* x - n ln 2, in two steps */
    float p = 1.9875691500e-4f;                                              /* e^r - 1 - r on [-ln2/2, ln2/2] */
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const int32_t bits = ((int32_t)n + 127) << 23; /* 2^n */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* gelu_tanh(g[i]) * u[i] in place (gemma's gelu_pytorch_tanh): 0.5 x (1 + tanh(z/2)) is
 * x / (1 + e^-z) with z = 2 sqrt(2/pi) (x + 0.044715 x^3). Relative error under 2e-6 against
 * double precision (tanhf's is 5e-5); for z < -60 (x below about -8.6) the result is
 * x e^-60 instead of something smaller still. */
static void gelu_mul(float *restrict g, const float *restrict u, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float x = g[i], z = 1.5957691216057308f * x * (1.0f + 0.044715f * x * x);
        g[i] = x / (1.0f + exp_clamped(-z)) * u[i];
    }
}

/* ---- forward --------------------------------------------------------------------------- */

/* Fixed work units, the same whatever the thread count (so every output is computed the same
 * way whichever thread computes it). */
#define EMBED_CHUNK 8     /* tokens */
#define NORM_CHUNK 4      /* tokens */
#define ROW_CHUNK 48      /* output rows of wo and down */
#define FFN_CHUNK 96      /* rows of gate and up (a multiple of the 32-element block; 256 when
                           * down reads Q8_K: each chunk quantizes whole blocks for it) */
#define HEAD_CHUNK 512    /* rows of the LM head */

/* One thread's place in the forward: which parallel step it is at, and (profiling) the span
 * of the operation it is in. */
typedef struct {
    slm_model *m;
    int ith;
    int step;
    slm_thread_span *span; /* NULL: not stamping */
    int n_span;
    int32_t region;        /* the operation of `span` */
} worker;

static inline uint64_t now_ns(void) { return slm_monotonic_ns(); }

/* The next operation's span of this thread (thread 0 also notes which operation it is). */
static void span_begin(worker *w, int32_t op) {
    slm_model *m = w->m;
    const int k = w->n_span;
    w->span = NULL;
    if (k >= m->max_span_ops) return;
    w->n_span++;
    if (w->ith == 0) {
        m->span_ops[k] = op;
        m->span_layers[k] = op - op % SLM_OP_COUNT;
    }
    w->span = &m->spans[(size_t)w->ith * m->max_span_ops + k];
    *w->span = (slm_thread_span){0};
    w->region = op;
}

static inline void span_add(slm_thread_span *sp, uint64_t t0, uint64_t t1, unsigned chunks) {
    if (!sp->t0_ns) sp->t0_ns = t0;
    sp->t1_ns = t1;
    sp->busy_ns += t1 - t0;
    sp->chunks += chunks;
}

/* Tests: the chosen thread sleeps inside the first work unit it takes in the chosen operation. */
static void maybe_delay(worker *w) {
    const slm_model *m = w->m;
    if (!m->delay.us || w->ith != m->delay.thread || w->region != m->delay.region) return;
    struct timespec ts = {m->delay.us / 1000000, (long)(m->delay.us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

typedef void (*chunk_fn)(worker *w, int64_t chunk, void *arg);

/* A parallel step: claim chunks until none is left, then wait until every chunk is done.
 * No thread waits for another to arrive, only for the work: a thread that the OS has
 * descheduled holds up the others by at most the one chunk it has in hand. */
static void parallel(worker *w, int64_t n_chunks, chunk_fn fn, void *arg) {
    slm_model *m = w->m;
    work_counter *c = &m->counters[w->step++];
    if (n_chunks <= 0) return;
    slm_thread_span *sp = w->span;
    const uint64_t t0 = sp ? now_ns() : 0;
    unsigned mine = 0;
    for (;;) {
        unsigned i = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed);
        if (i >= (unsigned)n_chunks) break;
        if (sp && !mine) maybe_delay(w);
        fn(w, i, arg);
        mine++;
    }
    if (sp) span_add(sp, t0, now_ns(), mine);
    if (mine) slm_pool_count_up(m->pool, &c->done, mine);
    slm_pool_wait_count(m->pool, &c->done, (unsigned)n_chunks);
}

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t n_chunks_of(int64_t n, int64_t chunk) { return (n + chunk - 1) / chunk; }

/* Call the hooks for one edge (main thread only). ids < 0: none; operation ids are dropped
 * when only layer regions are asked for. */
static void record_edge(const chunk_job *job, int end_op, int end_layer, int begin_layer, int begin_op) {
    const slm_region_hooks *h = &job->hooks;
    if (!job->region_ops) end_op = begin_op = -1;
    int32_t ends[2], begins[2];
    int n_end = 0, n_begin = 0;
    if (end_op >= 0) ends[n_end++] = end_op;
    if (end_layer >= 0) ends[n_end++] = end_layer;
    if (begin_layer >= 0) begins[n_begin++] = begin_layer;
    if (begin_op >= 0) begins[n_begin++] = begin_op;
    if (n_end + n_begin == 0) return;
    if (h->edge) {
        h->edge(h->ctx, ends, n_end, begins, n_begin);
    } else {
        for (int i = 0; i < n_end; i++) h->end(h->ctx, ends[i]);
        for (int i = 0; i < n_begin; i++) h->begin(h->ctx, begins[i]);
    }
}

/* A region edge inside the pass: end the regions that finished, begin the next ones. With
 * per-thread spans each thread only moves to its next span (and layer edges go to the hooks
 * only where they hold the threads for counters). Otherwise every edge follows a parallel
 * step, whose end already waits for all of its work, so the regions that end here cover every
 * thread's work: thread 0 records the edge while the others start the next step; the edge's
 * instant is read first, so what they do meanwhile is counted in the region that begins.
 * Hooks that read every thread's counters at layer edges (hold_at_layers) get the threads
 * held there, so no next-layer work is in a layer's counts. Without a profiler it is one
 * branch. */
static void edge(worker *w, int end_op, int end_layer, int begin_layer, int begin_op) {
    const chunk_job *job = &w->m->job;
    if (!job->hooks.begin) return;
    if (job->spans_on) {
        if (begin_op >= 0) span_begin(w, begin_op);
        else w->span = NULL;
        if (!job->hooks.hold_at_layers || (end_layer < 0 && begin_layer < 0)) return;
    }
    if (w->ith == 0) record_edge(job, end_op, end_layer, begin_layer, begin_op);
    if ((end_layer >= 0 || begin_layer >= 0) && job->hooks.hold_at_layers) slm_pool_barrier(w->m->pool);
}

/* Whether the pass stops at the start of layer l (Ctrl-C). Threads can be layers apart (none
 * waits for another to arrive, only for work), so they must agree at each boundary: the first
 * to reach boundary l decides for all and records it in m->gate. The rest read one word. */
static int stop_here(worker *w, int l) {
    slm_model *m = w->m;
    if (!m->job.watch_sigint) return 0;
    int g = atomic_load_explicit(&m->gate, memory_order_acquire);
    while (g == 2 * l) {
        const int want = slm_sigint_count() != m->job.sigint_seen ? 2 * l + 1 : 2 * l + 2;
        if (atomic_compare_exchange_weak_explicit(&m->gate, &g, want, memory_order_acq_rel,
                                                  memory_order_acquire))
            g = want;
    }
    return g == 2 * l + 1;
}

/* RMSNorm of rows [t0, t0+n) of x, quantized once per activation format of group g. */
typedef struct {
    int t0;
    int n;
    const float *weight;
    const act_group *g;
    float *xb;        /* (n, dim) */
    uint8_t *act;     /* slot s at s * slot_bytes, rows act_bytes(type, dim) apart */
    int64_t slot_bytes;
} norm_job;

static void norm_rows(slm_model *m, const norm_job *j, int64_t r0, int64_t r1) {
    const int dim = m->cfg.dim;
    for (int64_t r = r0; r < r1; r++) {
        rmsnorm(j->xb + r * dim, m->s.x + (j->t0 + r) * dim, j->weight, dim, m->cfg.norm_eps);
        for (int k = 0; k < j->g->n_slots; k++) {
            int type = j->g->slot_type[k];
            int64_t rb;
            slm_quantize_activations(type, j->xb + r * dim, dim, 1, dim,
                                     j->act + k * j->slot_bytes + r * act_bytes(m, type, dim), &rb);
        }
    }
}

static void norm_chunk(worker *w, int64_t chunk, void *arg) {
    const norm_job *j = arg;
    norm_rows(w->m, j, chunk * NORM_CHUNK, min64(j->n, (chunk + 1) * NORM_CHUNK));
}

/* For one row every thread normalizes into its own buffers (cheaper than making the others
 * wait for it); for several, the rows are shared out. Returns where the activations are. */
static norm_job norm_quantize(worker *w, int t0, int n, const float *weight, const act_group *g) {
    slm_model *m = w->m;
    run_state *s = &m->s;
    const int dim = m->cfg.dim;
    norm_job j = {.t0 = t0, .n = n, .weight = weight, .g = g};
    if (n == 1) {
        j.xb = s->xb_own + (size_t)w->ith * dim;
        j.act = s->act_own + (size_t)w->ith * 3 * 4 * dim;
        j.slot_bytes = 4 * (int64_t)dim;
        const uint64_t t0 = w->span ? now_ns() : 0;
        if (w->span) maybe_delay(w);
        norm_rows(m, &j, 0, 1);
        if (w->span) {
            span_add(w->span, t0, now_ns(), 1);
            w->span->own_copy = 1;
        }
        w->step++; /* keep step numbers the same on every path */
    } else {
        j.xb = s->xb;
        j.act = s->act_a;
        j.slot_bytes = m->act_a_slot;
        parallel(w, n_chunks_of(n, NORM_CHUNK), norm_chunk, &j);
    }
    return j;
}

static void store_kv(void *cache, const float *src, int64_t n, int kv_type) {
    if (kv_type == SLM_TYPE_F16) {
        slm_half *d = cache;
        for (int64_t i = 0; i < n; i++) d[i] = slm_fp32_to_fp16(src[i]);
    } else {
        memcpy(cache, src, (size_t)n * sizeof(float));
    }
}

typedef struct {
    int l;
    const norm_job *in;
    int64_t ffn_chunk; /* rows of gate and up per chunk */
} layer_job;

/* cos, sin of this chunk's positions at layer l's RoPE base: (B, head_dim/2, 2). */
static const float *rope_table(const slm_model *m, const layer_weights *L) {
    return L->sliding && m->s.rope_cs_swa ? m->s.rope_cs_swa : m->s.rope_cs;
}

static void store_head(slm_model *m, int l, int which, int64_t h, int t, const float *v) {
    const slm_model_config *c = &m->cfg;
    const size_t kv_elem = c->kv_type == SLM_TYPE_F16 ? 2 : 4;
    void *cache = which == 1 ? m->s.key_cache : m->s.value_cache;
    size_t pos = (size_t)l * c->n_ctx + m->job.pos0 + t;
    store_kv((char *)cache + (pos * m->kv_dim + h * c->head_dim) * kv_elem, v, c->head_dim, c->kv_type);
}

/* One head's rows of q, k or v (chunk = head unit: q heads, then k heads, then v heads) for
 * every token; bias; RoPE; new keys and values into the cache. With q/k norms, q and k get
 * their norm, RoPE and (k) cache store in the next step (qk_norm_chunk). */
static void qkv_chunk(worker *w, int64_t unit, void *arg) {
    const layer_job *j = arg;
    slm_model *m = w->m;
    const slm_model_config *c = &m->cfg;
    const layer_weights *L = &m->layers[j->l];
    run_state *s = &m->s;
    const int hd = c->head_dim, n_tok = m->job.n_tok, neox = arch_neox(c->arch);
    const int later = L->q_norm != NULL; /* q/k norm, RoPE and k store in their own step */
    const int which = unit < c->n_head ? 0 : unit < c->n_head + c->n_kv_head ? 1 : 2;
    const int64_t h = which == 0 ? unit : which == 1 ? unit - c->n_head : unit - c->n_head - c->n_kv_head;
    const slm_weight *wt = which == 0 ? &L->wq : which == 1 ? &L->wk : &L->wv;
    const float *bias = which == 0 ? L->bq : which == 1 ? L->bk : L->bv;
    float *outs = which == 0 ? s->q : which == 1 ? s->k : s->v;
    const int64_t out_dim = wt->rows;
    const uint8_t *act = j->in->act + L->qkv_acts.slot[which] * j->in->slot_bytes;
    slm_matmul_rows(wt, act, act_bytes(m, wt->type, c->dim), n_tok, outs, out_dim, h * hd, (h + 1) * hd);
    const float *cs = rope_table(m, L);
    for (int t = 0; t < n_tok; t++) {
        float *v = outs + (int64_t)t * out_dim + h * hd;
        if (bias)
            for (int i = 0; i < hd; i++) v[i] += bias[h * hd + i];
        if (later && which < 2) continue;
        if (which < 2) rope(v, cs + (int64_t)t * hd, hd, neox);
        if (which > 0) store_head(m, j->l, which, h, t, v);
    }
}

/* qwen3, gemma3: one head of q or k (unit: q heads, then k heads) for every token: RMSNorm
 * over the head with the layer's q or k norm weight, RoPE, keys into the cache. */
static void qk_norm_chunk(worker *w, int64_t unit, void *arg) {
    const layer_job *j = arg;
    slm_model *m = w->m;
    const slm_model_config *c = &m->cfg;
    const layer_weights *L = &m->layers[j->l];
    const int hd = c->head_dim, n_tok = m->job.n_tok, neox = arch_neox(c->arch);
    const int which = unit < c->n_head ? 0 : 1;
    const int64_t h = which == 0 ? unit : unit - c->n_head;
    const int64_t out_dim = which == 0 ? m->q_dim : m->kv_dim;
    float *outs = which == 0 ? m->s.q : m->s.k;
    const float *weight = which == 0 ? L->q_norm : L->k_norm, *cs = rope_table(m, L);
    for (int t = 0; t < n_tok; t++) {
        float *v = outs + (int64_t)t * out_dim + h * hd;
        rmsnorm(v, v, weight, hd, c->norm_eps);
        rope(v, cs + (int64_t)t * hd, hd, neox);
        if (which == 1) store_head(m, j->l, 1, h, t, v);
    }
}

/* Causal grouped-query attention for items (token, head), item = t * n_head + h. Each head's
 * output is quantized for wo right away when it fills whole blocks. */
typedef struct {
    int l;
    int items_per_chunk;
    int quantize_here;
} attention_job;

static void attention_chunk(worker *w, int64_t chunk, void *arg) {
    const attention_job *j = arg;
    slm_model *m = w->m;
    const slm_model_config *c = &m->cfg;
    run_state *s = &m->s;
    const int hd = c->head_dim, kvd = m->kv_dim;
    const int kv_f16 = c->kv_type == SLM_TYPE_F16;
    const size_t kv_elem = kv_f16 ? 2 : 4;
    const float scale = m->attn_scale;
    const int window = m->layers[j->l].sliding ? c->sliding_window : 0;
    const slm_weight *wo = &m->layers[j->l].wo;
    const int64_t wo_act_row = act_bytes(m, wo->type, m->q_dim);
    float *att = s->scores + (size_t)w->ith * c->n_ctx;
    const size_t layer_off = (size_t)j->l * c->n_ctx * kvd;
    const int64_t n_items = (int64_t)m->job.n_tok * c->n_head;
    for (int64_t item = chunk * j->items_per_chunk; item < min64(n_items, (chunk + 1) * j->items_per_chunk); item++) {
        const int t = (int)(item / c->n_head), h = (int)(item % c->n_head), kvh = h / m->kv_mul;
        const int n_pos = m->job.pos0 + t + 1; /* attend to positions first..pos */
        const int first = window && n_pos > window ? n_pos - window : 0;
        const float *q = s->q + (size_t)t * m->q_dim + (size_t)h * hd;
        float *out = s->att_out + (size_t)t * m->q_dim + (size_t)h * hd;
        const size_t head_off = (layer_off + (size_t)first * kvd + (size_t)kvh * hd) * kv_elem;
        m->job.attend(q, (const char *)s->key_cache + head_off, (const char *)s->value_cache + head_off,
                      kvd, n_pos - first, hd, scale, kv_f16, att, out);
        if (j->quantize_here) {
            int64_t rb;
            slm_quantize_activations(wo->type, out, hd, 1, hd,
                                     s->act_b + t * wo_act_row + act_bytes(m, wo->type, (int64_t)h * hd), &rb);
        }
    }
}

/* Attention outputs of whole tokens quantized for wo (head dims that are not whole blocks). */
static void quantize_att_chunk(worker *w, int64_t chunk, void *arg) {
    const attention_job *j = arg;
    slm_model *m = w->m;
    const slm_weight *wo = &m->layers[j->l].wo;
    const int64_t t0 = chunk * NORM_CHUNK, t1 = min64(m->job.n_tok, t0 + NORM_CHUNK);
    int64_t rb;
    slm_quantize_activations(wo->type, m->s.att_out + t0 * m->q_dim, m->q_dim, t1 - t0, m->q_dim,
                             m->s.act_b + t0 * act_bytes(m, wo->type, m->q_dim), &rb);
}

/* Rows of W . act (act in act_b) into y, for every token; added into the residual stream x
 * unless a post-norm comes first (post_norm_chunk adds then). */
typedef struct {
    const slm_weight *w;
    int add_residual;
} residual_job;

static void matmul_residual_chunk(worker *w, int64_t chunk, void *arg) {
    const residual_job *j = arg;
    const slm_weight *wt = j->w;
    slm_model *m = w->m;
    run_state *s = &m->s;
    const int n_tok = m->job.n_tok, dim = m->cfg.dim;
    const int64_t r0 = chunk * ROW_CHUNK, r1 = min64(dim, r0 + ROW_CHUNK);
    slm_matmul_rows(wt, s->act_b, act_bytes(m, wt->type, wt->cols), n_tok, s->y, dim, r0, r1);
    if (!j->add_residual) return;
    for (int t = 0; t < n_tok; t++)
        for (int64_t r = r0; r < r1; r++) s->x[(size_t)t * dim + r] += s->y[(size_t)t * dim + r];
}

/* gemma3: x += rmsnorm(y) * weight for whole tokens (the norm needs the whole row of y). */
static void post_norm_chunk(worker *w, int64_t chunk, void *arg) {
    const float *weight = arg;
    slm_model *m = w->m;
    run_state *s = &m->s;
    const int dim = m->cfg.dim;
    for (int64_t t = chunk * NORM_CHUNK; t < min64(m->job.n_tok, (chunk + 1) * NORM_CHUNK); t++) {
        float *y = s->y + t * dim, *x = s->x + t * dim;
        rmsnorm(y, y, weight, dim, m->cfg.norm_eps);
        for (int i = 0; i < dim; i++) x[i] += y[i];
    }
}

/* Rows [r0, r1) of act(gate) * up for every token (act: silu, or gelu_tanh), quantized for
 * down. */
static void gate_rows(slm_model *m, const layer_weights *L, int64_t r0, int64_t r1, int gelu) {
    run_state *s = &m->s;
    const int n_tok = m->job.n_tok, ffn = m->cfg.ffn_dim;
    const int dt = L->down.type;
    const int64_t down_act_row = act_bytes(m, dt, ffn);
    for (int t = 0; t < n_tok; t++) {
        float *hg = s->hg + (size_t)t * ffn, *hu = s->hu + (size_t)t * ffn;
        if (gelu)
            gelu_mul(hg + r0, hu + r0, r1 - r0);
        else
            m->job.swiglu(hg + r0, hu + r0, r1 - r0);
        int64_t rb;
        slm_quantize_activations(dt, hg + r0, r1 - r0, 1, r1 - r0,
                                 s->act_b + t * down_act_row + act_bytes(m, dt, r0), &rb);
    }
}

/* Rows of gate and up; SwiGLU archs: silu(gate) * up, quantized for down (gemma3: next step). */
static void gate_up_chunk(worker *w, int64_t chunk, void *arg) {
    const layer_job *j = arg;
    slm_model *m = w->m;
    const layer_weights *L = &m->layers[j->l];
    run_state *s = &m->s;
    const int n_tok = m->job.n_tok, ffn = m->cfg.ffn_dim, dim = m->cfg.dim;
    const int64_t r0 = chunk * j->ffn_chunk, r1 = min64(ffn, r0 + j->ffn_chunk);
    const act_group *g = &L->gate_up_acts;
    slm_matmul_rows(&L->gate, j->in->act + g->slot[0] * j->in->slot_bytes, act_bytes(m, L->gate.type, dim),
                    n_tok, s->hg, ffn, r0, r1);
    slm_matmul_rows(&L->up, j->in->act + g->slot[1] * j->in->slot_bytes, act_bytes(m, L->up.type, dim),
                    n_tok, s->hu, ffn, r0, r1);
    if (!arch_gelu(m->cfg.arch)) gate_rows(m, L, r0, r1, 0);
}

/* gemma3: rows of gelu_tanh(gate) * up, quantized for down. */
static void gelu_chunk(worker *w, int64_t chunk, void *arg) {
    const layer_job *j = arg;
    slm_model *m = w->m;
    const int64_t r0 = chunk * j->ffn_chunk, r1 = min64(m->cfg.ffn_dim, r0 + j->ffn_chunk);
    gate_rows(m, &m->layers[j->l], r0, r1, 1);
}

/* Token embeddings and this chunk's RoPE cos/sin table. */
static void embed_chunk(worker *w, int64_t chunk, void *arg) {
    slm_model *m = w->m;
    const slm_model_config *c = &m->cfg;
    run_state *s = &m->s;
    const int half = c->head_dim / 2;
    for (int64_t t = chunk * EMBED_CHUNK; t < min64(m->job.n_tok, (chunk + 1) * EMBED_CHUNK); t++) {
        const uint8_t *row = (const uint8_t *)m->token_embd.data + m->job.tokens[t] * m->token_embd.row_bytes;
        float *x = s->x + t * c->dim;
        slm_dequantize_row(m->token_embd.type, row, x, c->dim);
        if (m->embed_scale != 1.0f)
            for (int i = 0; i < c->dim; i++) x[i] *= m->embed_scale;
        const double pos = m->job.pos0 + t;
        for (int i = 0; i < half; i++) {
            double theta = pos * m->inv_freq[i];
            s->rope_cs[t * c->head_dim + 2 * i] = (float)cos(theta);
            s->rope_cs[t * c->head_dim + 2 * i + 1] = (float)sin(theta);
            if (!m->inv_freq_swa) continue;
            theta = pos * m->inv_freq_swa[i];
            s->rope_cs_swa[t * c->head_dim + 2 * i] = (float)cos(theta);
            s->rope_cs_swa[t * c->head_dim + 2 * i + 1] = (float)sin(theta);
        }
    }
}

static void lm_head_chunk(worker *w, int64_t chunk, void *arg) {
    const norm_job *in = arg;
    slm_model *m = w->m;
    const slm_weight *head = m->lm_head;
    const int64_t r0 = chunk * HEAD_CHUNK, r1 = min64(m->cfg.vocab, r0 + HEAD_CHUNK);
    slm_matmul_rows(head, in->act, act_bytes(m, head->type, m->cfg.dim), m->job.n_out, m->job.logits,
                    m->cfg.vocab, r0, r1);
    const float cap = m->cfg.logit_softcap;
    if (cap > 0)
        for (int t = 0; t < m->job.n_out; t++) {
            float *row = m->job.logits + (size_t)t * m->cfg.vocab;
            for (int64_t r = r0; r < r1; r++) row[r] = cap * tanhf(row[r] / cap);
        }
}

/* From operation a to operation b of the same slot. */
static void op_edge(worker *w, int slot, int a, int b) {
    edge(w, SLM_REGION_ID(slot, a), -1, -1, SLM_REGION_ID(slot, b));
}

static void forward_thread(void *ctx, int ith, int nth) {
    slm_model *m = ctx;
    const slm_model_config *c = &m->cfg;
    const chunk_job *job = &m->job;
    const int n_tok = job->n_tok;
    const int head_slot = c->n_layer + 1;
    const int qk_norm = arch_qk_norm(c->arch), post = arch_post_norms(c->arch), gelu = arch_gelu(c->arch);
    const int last_op = post ? SLM_OP_FFN_POST_NORM : SLM_OP_DOWN; /* a block's last operation */
    worker w = {.m = m, .ith = ith, .step = 0};
    if (job->spans_on) m->tids[ith] = slm_thread_id();
    edge(&w, -1, -1, -1, SLM_REGION_ID(0, SLM_OP_EMBED)); /* its layer began before the wake */

    parallel(&w, n_chunks_of(n_tok, EMBED_CHUNK), embed_chunk, NULL);
    for (int l = 0; l < c->n_layer; l++) {
        const layer_weights *L = &m->layers[l];
        const int slot = l + 1;
        int prev_end_op = l == 0 ? SLM_REGION_ID(0, SLM_OP_EMBED) : SLM_REGION_ID(l, last_op);
        if (stop_here(&w, l)) { /* every thread stops here: close the open regions */
            if (w.ith == 0 && job->hooks.begin && (!job->spans_on || job->hooks.hold_at_layers))
                record_edge(job, prev_end_op, SLM_REGION_ID(l, SLM_OP_LAYER), -1, -1);
            return;
        }
        edge(&w, prev_end_op, SLM_REGION_ID(l, SLM_OP_LAYER), SLM_REGION_ID(slot, SLM_OP_LAYER),
             SLM_REGION_ID(slot, SLM_OP_ATTN_NORM));

        /* attention rmsnorm, quantized once for q, k and v */
        norm_job in = norm_quantize(&w, 0, n_tok, L->attn_norm, &L->qkv_acts);
        op_edge(&w, slot, SLM_OP_ATTN_NORM, SLM_OP_QKV);

        /* q, k, v for these positions; RoPE; keys and values into the cache */
        const int64_t down_be = m->act_be[m->layers[l].down.type];
        layer_job lj = {.l = l, .in = &in, .ffn_chunk = down_be > FFN_CHUNK ? down_be : FFN_CHUNK};
        parallel(&w, c->n_head + 2 * c->n_kv_head, qkv_chunk, &lj);
        if (qk_norm) { /* per-head norm of q and k, then RoPE; keys into the cache */
            op_edge(&w, slot, SLM_OP_QKV, SLM_OP_QK_NORM);
            parallel(&w, c->n_head + c->n_kv_head, qk_norm_chunk, &lj);
            op_edge(&w, slot, SLM_OP_QK_NORM, SLM_OP_ROPE_ATTN);
        } else {
            op_edge(&w, slot, SLM_OP_QKV, SLM_OP_ROPE_ATTN);
        }

        /* multi-head attention over the cache; heads quantized for wo as they finish */
        attention_job aj = {.l = l, .items_per_chunk = n_tok > 8 ? c->n_head : 1,
                            .quantize_here = c->head_dim % m->act_be[m->layers[l].wo.type] == 0};
        parallel(&w, n_chunks_of((int64_t)n_tok * c->n_head, aj.items_per_chunk), attention_chunk, &aj);
        if (!aj.quantize_here) parallel(&w, n_chunks_of(n_tok, NORM_CHUNK), quantize_att_chunk, &aj);
        op_edge(&w, slot, SLM_OP_ROPE_ATTN, SLM_OP_ATTN_OUT);

        /* output projection, residual connection back into x (after its norm, with post-norms) */
        residual_job wo = {.w = &L->wo, .add_residual = !post};
        parallel(&w, n_chunks_of(c->dim, ROW_CHUNK), matmul_residual_chunk, &wo);
        if (post) {
            op_edge(&w, slot, SLM_OP_ATTN_OUT, SLM_OP_ATTN_POST_NORM);
            parallel(&w, n_chunks_of(n_tok, NORM_CHUNK), post_norm_chunk, (void *)L->attn_post_norm);
            op_edge(&w, slot, SLM_OP_ATTN_POST_NORM, SLM_OP_FFN_NORM);
        } else {
            op_edge(&w, slot, SLM_OP_ATTN_OUT, SLM_OP_FFN_NORM);
        }

        /* ffn rmsnorm, quantized once for gate and up */
        in = norm_quantize(&w, 0, n_tok, L->ffn_norm, &L->gate_up_acts);
        op_edge(&w, slot, SLM_OP_FFN_NORM, SLM_OP_GATE_UP);

        /* act(gate) * up, quantized for down: silu in the same step, gelu in its own */
        parallel(&w, n_chunks_of(c->ffn_dim, lj.ffn_chunk), gate_up_chunk, &lj);
        if (gelu) {
            op_edge(&w, slot, SLM_OP_GATE_UP, SLM_OP_GELU);
            parallel(&w, n_chunks_of(c->ffn_dim, lj.ffn_chunk), gelu_chunk, &lj);
            op_edge(&w, slot, SLM_OP_GELU, SLM_OP_DOWN);
        } else {
            op_edge(&w, slot, SLM_OP_GATE_UP, SLM_OP_DOWN);
        }

        /* down projection, residual connection back into x (after its norm, with post-norms) */
        residual_job down = {.w = &L->down, .add_residual = !post};
        parallel(&w, n_chunks_of(c->dim, ROW_CHUNK), matmul_residual_chunk, &down);
        if (post) {
            op_edge(&w, slot, SLM_OP_DOWN, SLM_OP_FFN_POST_NORM);
            parallel(&w, n_chunks_of(n_tok, NORM_CHUNK), post_norm_chunk, (void *)L->ffn_post_norm);
        }
    }
    if (job->n_out == 0) { /* the last block's layer region ends in slm_model_forward */
        edge(&w, SLM_REGION_ID(c->n_layer, last_op), -1, -1, -1);
        if (ith == 0) m->job.n_span_ops = w.n_span;
        return;
    }
    edge(&w, SLM_REGION_ID(c->n_layer, last_op), SLM_REGION_ID(c->n_layer, SLM_OP_LAYER),
         SLM_REGION_ID(head_slot, SLM_OP_LAYER), SLM_REGION_ID(head_slot, SLM_OP_OUTPUT_NORM));

    /* final rmsnorm of the tokens that need logits, then the classifier into the logits */
    act_group g = {.n_slots = 1, .slot = {0}, .slot_type = {m->lm_head->type}};
    norm_job in = norm_quantize(&w, job->out0, job->n_out, m->output_norm, &g);
    edge(&w, SLM_REGION_ID(head_slot, SLM_OP_OUTPUT_NORM), -1, -1, SLM_REGION_ID(head_slot, SLM_OP_LM_HEAD));
    parallel(&w, n_chunks_of(c->vocab, HEAD_CHUNK), lm_head_chunk, &in);
    edge(&w, SLM_REGION_ID(head_slot, SLM_OP_LM_HEAD), -1, -1, -1); /* its layer: after the join */
    if (ith == 0) m->job.n_span_ops = w.n_span;
}

int slm_model_forward(slm_model *m, const int32_t *tokens, int32_t n_tok, float *logits, int32_t n_logits) {
    if (!m->ready) return SLM_EINVAL;
    if (n_tok < 1 || !tokens || !logits || n_logits < 1 || n_logits > n_tok) return SLM_EINVAL;
    if ((int64_t)m->n_past + n_tok > m->cfg.n_ctx) return SLM_ECTX;
    for (int i = 0; i < n_tok; i++)
        if (tokens[i] < 0 || tokens[i] >= m->cfg.vocab) return SLM_EINVAL;
    const int32_t n_past0 = m->n_past;
    for (int done = 0; done < n_tok;) {
        const int n = n_tok - done < m->max_batch ? n_tok - done : m->max_batch;
        const int first_out = n_tok - n_logits; /* first token that gets logits */
        chunk_job *job = &m->job;
        const int spans_on = m->region_ops && m->hooks.begin && m->hooks.spans && m->spans;
        *job = (chunk_job){.tokens = tokens + done, .n_tok = n, .pos0 = m->n_past, .hooks = m->hooks,
                           .region_ops = m->region_ops && !spans_on, .spans_on = spans_on,
                           .attend = slm_attend_for(-1), .swiglu = slm_swiglu_for(-1),
                           .watch_sigint = m->watch_sigint, .sigint_seen = m->sigint_seen};
        if (job->watch_sigint && slm_sigint_count() != job->sigint_seen) break;
        if (done + n > first_out) {
            job->out0 = first_out > done ? first_out - done : 0;
            job->n_out = n - job->out0;
            job->logits = logits + (size_t)(done + job->out0 - first_out) * m->cfg.vocab;
        }
        memset(m->counters, 0, (size_t)m->max_ops * sizeof(work_counter));
        atomic_store_explicit(&m->gate, 0, memory_order_relaxed);
        /* The first layer region begins before the workers are woken and the last ends
         * after all of them have finished, so the layer regions cover the whole pass: waking
         * the threads is in the embedding layer's time, waiting for the last one to finish
         * in the final layer's (not in their operations: there it is the time by which the
         * layer exceeds its operations). */
        const int last_slot = job->n_out ? m->cfg.n_layer + 1 : m->cfg.n_layer;
        const int layer_edges = job->hooks.begin && (!spans_on || job->hooks.hold_at_layers);
        if (layer_edges) record_edge(job, -1, -1, SLM_REGION_ID(0, SLM_OP_LAYER), -1);
        const uint64_t t_begin = spans_on ? now_ns() : 0;
        slm_pool_run(m->pool, forward_thread, m);
        const uint64_t t_end = spans_on ? now_ns() : 0;
        if (atomic_load_explicit(&m->gate, memory_order_relaxed) & 1) break; /* stopped: regions closed */
        if (layer_edges) record_edge(job, -1, SLM_REGION_ID(last_slot, SLM_OP_LAYER), -1, -1);
        if (spans_on) {
            const slm_chunk_spans cs = {.n_threads = m->cfg.n_threads, .n_ops = job->n_span_ops,
                                        .row_stride = m->max_span_ops,
                                        .ops = m->span_ops, .layers = m->span_layers,
                                        .spans = m->spans, .tids = m->tids,
                                        .t_begin_ns = t_begin, .t_end_ns = t_end};
            job->hooks.spans(job->hooks.ctx, &cs);
        }
        m->n_past += n;
        done += n;
    }
    if (m->n_past != n_past0 + n_tok) {
        m->n_past = n_past0;
        return SLM_EINTR;
    }
    return SLM_OK;
}
