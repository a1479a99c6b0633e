/* slm_model.h: the forward pass (llama, qwen2, qwen3, gemma3), KV cache, thread pool and
 * region ids.
 * Included by slm.h. */
#ifndef SLM_MODEL_H
#define SLM_MODEL_H

/* Operations inside a layer, in the order a block runs them. A region id is
 * slot * SLM_OP_COUNT + op,  where slot 0 is the token embedding, slots 1..n_layer are the
 * transformer blocks and slot n_layer+1 is the final norm + LM head. SLM_OP_LAYER is the whole
 * slot. Not every architecture runs every operation (slm_arch_has_op). */
typedef enum slm_op {
    SLM_OP_LAYER = 0,
    SLM_OP_EMBED,
    SLM_OP_ATTN_NORM,
    SLM_OP_QKV,            /* q, k, v products (llama, qwen2: + bias, RoPE, cache store) */
    SLM_OP_QK_NORM,        /* per-head RMSNorm of q and k, RoPE, cache store (qwen3, gemma3) */
    SLM_OP_ROPE_ATTN,      /* attention over the cache */
    SLM_OP_ATTN_OUT,
    SLM_OP_ATTN_POST_NORM, /* RMSNorm of the attention output before the residual (gemma3) */
    SLM_OP_FFN_NORM,
    SLM_OP_GATE_UP,        /* gate and up products (SwiGLU archs: + silu(gate) * up) */
    SLM_OP_GELU,           /* gelu_tanh(gate) * up (gemma3) */
    SLM_OP_DOWN,
    SLM_OP_FFN_POST_NORM,  /* RMSNorm of the FFN output before the residual (gemma3) */
    SLM_OP_OUTPUT_NORM,
    SLM_OP_LM_HEAD,
    SLM_OP_COUNT
} slm_op;

#define SLM_REGION_ID(slot, op) ((int32_t)(slot) * SLM_OP_COUNT + (int32_t)(op))

/* "layer", "embed", "attn_norm", ...: the names reports use; "unknown" out of range. */
const char *slm_op_name(int op);
/* 1 if a model of architecture `arch` (slm_arch) runs operation `op`, else 0. */
int slm_arch_has_op(int arch, int op);

/* Limits of a model config: the longest context, the most worker threads, and the tokens of one
 * internal forward chunk when max_batch is 0 (a longer prompt runs in chunks, each streaming
 * the weights again). */
#define SLM_MAX_CTX (1 << 20)
#define SLM_MAX_THREADS 1024
#define SLM_DEFAULT_MAX_BATCH 512

/* ---- Thread pool ----------------------------------------------------------------------
 * Persistent workers; the calling thread is worker 0. slm_pool_run runs fn on every worker and
 * returns when all are done. Inside fn, slm_pool_barrier waits for every worker (spins for a
 * while, then sleeps on a futex). Idle workers spin briefly after a job, then sleep. */
typedef struct slm_pool slm_pool;
typedef void (*slm_pool_fn)(void *ctx, int ith, int nth);
int slm_pool_create(int n_threads, slm_pool **out);  /* n_threads >= 1 */
void slm_pool_free(slm_pool *pool);
int slm_pool_threads(const slm_pool *pool);
void slm_pool_run(slm_pool *pool, slm_pool_fn fn, void *ctx);
void slm_pool_barrier(slm_pool *pool);

/* ---- Model -----------------------------------------------------------------------------
 * Weights point into the caller's mmap'd GGUF (zero-copy; the caller keeps it mapped for
 * the model's life). Kernels may repack through slm_weight_prepare. */
