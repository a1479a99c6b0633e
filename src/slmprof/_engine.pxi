# Engine wrappers: the forward pass, KV cache and thread pool of csrc/model/.

# GGUF tensor name (with {l} for the layer) -> engine tensor kind, and whether it is per layer.
ENGINE_TENSORS = {
    "token_embd.weight": (SLM_T_TOKEN_EMBD, False),
    "output_norm.weight": (SLM_T_OUTPUT_NORM, False),
    "output.weight": (SLM_T_OUTPUT, False),
    "rope_freqs.weight": (SLM_T_ROPE_FREQS, False),
    "blk.{l}.attn_norm.weight": (SLM_T_ATTN_NORM, True),
    "blk.{l}.attn_q.weight": (SLM_T_WQ, True),
    "blk.{l}.attn_k.weight": (SLM_T_WK, True),
    "blk.{l}.attn_v.weight": (SLM_T_WV, True),
    "blk.{l}.attn_q.bias": (SLM_T_BQ, True),
    "blk.{l}.attn_k.bias": (SLM_T_BK, True),
    "blk.{l}.attn_v.bias": (SLM_T_BV, True),
    "blk.{l}.attn_output.weight": (SLM_T_WO, True),
    "blk.{l}.ffn_norm.weight": (SLM_T_FFN_NORM, True),
    "blk.{l}.ffn_gate.weight": (SLM_T_FFN_GATE, True),
    "blk.{l}.ffn_up.weight": (SLM_T_FFN_UP, True),
    "blk.{l}.ffn_down.weight": (SLM_T_FFN_DOWN, True),
    "blk.{l}.attn_q_norm.weight": (SLM_T_ATTN_Q_NORM, True),
    "blk.{l}.attn_k_norm.weight": (SLM_T_ATTN_K_NORM, True),
    "blk.{l}.post_attention_norm.weight": (SLM_T_ATTN_POST_NORM, True),
    "blk.{l}.post_ffw_norm.weight": (SLM_T_FFN_POST_NORM, True),
}
ENGINE_ARCHS = {"llama": SLM_ARCH_LLAMA, "qwen2": SLM_ARCH_QWEN2, "qwen3": SLM_ARCH_QWEN3,
                "gemma3": SLM_ARCH_GEMMA3}
REGION_OP_COUNT = SLM_OP_COUNT
REGION_OP_NAMES = tuple(slm_op_name(i).decode() for i in range(SLM_OP_COUNT))
# The operations each architecture runs (names, in order).
ARCH_OPS = {name: tuple(REGION_OP_NAMES[op] for op in range(SLM_OP_COUNT)
                        if slm_arch_has_op(arch, op))
            for name, arch in ENGINE_ARCHS.items()}
MAX_CTX = SLM_MAX_CTX
MAX_THREADS = SLM_MAX_THREADS
ENGINE_MAX_BATCH = SLM_DEFAULT_MAX_BATCH
# Python runs signal handlers in the main thread only: a pass there can stop for Ctrl-C.
cdef unsigned long _MAIN_THREAD = threading.main_thread().ident


