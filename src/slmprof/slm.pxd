# slm.pxd: every declaration of the C core's public header (csrc/slm.h and the slm_*.h it
# includes) that the extension uses, each once; _core.pyx cimports them all.
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t


cdef extern from "slm.h" nogil:
    # ---- status codes (slm.h) ----
    enum:
        SLM_OK
        SLM_EINVAL
        SLM_ENOMEM
        SLM_ERANGE
        SLM_ENOSYS
        SLM_ENOENT
        SLM_EACCES
        SLM_EBUSY
        SLM_EMFILE
        SLM_EOPNOTSUPP
        SLM_EINTR
        SLM_EUNSUPPORTED_TYPE
        SLM_ESHAPE
        SLM_ECTX

    # ---- region hooks (slm.h) ----
    ctypedef struct slm_region_hooks:
        void (*begin)(void *ctx, int32_t region)
        void (*end)(void *ctx, int32_t region)
        void *ctx

    # ---- block formats, kernels and dispatch (slm_quant.h) ----
    int64_t slm_type_block_elems(int type)
    int64_t slm_type_block_bytes(int type)
    int64_t slm_row_bytes(int type, int64_t n)
    const char *slm_type_name(int type)
    uint16_t slm_fp32_to_fp16(float f)
    float slm_fp16_to_fp32(uint16_t h)
    int slm_quantize_row_ref(int type, const float *x, void *y, int64_t n)
    int slm_dequantize_row(int type, const void *x, float *y, int64_t n)

    ctypedef struct slm_type_info:
        int id
        const char *name
        int64_t block_elems
        int64_t block_bytes
        int activation
    const slm_type_info *slm_type_info_at(int index)
    int slm_type_computable(int type)

    enum:
        SLM_ISA_COUNT
        SLM_LAYOUT_PLAIN
    ctypedef void (*slm_from_float_fn)(const float *x, void *y, int64_t n)
    ctypedef void (*slm_vec_dot_fn)(int64_t n, float *s, const void *w_row, const void *act_row)
    ctypedef struct slm_type_traits:
        int vec_dot_type
        slm_from_float_fn from_float
        slm_vec_dot_fn vec_dot
    ctypedef struct slm_weight:
        int type
        int64_t rows
        int64_t cols
        int64_t row_bytes
        const void *data
        void *packed
        int layout
    int slm_isa_available(int isa)
    int slm_isa_best()
    int slm_isa_active()
    int slm_isa_set(int isa)
    const char *slm_isa_name(int isa)
    int slm_isa_from_name(const char *name)
    int slm_isa_env_status()
    int slm_isa_restore(int isa, int status)
    const slm_type_traits *slm_get_traits(int type, int isa)
    int slm_act_row_bytes(int weight_type, int64_t cols)
    int slm_weight_prepare(slm_weight *w)
    void slm_weight_release(slm_weight *w)
    int slm_matmul_rows_isa(const slm_weight *w, const void *act, int64_t act_row_bytes, int64_t n_tok,
                            float *y, int64_t y_stride, int64_t r0, int64_t r1, int isa)
    int slm_debug_corrupt_kernel(int type, int isa, int on)

    int slm_bench_matmul(const slm_weight *copies, int n_copies, const void *act, int64_t act_row_bytes,
                         int64_t n_tok, float *y, int reps, int n_threads, double *seconds_per_rep,
                         double *cpu_seconds_per_rep)
    int slm_bench_read_bandwidth(int64_t bytes, int reps, int n_threads, double *bytes_per_second,
                                 double *bytes_per_cpu_second)

    # ---- calibration kernels and the trace recorder (slm_calib.h) ----
    ctypedef struct slm_calib_result:
        double best_per_s
        double median_per_s
        double seconds
        int64_t passes
        int64_t work_per_pass
        uint64_t checksum
        double median_per_cpu_s
        double run_delay_seconds
        double thread_seconds
    enum:
        SLM_CALIB_READ
        SLM_CALIB_COPY
        SLM_CALIB_TRIAD
    int slm_calib_memory(int kind, int threads, int64_t bytes_per_array, double min_seconds,
                         int max_passes, int flags, slm_calib_result *out)
    enum:
        SLM_CALIB_HUGEPAGES
    int slm_calib_dot(int type, int isa, int threads, int64_t rows, int64_t cols,
                      double min_seconds, slm_calib_result *out)
    int slm_calib_matmul(int type, int threads, int64_t rows, int64_t cols, int64_t n_tok,
                         double min_seconds, slm_calib_result *out)
    int slm_calib_stream(int type, int threads, int64_t rows, int64_t cols, int64_t total_bytes,
                         int64_t chunk_rows, int interleave, double min_seconds, slm_calib_result *out)
    int slm_calib_attention(int threads, int head_dim, int n_pos, int64_t total_kv_bytes,
                            double min_seconds, slm_calib_result *out)
    int slm_calib_fma(int threads, double min_seconds, slm_calib_result *out, const char **path_name)
    int slm_calib_sync(int threads, int rounds, double *best_seconds, double *median_seconds)
    int slm_calib_engine_wait(int threads, int steps, int rounds, double *best_seconds,
                              double *median_seconds, slm_calib_result *load)
    int64_t slm_calib_llc_bytes()

    ctypedef struct slm_trace_edge:
        uint64_t t_ns
        int32_t region
        int32_t tid
        int32_t is_end
    ctypedef struct slm_trace_recorder:
        pass
    int slm_trace_create(slm_trace_recorder **out, int64_t capacity, const slm_region_hooks *next)
    void slm_trace_destroy(slm_trace_recorder *r)
    const slm_region_hooks *slm_trace_hooks(slm_trace_recorder *r)
    int64_t slm_trace_count(const slm_trace_recorder *r)
    int64_t slm_trace_dropped(const slm_trace_recorder *r)
    const slm_trace_edge *slm_trace_edges(const slm_trace_recorder *r)
    void slm_trace_clear(slm_trace_recorder *r)
    uint64_t slm_trace_now_ns()
    enum:
        SLM_TRACE_CRITICAL_TID

    # ---- counters, regions and the sampler (slm_perf.h) ----
    enum:
        SLM_PERF_MAX_EVENTS
        SLM_PERF_MAX_GROUP
        SLM_PERF_EXCLUDE_KERNEL
        SLM_PERF_INHERIT
        SLM_PERF_ENABLE_ON_EXEC
        SLM_PERF_USER_READ
        SLM_READ_SYSCALL
        SLM_READ_RDPMC
        SLM_READ_MRS
        SLM_COUNT_EXACT
        SLM_COUNT_SCALED
        SLM_COUNT_NOT_COUNTED
        SLM_COUNT_IDLE

    ctypedef struct slm_perf_event:
        uint32_t type
        uint64_t config
        uint64_t config1
        int32_t group

    ctypedef struct slm_perf_value:
        uint64_t raw
        double scaled
        uint64_t enabled_ns
        uint64_t running_ns
        uint32_t n_scaled
        uint32_t n_not_counted

    ctypedef struct slm_counters:
        pass

    int slm_perf_probe(uint32_t type, uint64_t config, uint64_t config1, int flags)
    int slm_perf_scale(uint64_t value, uint64_t enabled, uint64_t running, double *scaled)
    int slm_perf_parse_group(const uint64_t *buf, size_t n_words, int expected_nr, int has_id,
                             uint64_t *values, uint64_t *ids, uint64_t *enabled, uint64_t *running)
    int slm_counters_create(slm_counters **out, const slm_perf_event *events, int n_events, int flags)
    int slm_counters_attach_threads(slm_counters *c, int pid)
    int slm_counters_attach_task(slm_counters *c, int tid)
    int slm_counters_enable(slm_counters *c)
    int slm_counters_disable(slm_counters *c)
    int slm_counters_read(slm_counters *c, slm_perf_value *out)
    int slm_counters_n_events(const slm_counters *c)
    int slm_counters_n_threads(const slm_counters *c)
    int slm_counters_n_fds(const slm_counters *c)
    int slm_counters_read_path(slm_counters *c)
    void slm_counters_allow_user_read(slm_counters *c, int allow)
    void slm_counters_read_stats(slm_counters *c, uint64_t *user_reads, uint64_t *syscall_reads,
                                 uint64_t *user_fallbacks)
    void slm_counters_destroy(slm_counters *c)
    void slm_perf_spin(uint64_t n)
    int64_t slm_cpu_midr()
    uint64_t slm_monotonic_ns()

    ctypedef struct slm_region_stats:
        uint64_t count
        uint64_t wall_ns
        uint64_t thread_cpu_ns
        uint64_t span_count
        uint64_t span_ns
        uint64_t busy_ns
        uint64_t imbalance_ns
        slm_perf_value counters[24]
    ctypedef struct slm_span_record:
        pass
    ctypedef struct slm_call_record:
        pass

    ctypedef struct slm_region_table:
        pass

    int slm_region_table_create(slm_region_table **out, int capacity, slm_counters *counters)
    void slm_region_table_destroy(slm_region_table *t)
    void slm_region_begin(void *table, int32_t id)
    void slm_region_end(void *table, int32_t id)
    slm_region_hooks slm_region_table_hooks(slm_region_table *t)
    int slm_region_get(slm_region_table *t, int32_t id, slm_region_stats *out)
    void slm_region_table_reset(slm_region_table *t)
    uint64_t slm_region_table_errors(slm_region_table *t)
    int slm_region_table_capacity(const slm_region_table *t)
    uint64_t slm_region_bench_pairs(slm_region_table *t, int32_t id, int64_t n)
    void slm_region_edge(void *table, const int32_t *ends, int n_end, const int32_t *begins, int n_begin)
    int slm_region_set_wall_only(slm_region_table *t, int32_t id, int wall_only)
    int slm_region_is_wall_only(const slm_region_table *t, int32_t id)
    int slm_region_keep_spans(slm_region_table *t, int64_t capacity)
    int64_t slm_region_span_count(slm_region_table *t)
    int64_t slm_region_span_dropped(slm_region_table *t)
    int64_t slm_region_span_copy(slm_region_table *t, slm_span_record *out, int64_t max)
    int64_t slm_region_call_count(slm_region_table *t)
    int64_t slm_region_call_copy(slm_region_table *t, slm_call_record *out, int64_t max)

    enum:
        SLM_SAMPLER_MIN_HZ
        SLM_SAMPLER_MAX_HZ
        SLM_SAMPLER_MAX_CPUS
        SLM_SAMPLER_MAX_THERMAL
        SLM_SAMPLER_MAX_RAPL
        SLM_SAMPLER_MAX_SOURCES
        SLM_SAMPLER_MAX_EVERY

    ctypedef struct slm_sample:
        uint64_t t_ns

    ctypedef struct slm_sampler:
        pass

    ctypedef struct slm_sampler_stats:
        uint64_t n_samples
        uint64_t n_missed
        uint64_t n_dropped
        uint64_t thread_cpu_ns
        uint64_t elapsed_ns
        uint64_t thread_vol_ctxsw
        uint64_t thread_invol_ctxsw

    int slm_sampler_create(slm_sampler **out, int hz, int pid, int capacity)
    int slm_sampler_add_source(slm_sampler *s, int kind, int slot, const char *path, int every)
    int slm_sampler_start(slm_sampler *s)
    int slm_sampler_stop(slm_sampler *s)
    int slm_sampler_drain(slm_sampler *s, slm_sample *out, int max)
    int slm_sampler_stats_get(slm_sampler *s, slm_sampler_stats *out)
    int slm_sampler_source(slm_sampler *s, int i, int *kind, int *slot, int *last_errno,
                           uint64_t *n_failed, int *every, int *phase)
    int slm_sampler_n_sources(const slm_sampler *s)
    int slm_sampler_sample_once(slm_sampler *s, slm_sample *out)
    void slm_sampler_destroy(slm_sampler *s)
    size_t slm_sample_size()

    # ---- the model (slm_model.h) ----
    ctypedef struct slm_model:
        pass
    ctypedef struct slm_model_config:
        int32_t arch
        int32_t n_layer
        int32_t dim
        int32_t ffn_dim
        int32_t n_head
        int32_t n_kv_head
        int32_t head_dim
        int32_t vocab
        int32_t n_ctx
        int32_t max_batch
        int32_t kv_type
        int32_t n_threads
        float rope_base
        float norm_eps
        int32_t sliding_window
        int32_t sliding_window_pattern
        float rope_base_swa
        float attn_scale
        float embed_scale
        float logit_softcap
        int32_t weights_file_backed

    enum:
        SLM_MAX_CTX
        SLM_MAX_THREADS
        SLM_DEFAULT_MAX_BATCH
        SLM_ARCH_LLAMA
        SLM_ARCH_QWEN2
        SLM_ARCH_QWEN3
        SLM_ARCH_GEMMA3
        SLM_OP_COUNT
        SLM_T_TOKEN_EMBD
        SLM_T_OUTPUT_NORM
        SLM_T_OUTPUT
        SLM_T_ROPE_FREQS
        SLM_T_ATTN_NORM
        SLM_T_WQ
        SLM_T_WK
        SLM_T_WV
        SLM_T_BQ
        SLM_T_BK
        SLM_T_BV
        SLM_T_WO
        SLM_T_FFN_NORM
        SLM_T_FFN_GATE
        SLM_T_FFN_UP
        SLM_T_FFN_DOWN
        SLM_T_ATTN_Q_NORM
        SLM_T_ATTN_K_NORM
        SLM_T_ATTN_POST_NORM
        SLM_T_FFN_POST_NORM

    const char *slm_op_name(int op)
    int slm_arch_has_op(int arch, int op)
    int slm_model_create(const slm_model_config *cfg, slm_model **out)
    int slm_model_set_tensor(slm_model *m, int kind, int layer, int type, int64_t rows, int64_t cols,
                             const void *data, int64_t nbytes)
    int slm_model_ready(slm_model *m)
    void slm_model_free(slm_model *m)
    int slm_model_forward(slm_model *m, const int32_t *tokens, int32_t n_tok, float *logits,
                          int32_t n_logits)
    int32_t slm_model_n_past(const slm_model *m)
    int slm_model_set_n_past(slm_model *m, int32_t n_past)
    int32_t slm_model_threads(const slm_model *m)
    int slm_model_set_hooks(slm_model *m, const slm_region_hooks *hooks)
    int slm_model_set_region_ops(slm_model *m, int ops)
    int slm_attend_isa(int isa, const float *q, const void *k, const void *v, int64_t kv_stride, int n_pos,
                       int head_dim, float scale, int kv_f16, float *att, float *out)
    int slm_model_debug_delay(slm_model *m, int thread, int32_t region, uint32_t us)
    int slm_sigint_watch()
    void slm_sigint_unwatch()
    uint32_t slm_sigint_count()
    int slm_model_stop_on_sigint(slm_model *m, int watch, uint32_t seen)
