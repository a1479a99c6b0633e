/* The llama-family forward pass (llama, qwen2): weights, run state, KV cache, forward.
 *
 * Read top to bottom: structs, loading (set_tensor / ready), the small math blocks, then
 * forward. Every thread runs the whole forward (SPMD); work inside an operation is split by
 * output rows or by (token, head) items, never by splitting one reduction, so any thread count
 * gives bit-identical results. Threads meet at a barrier only where the next operation needs
 * another thread's rows:
 *
 *   embed  |  norm+quant  qkv+bias+RoPE -> cache  | attention+quant | wo+residual |
 *             norm+quant  gate/up+SwiGLU+quant     | down+residual   | ...  final norm, LM head
 *
 * For one token every thread computes the RMSNorm and activation quantization itself into a
 * private buffer (576 floats cost less than a barrier), so a decoded layer has four barriers.
 * Region hooks, when attached, are called by thread 0 between two barriers at each edge.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "slm.h"
#include "model/attention.h"

#define DEFAULT_MAX_BATCH 512

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
    uint8_t *act_a;    /* 3 slots of (B, act_bytes(dim)) */
    uint8_t *act_b;    /* (B, act_bytes(max(q_dim, ffn_dim))) */
    float *xb_own;     /* (n_threads, dim) per-thread normed input for one-token steps */
    uint8_t *act_own;  /* (n_threads, 3 slots of act_bytes(dim)) per-thread quantized input */
    void *key_cache;   /* (n_layer, n_ctx, kv_dim) of kv_type */
    void *value_cache; /* (n_layer, n_ctx, kv_dim) of kv_type */
} run_state;

/* What one slm_model_forward chunk asks of the threads. */
typedef struct {
    const int32_t *tokens; /* (n_tok) */
    int n_tok;
    int pos0;              /* position of tokens[0] */
    float *logits;         /* (n_out, vocab) */
    int out0, n_out;       /* tokens [out0, out0 + n_out) get logits; n_out = 0: none */
    slm_region_hooks hooks;
    slm_attend_fn attend;  /* attention path for the active ISA */
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
    layer_weights *layers;     /* (n_layer) */
    int64_t act_bytes32[16];   /* activation bytes per 32 elements, by weight type */
    int64_t act_a_slot;        /* bytes of one act_a slot: B * act_bytes(dim) at most */
    run_state s;
    slm_pool *pool;
    slm_region_hooks hooks;
    chunk_job job;
};

/* ---- loading --------------------------------------------------------------------------- */

int slm_model_create(const slm_model_config *cfg, slm_model **out) {
    *out = NULL;
    const slm_model_config c = *cfg;
    if (c.arch != SLM_ARCH_LLAMA && c.arch != SLM_ARCH_QWEN2) return SLM_EINVAL;
    if (c.n_layer < 1 || c.n_layer > 4096 || c.dim < 32 || c.dim > (1 << 16) || c.ffn_dim < 32 ||
        c.ffn_dim > (1 << 18) || c.n_head < 1 || c.n_kv_head < 1 || c.n_head % c.n_kv_head != 0 ||
        c.head_dim < 2 || c.head_dim % 2 != 0 || c.head_dim > 1024 || c.vocab < 1 ||
        c.vocab > (1 << 24))
        return SLM_ESHAPE;
    /* Activation quantization works on blocks of 32 along every matmul input. */
    if (c.dim % SLM_QK != 0 || c.ffn_dim % SLM_QK != 0 || (c.n_head * c.head_dim) % SLM_QK != 0)
        return SLM_ESHAPE;
    if (c.n_ctx < 1 || c.n_ctx > (1 << 20) || c.max_batch < 0) return SLM_EINVAL;
    if (c.kv_type != SLM_TYPE_F32 && c.kv_type != SLM_TYPE_F16) return SLM_EINVAL;
    if (c.n_threads < 1 || c.n_threads > 1024) return SLM_EINVAL;
    if (!(c.rope_base > 0) || !(c.norm_eps >= 0)) return SLM_EINVAL;
    slm_model *m = calloc(1, sizeof *m);
    if (!m) return SLM_ENOMEM;
    m->cfg = c;
    m->q_dim = c.n_head * c.head_dim;
    m->kv_dim = c.n_kv_head * c.head_dim;
    m->kv_mul = c.n_head / c.n_kv_head;
    m->max_batch = c.max_batch ? c.max_batch : DEFAULT_MAX_BATCH;
    if (m->max_batch > c.n_ctx) m->max_batch = c.n_ctx;
    m->layer_tensors = calloc((size_t)c.n_layer * SLM_T_COUNT, sizeof(tensor_ref));
    m->layers = calloc((size_t)c.n_layer, sizeof(layer_weights));
    if (!m->layer_tensors || !m->layers) { slm_model_free(m); return SLM_ENOMEM; }
    *out = m;
    return SLM_OK;
}