cdef class Engine:
    """One loaded model in C: weights (zero-copy views of the GGUF mapping), KV cache, threads.

    `tensors` is a list of (kind, layer, type, rows, cols, uint8 array); the arrays (and the
    mapping under them) are kept alive for as long as the engine lives. config
    "weights_file_backed": the arrays are views of a shared file mapping (see slm_model_config).
    """
    def __cinit__(self, dict config, list tensors):
        cdef slm_model_config c
        c.arch = ENGINE_ARCHS[config["arch"]]
        c.n_layer = config["n_layer"]
        c.dim = config["dim"]
        c.ffn_dim = config["ffn"]
        c.n_head = config["n_head"]
        c.n_kv_head = config["n_kv_head"]
        c.head_dim = config["head_dim"]
        c.vocab = config["vocab"]
        c.n_ctx = config["n_ctx"]
        c.max_batch = config.get("max_batch", 0)
        c.kv_type = config.get("kv_type", 0)
        c.n_threads = config["threads"]
        c.rope_base = config["rope_base"]
        c.norm_eps = config["norm_eps"]
        c.sliding_window = config.get("sliding_window", 0)
        c.sliding_window_pattern = config.get("sliding_window_pattern", 0)
        c.rope_base_swa = config.get("rope_base_swa", 0.0)
        c.attn_scale = config.get("attn_scale", 0.0)
        c.embed_scale = config.get("embed_scale", 0.0)
        c.logit_softcap = config.get("logit_softcap", 0.0)
        c.weights_file_backed = 1 if config.get("weights_file_backed") else 0
        self.vocab = c.vocab
        check(slm_model_create(&c, &self.m), "creating the model")
        cdef cnp.ndarray data
        for kind, layer, ttype, rows, cols, arr in tensors:
            # The engine keeps pointers into these arrays: a copy made here would not live.
            if not (isinstance(arr, np.ndarray) and arr.flags.c_contiguous):
                raise ValueError(f"tensor kind {kind} layer {layer}: weights must be a "
                                 f"C-contiguous numpy array")
            data = arr.view(np.uint8)
            check(slm_model_set_tensor(self.m, kind, layer, ttype, rows, cols,
                                       <const void *>cnp.PyArray_DATA(data), data.nbytes),
                  f"loading tensor kind {kind} layer {layer}")
        self.keep_alive = tensors
        check(slm_model_ready(self.m), "preparing the model")

    def __dealloc__(self):
        if self.m is not NULL:
            slm_model_free(self.m)
            self.m = NULL

    cdef slm_model *_get(self) except NULL:
        if self.m is NULL:
            raise ValueError("the model is closed")
        return self.m

    def close(self):
        if self.m is not NULL:
            slm_model_free(self.m)
            self.m = NULL
        self.keep_alive = None
        self.hooks_owner = None

    def forward(self, tokens, int n_logits=0):
        """Run tokens at the current position. Logits as float32: (vocab,) of the last token
        when n_logits is 0, else (n_logits, vocab) of the last n_logits tokens."""
        cdef slm_model *m = self._get()
        cdef cnp.ndarray[cnp.int32_t, ndim=1, mode="c"] toks = np.ascontiguousarray(tokens, dtype=np.int32)
        cdef int32_t n = <int32_t>toks.shape[0]
        cdef object vocab = self.vocab
        if n == 0:
            raise ValueError("no tokens to run")
        if n_logits < 0 or n_logits > n:
            raise ValueError(f"n_logits {n_logits} is outside [0, {n}]")
        out = np.empty([n_logits, vocab] if n_logits else [vocab], dtype=np.float32)
        cdef float[::1] flat = out.reshape(-1)
        cdef int rc
        cdef bint watch = PyThread_get_thread_ident() == _MAIN_THREAD
        if watch:
            check(slm_sigint_watch(), "watching for Ctrl-C")
        try:
            while True:
                # Ctrl-C stops the pass between layers (n_past unchanged); Python's handler then
                # runs here: KeyboardInterrupt by default. A handler that does not raise gets
                # the pass run again.
                slm_model_stop_on_sigint(m, watch, slm_sigint_count())
                if watch:
                    PyErr_CheckSignals()
                with nogil:
                    rc = slm_model_forward(m, &toks[0], n, &flat[0], n_logits if n_logits else 1)
                if rc != SLM_EINTR:
                    break
                PyErr_CheckSignals()
        finally:
            slm_model_stop_on_sigint(m, 0, 0)
            if watch:
                slm_sigint_unwatch()
        check(rc, "forward pass")
        return out

    @property
    def n_past(self):
        return slm_model_n_past(self._get())

    def set_n_past(self, int n_past):
        check(slm_model_set_n_past(self._get(), n_past), "setting the position")

    @property
    def threads(self):
        return slm_model_threads(self._get())

    def set_hooks(self, HookSource source):
        """Call `source`'s C hooks (a RegionTable's, a TraceRecorder's) at every region edge,
        or none with None. The source is kept alive while attached."""
        check(slm_model_set_hooks(self._get(), source.hooks_ptr() if source is not None else NULL),
              "attaching region hooks")
        self.hooks_owner = source

    def set_region_ops(self, bint ops):
        """Region edges at every operation (True, the default) or at layers only."""
        check(slm_model_set_region_ops(self._get(), ops), "setting the region detail")

    def debug_delay(self, int thread, int32_t region, uint32_t us):
        """Tests of the attribution: worker `thread` sleeps `us` microseconds inside the first
        work unit it takes in operation `region` of every profiled pass (0: never)."""
        check(slm_model_debug_delay(self._get(), thread, region, us), "setting a test delay")