typedef enum slm_arch {
    SLM_ARCH_LLAMA = 0,  /* RoPE on adjacent pairs (2i, 2i+1), no biases */
    SLM_ARCH_QWEN2 = 1,  /* RoPE on pairs (i, i + head_dim/2) (NEOX), q/k/v biases */
    SLM_ARCH_QWEN3 = 2,  /* NEOX RoPE, per-head RMSNorm of q and k, no biases */
    SLM_ARCH_GEMMA3 = 3, /* NEOX RoPE, q/k norms, embeddings x embed_scale, RMSNorm after
                          * attention and after the FFN, gelu_tanh(gate) * up; optional sliding
                          * window with its own RoPE base */
    SLM_ARCH_COUNT
} slm_arch;

typedef struct slm_model_config {
    int32_t arch;       /* slm_arch */
    int32_t n_layer;
    int32_t dim;        /* embedding width */
    int32_t ffn_dim;    /* gated FFN hidden width */
    int32_t n_head;     /* query heads */
    int32_t n_kv_head;  /* key/value heads (GQA: n_head % n_kv_head == 0) */
    int32_t head_dim;
    int32_t vocab;
    int32_t n_ctx;      /* positions the KV cache holds */
    int32_t max_batch;  /* tokens per internal forward chunk; 0 = SLM_DEFAULT_MAX_BATCH (at most n_ctx) */
    int32_t kv_type;    /* SLM_TYPE_F32 or SLM_TYPE_F16 */
    int32_t n_threads;  /* >= 1 */
    float rope_base;
    float norm_eps;
    /* Sliding-window attention: a token at position p attends to positions
     * p - sliding_window + 1 .. p on the sliding layers: with sliding_window_pattern n >= 1,
     * layer l slides if l % n < n - 1 (gemma3: n = 6, every sixth layer attends to all
     * positions); n = 0: every layer slides. sliding_window 0: no layer slides. */
    int32_t sliding_window;
    int32_t sliding_window_pattern;
    float rope_base_swa;   /* RoPE base of the sliding layers; 0 = rope_base */
    float attn_scale;      /* scores = attn_scale * q.k; 0 = 1/sqrt(head_dim) */
    float embed_scale;     /* token embeddings are multiplied by it; 0 = 1 */
    float logit_softcap;   /* logits = c * tanh(logits / c); 0 = none */
    /* 1 when every tensor points into a shared read-only file mapping (a mmap'd GGUF): the
     * pages under a matrix the kernels repacked are then given back after packing (they
     * refault from the page cache if ever read), so the file is not resident twice. Never
     * set it for anonymous memory: dropping those pages would zero them. */
    int32_t weights_file_backed;
} slm_model_config;

/* Which tensor slm_model_set_tensor is given. Per-layer kinds take a layer index. */
typedef enum slm_tensor_kind {
    SLM_T_TOKEN_EMBD = 0, /* (vocab, dim) */
    SLM_T_OUTPUT_NORM,    /* (dim) f32 */
    SLM_T_OUTPUT,         /* (vocab, dim); absent: tied to the token embedding */
    SLM_T_ROPE_FREQS,     /* (head_dim/2) f32, optional: divides each RoPE frequency */
    SLM_T_ATTN_NORM,      /* (dim) f32 */
    SLM_T_WQ,             /* (n_head*head_dim, dim) */
    SLM_T_WK,             /* (n_kv_head*head_dim, dim) */
    SLM_T_WV,             /* (n_kv_head*head_dim, dim) */
    SLM_T_BQ, SLM_T_BK, SLM_T_BV, /* qwen2 biases, f32 */
    SLM_T_WO,             /* (dim, n_head*head_dim) */
    SLM_T_FFN_NORM,       /* (dim) f32 */
    SLM_T_FFN_GATE,       /* (ffn_dim, dim) */
    SLM_T_FFN_UP,         /* (ffn_dim, dim) */
    SLM_T_FFN_DOWN,       /* (dim, ffn_dim) */
    SLM_T_ATTN_Q_NORM,    /* (head_dim) f32, qwen3 and gemma3: one for every query head */
    SLM_T_ATTN_K_NORM,    /* (head_dim) f32 */
    SLM_T_ATTN_POST_NORM, /* (dim) f32, gemma3 */
    SLM_T_FFN_POST_NORM,  /* (dim) f32, gemma3 */
    SLM_T_COUNT
} slm_tensor_kind;