static int is_layer_kind(int kind) { return kind >= SLM_T_ATTN_NORM && kind < SLM_T_COUNT; }

int slm_model_set_tensor(slm_model *m, int kind, int layer, int type, int64_t rows, int64_t cols,
                         const void *data, int64_t nbytes) {
    if (m->ready || kind < 0 || kind >= SLM_T_COUNT || !data || rows < 1 || cols < 1) return SLM_EINVAL;
    int64_t rb = slm_row_bytes(type, cols);
    if (slm_type_block_elems(type) == 0) return SLM_EUNSUPPORTED_TYPE;
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

static int take_matrix(slm_model *m, const tensor_ref *t, int64_t rows, int64_t cols, slm_weight *w) {
    if (!t->present) return SLM_EINVAL;
    if (t->rows != rows || t->cols != cols) return SLM_ESHAPE;
    if (!slm_get_traits(t->type, -1)) return SLM_EUNSUPPORTED_TYPE;
    if (!m->act_bytes32[t->type]) {
        /* Learn the activation format's size from the quantizer itself. */
        float zeros[SLM_QK] = {0};
        uint8_t scratch[4 * SLM_QK];
        int64_t bytes = 0;
        int rc = slm_quantize_activations(t->type, zeros, SLM_QK, 1, SLM_QK, scratch, &bytes);
        if (rc < 0) return rc;
        if (bytes <= 0 || bytes > 4 * SLM_QK) return SLM_EUNSUPPORTED_TYPE;
        m->act_bytes32[t->type] = bytes;
    }
    *w = (slm_weight){.type = t->type, .rows = rows, .cols = cols,
                      .row_bytes = slm_row_bytes(t->type, cols), .data = t->data};
    return slm_weight_prepare(w);
}

/* Bytes of n activation elements in the format weight type `type` reads (n % 32 == 0). */
static inline int64_t act_bytes(const slm_model *m, int type, int64_t n) {
    return n / SLM_QK * m->act_bytes32[type];
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
    m->inv_freq = calloc((size_t)c->head_dim / 2, sizeof(double));
    if (!m->inv_freq) return SLM_ENOMEM;
    for (int i = 0; i < c->head_dim / 2; i++) {
        /* theta_i = pos * base^(-2i/head_dim) / rope_freqs[i], as ggml's rope does. */
        m->inv_freq[i] = pow((double)c->rope_base, -2.0 * i / c->head_dim);
        if (rope_freqs) {
            if (!(rope_freqs[i] > 0)) return SLM_EINVAL;
            m->inv_freq[i] /= rope_freqs[i];
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
                    s->rope_cs, s->act_a, s->act_b, s->xb_own, s->act_own, s->key_cache,
                    s->value_cache, m->inv_freq, m->layers, m->layer_tensors};
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
    m->hooks = hooks ? *hooks : (slm_region_hooks){0};
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

static inline float silu(float x) { return x / (1.0f + expf(-x)); }

/* [n * ith / nth, n * (ith + 1) / nth) */
static inline void split(int64_t n, int ith, int nth, int64_t *b0, int64_t *b1) {
    *b0 = n * ith / nth;
    *b1 = n * (ith + 1) / nth;
}

/* ---- forward --------------------------------------------------------------------------- */

/* A region edge: end the regions that finished, begin the next ones (ids < 0: none). Threads
 * wait for each other here only if the next step reads other threads' rows or a profiler
 * is attached; with no profiler that is one branch. */
static void edge(slm_model *m, int ith, int end_op, int end_layer, int begin_layer, int begin_op,
                 int needs_barrier) {
    const slm_region_hooks *h = &m->job.hooks;
    if (!h->begin) {
        if (needs_barrier) slm_pool_barrier(m->pool);
        return;
    }
    slm_pool_barrier(m->pool);
    if (ith == 0) {
        if (end_op >= 0) h->end(h->ctx, end_op);
        if (end_layer >= 0) h->end(h->ctx, end_layer);
        if (begin_layer >= 0) h->begin(h->ctx, begin_layer);
        if (begin_op >= 0) h->begin(h->ctx, begin_op);
    }
    slm_pool_barrier(m->pool);
}

/* RMSNorm rows [t0, t0+n) of x and quantize them for each activation slot of group g.
 * One row: every thread does it into its own buffers, no barrier. Several: split by rows into
 * shared buffers, then a barrier. Returns the act base to read (slot s at s * slot_bytes). */
static const uint8_t *norm_quantize(slm_model *m, int ith, int nth, int t0, int n, const float *w,
                                    const act_group *g, int64_t *slot_bytes) {
    const int dim = m->cfg.dim;
    run_state *s = &m->s;
    float *xb;
    uint8_t *act;
    int64_t r0, r1;
    if (n == 1) {
        xb = s->xb_own + (size_t)ith * dim;
        act = s->act_own + (size_t)ith * 3 * 4 * dim;
        *slot_bytes = 4 * (int64_t)dim;
        r0 = 0, r1 = 1;
    } else {
        xb = s->xb;
        act = s->act_a;
        *slot_bytes = m->act_a_slot;
        split(n, ith, nth, &r0, &r1);
    }
    for (int64_t r = r0; r < r1; r++) {
        rmsnorm(xb + r * dim, s->x + (t0 + r) * dim, w, dim, m->cfg.norm_eps);
        for (int k = 0; k < g->n_slots; k++) {
            int type = g->slot_type[k];
            int64_t rb;
            slm_quantize_activations(type, xb + r * dim, dim, 1, dim,
                                     act + k * *slot_bytes + r * act_bytes(m, type, dim), &rb);
        }
    }
    if (n > 1) slm_pool_barrier(m->pool);
    return act;
}

static void store_kv(void *cache, const float *src, int64_t n, int kv_type) {
    if (kv_type == SLM_TYPE_F16) {
        slm_half *d = cache;
        for (int64_t i = 0; i < n; i++) d[i] = slm_fp32_to_fp16(src[i]);
    } else {
        memcpy(cache, src, (size_t)n * sizeof(float));
    }
}

/* q/k/v projections for this thread's heads (whole heads, so RoPE and the cache store stay
 * with the rows' owner), biases, RoPE, and the new keys/values into the cache. */
static void qkv_rope_store(slm_model *m, int l, int ith, int nth, const uint8_t *act, int64_t slot_bytes) {
    const slm_model_config *c = &m->cfg;
    const layer_weights *L = &m->layers[l];
    run_state *s = &m->s;
    const int hd = c->head_dim, n_tok = m->job.n_tok, neox = c->arch == SLM_ARCH_QWEN2;
    const int n_units = c->n_head + 2 * c->n_kv_head;
    int64_t u0, u1;
    split(n_units, ith, nth, &u0, &u1);
    const slm_weight *ws[3] = {&L->wq, &L->wk, &L->wv};
    const float *bias[3] = {L->bq, L->bk, L->bv};
    float *outs[3] = {s->q, s->k, s->v};
    const int first[3] = {0, c->n_head, c->n_head + c->n_kv_head};
    const int count[3] = {c->n_head, c->n_kv_head, c->n_kv_head};
    const size_t kv_elem = c->kv_type == SLM_TYPE_F16 ? 2 : 4;
    for (int w = 0; w < 3; w++) {
        int64_t h0 = u0 - first[w], h1 = u1 - first[w];
        if (h0 < 0) h0 = 0;
        if (h1 > count[w]) h1 = count[w];
        if (h0 >= h1) continue;
        const int64_t out_dim = ws[w]->rows, type = ws[w]->type;
        const int slot = L->qkv_acts.slot[w];
        slm_matmul_rows(ws[w], act + slot * slot_bytes, act_bytes(m, type, c->dim), n_tok, outs[w],
                        out_dim, h0 * hd, h1 * hd);
        for (int t = 0; t < n_tok; t++) {
            float *row = outs[w] + (int64_t)t * out_dim;
            if (bias[w])
                for (int64_t r = h0 * hd; r < h1 * hd; r++) row[r] += bias[w][r];
            if (w < 2)
                for (int64_t h = h0; h < h1; h++)
                    rope(row + h * hd, s->rope_cs + (int64_t)t * hd, hd, neox);
            if (w > 0) {
                void *cache = w == 1 ? s->key_cache : s->value_cache;
                size_t pos = (size_t)l * c->n_ctx + m->job.pos0 + t;
                store_kv((char *)cache + (pos * m->kv_dim + h0 * hd) * kv_elem, row + h0 * hd,
                         (h1 - h0) * hd, c->kv_type);
            }
        }
    }
}

/* Causal grouped-query attention; items (token, head) are dealt out round-robin. Each head's
 * output is quantized for wo right away when it fills whole blocks. */
static void attention(slm_model *m, int l, int ith, int nth, int quantize_here) {
    const slm_model_config *c = &m->cfg;
    run_state *s = &m->s;
    const int hd = c->head_dim, n_tok = m->job.n_tok, kvd = m->kv_dim;
    const int kv_f16 = c->kv_type == SLM_TYPE_F16;
    const size_t kv_elem = kv_f16 ? 2 : 4;
    const float scale = 1.0f / sqrtf((float)hd);
    const slm_weight *wo = &m->layers[l].wo;
    const int64_t wo_act_row = act_bytes(m, wo->type, m->q_dim);
    float *att = s->scores + (size_t)ith * c->n_ctx;
    const size_t layer_off = (size_t)l * c->n_ctx * kvd;
    for (int item = ith; item < n_tok * c->n_head; item += nth) {
        const int t = item / c->n_head, h = item % c->n_head, kvh = h / m->kv_mul;
        const int n_pos = m->job.pos0 + t + 1; /* attend to positions 0..pos */
        const float *q = s->q + (size_t)t * m->q_dim + (size_t)h * hd;
        float *out = s->att_out + (size_t)t * m->q_dim + (size_t)h * hd;
        const size_t head_off = (layer_off + (size_t)kvh * hd) * kv_elem;
        m->job.attend(q, (const char *)s->key_cache + head_off, (const char *)s->value_cache + head_off,
                      kvd, n_pos, hd, scale, kv_f16, att, out);
        if (quantize_here) {
            int64_t rb;
            slm_quantize_activations(wo->type, out, hd, 1, hd,
                                     s->act_b + t * wo_act_row + act_bytes(m, wo->type, (int64_t)h * hd), &rb);
        }
    }
}

/* out rows [r0, r1) of W . act, then x += them (the residual), for every token. */
static void matmul_residual(slm_model *m, const slm_weight *w, int ith, int nth) {
    run_state *s = &m->s;
    const int n_tok = m->job.n_tok, dim = m->cfg.dim;
    int64_t r0, r1;
    split(dim, ith, nth, &r0, &r1);
    slm_matmul_rows(w, s->act_b, act_bytes(m, w->type, w->cols), n_tok, s->y, dim, r0, r1);
    for (int t = 0; t < n_tok; t++)
        for (int64_t r = r0; r < r1; r++) s->x[(size_t)t * dim + r] += s->y[(size_t)t * dim + r];
}

/* gate and up rows of this thread (whole 32-row blocks), SwiGLU, quantized for down. */
static void gate_up_swiglu(slm_model *m, int l, int ith, int nth, const uint8_t *act, int64_t slot_bytes) {
    const layer_weights *L = &m->layers[l];
    run_state *s = &m->s;
    const int n_tok = m->job.n_tok, ffn = m->cfg.ffn_dim, dim = m->cfg.dim;
    int64_t b0, b1;
    split(ffn / SLM_QK, ith, nth, &b0, &b1);
    const int64_t r0 = b0 * SLM_QK, r1 = b1 * SLM_QK;
    if (r0 == r1) return;
    const act_group *g = &L->gate_up_acts;
    slm_matmul_rows(&L->gate, act + g->slot[0] * slot_bytes, act_bytes(m, L->gate.type, dim), n_tok,
                    s->hg, ffn, r0, r1);
    slm_matmul_rows(&L->up, act + g->slot[1] * slot_bytes, act_bytes(m, L->up.type, dim), n_tok,
                    s->hu, ffn, r0, r1);
    const int dt = L->down.type;
    const int64_t down_act_row = act_bytes(m, dt, ffn);
    for (int t = 0; t < n_tok; t++) {
        float *hg = s->hg + (size_t)t * ffn, *hu = s->hu + (size_t)t * ffn;
        for (int64_t r = r0; r < r1; r++) hg[r] = silu(hg[r]) * hu[r];
        int64_t rb;
        slm_quantize_activations(dt, hg + r0, r1 - r0, 1, r1 - r0,
                                 s->act_b + t * down_act_row + act_bytes(m, dt, r0), &rb);
    }
}

static void embed(slm_model *m, int ith, int nth) {
    const slm_model_config *c = &m->cfg;
    run_state *s = &m->s;
    const int half = c->head_dim / 2;
    int64_t t0, t1;
    split(m->job.n_tok, ith, nth, &t0, &t1);
    for (int64_t t = t0; t < t1; t++) {
        const uint8_t *row = (const uint8_t *)m->token_embd.data + m->job.tokens[t] * m->token_embd.row_bytes;
        slm_dequantize_row(m->token_embd.type, row, s->x + t * c->dim, c->dim);
        const double pos = m->job.pos0 + t;
        for (int i = 0; i < half; i++) {
            double theta = pos * m->inv_freq[i];
            s->rope_cs[t * c->head_dim + 2 * i] = (float)cos(theta);
            s->rope_cs[t * c->head_dim + 2 * i + 1] = (float)sin(theta);
        }
    }
}

static void forward_thread(void *ctx, int ith, int nth) {
    slm_model *m = ctx;
    const slm_model_config *c = &m->cfg;
    run_state *s = &m->s;
    const chunk_job *job = &m->job;
    const int n_tok = job->n_tok;
    const int head_slot = c->n_layer + 1;
    int64_t slot_bytes;
    const uint8_t *act;

    if (job->hooks.begin && ith == 0) {
        job->hooks.begin(job->hooks.ctx, SLM_REGION_ID(0, SLM_OP_LAYER));
        job->hooks.begin(job->hooks.ctx, SLM_REGION_ID(0, SLM_OP_EMBED));
    }
    embed(m, ith, nth);
    for (int l = 0; l < c->n_layer; l++) {
        const layer_weights *L = &m->layers[l];
        const int slot = l + 1;
        int prev_end_op = l == 0 ? SLM_REGION_ID(0, SLM_OP_EMBED) : SLM_REGION_ID(l, SLM_OP_DOWN);
        edge(m, ith, prev_end_op, SLM_REGION_ID(l, SLM_OP_LAYER), SLM_REGION_ID(slot, SLM_OP_LAYER),
             SLM_REGION_ID(slot, SLM_OP_ATTN_NORM), 1);

        /* attention rmsnorm, quantized once for q, k and v */
        act = norm_quantize(m, ith, nth, 0, n_tok, L->attn_norm, &L->qkv_acts, &slot_bytes);
        edge(m, ith, SLM_REGION_ID(slot, SLM_OP_ATTN_NORM), -1, -1, SLM_REGION_ID(slot, SLM_OP_QKV), 0);

        /* q, k, v for this position; RoPE; keys and values into the cache */
        qkv_rope_store(m, l, ith, nth, act, slot_bytes);
        edge(m, ith, SLM_REGION_ID(slot, SLM_OP_QKV), -1, -1, SLM_REGION_ID(slot, SLM_OP_ROPE_ATTN), 1);

        /* multi-head attention over the cache; heads quantized for wo as they finish */
        int quantize_here = c->head_dim % SLM_QK == 0;
        attention(m, l, ith, nth, quantize_here);
        if (!quantize_here) {
            slm_pool_barrier(m->pool);
            int64_t t0, t1, rb;
            split(n_tok, ith, nth, &t0, &t1);
            if (t1 > t0)
                slm_quantize_activations(L->wo.type, s->att_out + t0 * m->q_dim, m->q_dim, t1 - t0,
                                         m->q_dim, s->act_b + t0 * act_bytes(m, L->wo.type, m->q_dim), &rb);
        }
        edge(m, ith, SLM_REGION_ID(slot, SLM_OP_ROPE_ATTN), -1, -1, SLM_REGION_ID(slot, SLM_OP_ATTN_OUT), 1);

        /* output projection, residual connection back into x */
        matmul_residual(m, &L->wo, ith, nth);
        edge(m, ith, SLM_REGION_ID(slot, SLM_OP_ATTN_OUT), -1, -1, SLM_REGION_ID(slot, SLM_OP_FFN_NORM), 1);

        /* ffn rmsnorm, quantized once for gate and up */
        act = norm_quantize(m, ith, nth, 0, n_tok, L->ffn_norm, &L->gate_up_acts, &slot_bytes);
        edge(m, ith, SLM_REGION_ID(slot, SLM_OP_FFN_NORM), -1, -1, SLM_REGION_ID(slot, SLM_OP_GATE_UP), 0);

        /* silu(gate) * up, quantized for down */
        gate_up_swiglu(m, l, ith, nth, act, slot_bytes);
        edge(m, ith, SLM_REGION_ID(slot, SLM_OP_GATE_UP), -1, -1, SLM_REGION_ID(slot, SLM_OP_DOWN), 1);

        /* down projection, residual connection back into x */
        matmul_residual(m, &L->down, ith, nth);
    }
    const int last_down = SLM_REGION_ID(c->n_layer, SLM_OP_DOWN), last_layer = SLM_REGION_ID(c->n_layer, SLM_OP_LAYER);
    if (job->n_out == 0) {
        edge(m, ith, last_down, last_layer, -1, -1, 0);
        return;
    }
    edge(m, ith, last_down, last_layer, SLM_REGION_ID(head_slot, SLM_OP_LAYER),
         SLM_REGION_ID(head_slot, SLM_OP_OUTPUT_NORM), 1);

    /* final rmsnorm of the tokens that need logits, then the classifier into the logits */
    const slm_weight *head = m->lm_head;
    act_group g = {.n_slots = 1, .slot = {0}, .slot_type = {head->type}};
    act = norm_quantize(m, ith, nth, job->out0, job->n_out, m->output_norm, &g, &slot_bytes);
    edge(m, ith, SLM_REGION_ID(head_slot, SLM_OP_OUTPUT_NORM), -1, -1, SLM_REGION_ID(head_slot, SLM_OP_LM_HEAD), 0);
    int64_t r0, r1;
    split(c->vocab, ith, nth, &r0, &r1);
    slm_matmul_rows(head, act, act_bytes(m, head->type, c->dim), job->n_out, job->logits, c->vocab, r0, r1);
    edge(m, ith, SLM_REGION_ID(head_slot, SLM_OP_LM_HEAD), SLM_REGION_ID(head_slot, SLM_OP_LAYER), -1, -1, 0);
}

int slm_model_forward(slm_model *m, const int32_t *tokens, int32_t n_tok, float *logits, int32_t n_logits) {
    if (!m->ready) return SLM_EINVAL;
    if (n_tok < 1 || !tokens || !logits || n_logits < 1 || n_logits > n_tok) return SLM_EINVAL;
    if ((int64_t)m->n_past + n_tok > m->cfg.n_ctx) return SLM_ECTX;
    for (int i = 0; i < n_tok; i++)
        if (tokens[i] < 0 || tokens[i] >= m->cfg.vocab) return SLM_EINVAL;
    for (int done = 0; done < n_tok;) {
        const int n = n_tok - done < m->max_batch ? n_tok - done : m->max_batch;
        const int first_out = n_tok - n_logits; /* first token that gets logits */
        chunk_job *job = &m->job;
        *job = (chunk_job){.tokens = tokens + done, .n_tok = n, .pos0 = m->n_past, .hooks = m->hooks,
                           .attend = slm_attend_generic};
#if defined(__x86_64__)
        if (slm_isa_active() == SLM_ISA_AVX2) job->attend = slm_attend_avx2;
#endif
        if (done + n > first_out) {
            job->out0 = first_out > done ? first_out - done : 0;
            job->n_out = n - job->out0;
            job->logits = logits + (size_t)(done + job->out0 - first_out) * m->cfg.vocab;
        }
        slm_pool_run(m->pool, forward_thread, m);
        m->n_past += n;
        done += n;
    }
    return SLM_OK;
}