typedef struct slm_model slm_model;

/* Create an empty model (validates the config), hand it every tensor, then slm_model_ready. */
int slm_model_create(const slm_model_config *cfg, slm_model **out);
/* rows x cols in GGUF terms: ne1 = rows, ne0 = cols (row length). 1-D tensors: rows = 1. */
int slm_model_set_tensor(slm_model *m, int kind, int layer, int type, int64_t rows, int64_t cols,
                         const void *data, int64_t nbytes);
/* Checks that every required tensor is present with the right shape and a supported type,
 * prepares weights for the active ISA, allocates run state, KV cache and threads. */
int slm_model_ready(slm_model *m);
void slm_model_free(slm_model *m);

/* Run n_tok tokens at positions n_past.. as one batch (causal attention), append their keys
 * and values to the cache. logits: (n_logits, vocab) for the last n_logits tokens
 * (1 <= n_logits <= n_tok; 1 is the usual prompt, n_tok every position).
 * SLM_ECTX (nothing changed) if n_past + n_tok > n_ctx. */
int slm_model_forward(slm_model *m, const int32_t *tokens, int32_t n_tok, float *logits,
                      int32_t n_logits);
int32_t slm_model_n_past(const slm_model *m);
int slm_model_set_n_past(slm_model *m, int32_t n_past); /* only shrink: 0 resets */
int32_t slm_model_threads(const slm_model *m);
/* Attach (or, with NULL, detach) region hooks; they are copied. */
int slm_model_set_hooks(slm_model *m, const slm_region_hooks *hooks);
/* ops = 0: call the hooks at layer edges only (no operation regions); 1 (the default): both. */
int slm_model_set_region_ops(slm_model *m, int ops);
/* Tests of the attribution: worker `thread` sleeps `us` microseconds inside the first work unit
 * it takes in operation region `region` of every pass that stamps per-thread spans (us = 0:
 * never). */
int slm_model_debug_delay(slm_model *m, int thread, int32_t region, uint32_t us);

/* One query head's attention on path `isa` (< 0: the active one), as the forward pass runs it;
 * for tests. out (head_dim) = sum over p < n_pos of softmax_p(scale * q . k_p) v_p, where k and
 * v hold n_pos rows kv_stride >= head_dim elements apart, fp16 if kv_f16 else f32; att is
 * scratch of n_pos floats. SLM_ENOSYS if this CPU or build cannot run the path. */
int slm_attend_isa(int isa, const float *q, const void *k, const void *v, int64_t kv_stride, int n_pos,
                   int head_dim, float scale, int kv_f16, float *att, float *out);

/* ---- Ctrl-C -----------------------------------------------------------------------------
 * Python's SIGINT handler only notes a signal, and nothing acts on it while a forward pass runs
 * with the interpreter's lock released. slm_sigint_watch installs a handler that counts each
 * SIGINT and then calls the handler it replaced (Python still sees every signal);
 * slm_sigint_unwatch puts that one back when the last watcher leaves. Both nest and may be
 * called from any thread; nothing is installed while SIGINT is ignored or has its default
 * action (which ends the process anyway). */
int slm_sigint_watch(void);
void slm_sigint_unwatch(void);
uint32_t slm_sigint_count(void); /* SIGINTs counted so far; never reset */
/* watch = 1: slm_model_forward stops at the next layer boundary once slm_sigint_count() is no
 * longer `seen`, and returns SLM_EINTR with n_past as before the call (keys and values it wrote
 * past n_past are overwritten before any later pass reads them). watch = 0: it never stops. */
int slm_model_stop_on_sigint(slm_model *m, int watch, uint32_t seen);


#endif /* SLM_MODEL_H */
