# Kernels: reference quantizers, ISA dispatch, activation quantization and matrix products.
# Python-facing helpers live in slmprof.engine.quant; these are thin, checked wrappers.

def _quantize_rows_ref(cnp.ndarray x2d, int type):
    """x2d: (rows, cols) float32 C-contiguous -> (rows, row_bytes) uint8, reference quantizer."""
    cdef int64_t rows = x2d.shape[0], cols = x2d.shape[1]
    cdef int64_t rb = slm_row_bytes(type, cols)
    if rb < 0:
        check(SLM_ESHAPE if slm_type_block_elems(type) else SLM_EUNSUPPORTED_TYPE, "quantize")
    out = np.empty((rows, rb), dtype=np.uint8)
    cdef cnp.ndarray o = out
    cdef const float *xp = <const float *>cnp.PyArray_DATA(x2d)
    cdef uint8_t *op = <uint8_t *>cnp.PyArray_DATA(o)
    cdef int64_t r
    cdef int st = 0
    with nogil:
        for r in range(rows):
            st = slm_quantize_row_ref(type, xp + r * cols, op + r * rb, cols)
            if st < 0:
                break
    check(st, "quantize")
    return out


def _dequantize_rows(cnp.ndarray data2d, int type, int64_t n):
    """data2d: (rows, row_bytes(type, n)) uint8 C-contiguous -> (rows, n) float32."""
    cdef int64_t rows = data2d.shape[0]
    cdef int64_t rb = slm_row_bytes(type, n)
    out = np.empty((rows, n), dtype=np.float32)
    cdef cnp.ndarray o = out
    cdef const uint8_t *dp = <const uint8_t *>cnp.PyArray_DATA(data2d)
    cdef float *op = <float *>cnp.PyArray_DATA(o)
    cdef int64_t r
    cdef int st = 0
    with nogil:
        for r in range(rows):
            st = slm_dequantize_row(type, dp + r * rb, op + r * n, n)
            if st < 0:
                break
    check(st, "dequantize")
    return out


def _fp32_to_fp16_bits(float f):
    return slm_fp32_to_fp16(f)


def _fp16_bits_to_fp32(int h):
    return slm_fp16_to_fp32(<uint16_t>h)


def tensor_types():
    """Every ggml tensor type: (id, name, block_elems, block_bytes, activation_only, computable,
    activation type id of its kernels or -1)."""
    out = []
    cdef int i = 0
    cdef const slm_type_info *t = slm_type_info_at(0)
    cdef const slm_type_traits *tr
    while t != NULL:
        tr = slm_get_traits(t.id, 0)    # the scalar path: every computable type has one
        out.append((t.id, t.name.decode(), t.block_elems, t.block_bytes, bool(t.activation),
                    bool(slm_type_computable(t.id)), tr.vec_dot_type if tr != NULL else -1))
        i += 1
        t = slm_type_info_at(i)
    return tuple(out)


def _isa_count():
    return SLM_ISA_COUNT


def _isa_name(int isa):
    return slm_isa_name(isa).decode()


def _isa_from_name(str name):
    return slm_isa_from_name(name.encode())


def _isa_available(int isa):
    return bool(slm_isa_available(isa))


def _isa_best():
    return slm_isa_best()


def _isa_active():
    return slm_isa_active()


def _isa_env_status():
    return slm_isa_env_status()


def _isa_restore(int isa, int env_status):
    check(slm_isa_restore(isa, env_status), f"restore kernel path {slm_isa_name(isa).decode()!r}")


def _isa_set(int isa):
    check(slm_isa_set(isa), f"select kernel path {slm_isa_name(isa).decode()!r}")


def _debug_corrupt_kernel(int type, int isa, bint on):
    check(slm_debug_corrupt_kernel(type, isa, 1 if on else 0), "corrupt kernel switch")


def _act_row_bytes(int weight_type, int64_t cols):
    return check(slm_act_row_bytes(weight_type, cols), "activation row size")


cdef const slm_type_traits *_traits_or_raise(int type, int isa) except NULL:
    cdef const slm_type_traits *tr = slm_get_traits(type, isa)
    if tr == NULL:
        raise errors.UnavailableError(
            f"no {slm_type_name(type).decode()} kernel on path {slm_isa_name(isa).decode()!r} "
            "on this machine or build")
    return tr


def _quantize_activations(cnp.ndarray x2d, int weight_type, int isa):
    """x2d (n_tok, cols) float32 C-contiguous -> (n_tok, act_row_bytes) uint8 on path `isa`."""
    cdef const slm_type_traits *tr = _traits_or_raise(weight_type, isa)
    cdef int64_t n_tok = x2d.shape[0], cols = x2d.shape[1]
    cdef int rb = check(slm_act_row_bytes(weight_type, cols), "quantize activations")
    out = np.empty((n_tok, rb), dtype=np.uint8)
    cdef cnp.ndarray o = out
    cdef const float *xp = <const float *>cnp.PyArray_DATA(x2d)
    cdef uint8_t *op = <uint8_t *>cnp.PyArray_DATA(o)
    cdef int64_t t
    with nogil:
        for t in range(n_tok):
            tr.from_float(xp + t * cols, op + t * rb, cols)
    return out


def _vec_dot(int type, int isa, cnp.ndarray w_row, cnp.ndarray act_row, int64_t n):
    """One weight row . one activation row on path `isa` (bytes already sized by the caller)."""
    cdef const slm_type_traits *tr = _traits_or_raise(type, isa)
    cdef float s = 0
    tr.vec_dot(n, &s, cnp.PyArray_DATA(w_row), cnp.PyArray_DATA(act_row))
    return s


cdef class Weight:
    """A weight matrix (rows x cols of `type`) as the kernels see it; keeps `data` alive.

    prepare=True repacks for the active path (as the engine does at load)."""

    def __cinit__(self, data, int type, int64_t rows, int64_t cols, bint prepare=True):
        self.w.packed = NULL
        self.w.layout = SLM_LAYOUT_PLAIN
        cdef int64_t rb = slm_row_bytes(type, cols)
        if rb < 0:
            check(SLM_ESHAPE if slm_type_block_elems(type) else SLM_EUNSUPPORTED_TYPE, "weight")
        arr = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
        if arr.size != rows * rb:
            raise errors.ShapeError(f"weight: {rows}x{cols} {slm_type_name(type).decode()} takes "
                                    f"{rows * rb} bytes, got {arr.size}")
        self._data = arr
        self.type, self.rows, self.cols = type, rows, cols
        self.w.type = type
        self.w.rows = rows
        self.w.cols = cols
        self.w.row_bytes = rb
        self.w.data = cnp.PyArray_DATA(<cnp.ndarray>arr)
        if prepare:
            check(slm_weight_prepare(&self.w), "prepare weight")

    def __dealloc__(self):
        slm_weight_release(&self.w)

    @property
    def layout(self):
        return self.w.layout

    def prepare(self):
        check(slm_weight_prepare(&self.w), "prepare weight")

    def release(self):
        slm_weight_release(&self.w)

    def matmul_act(self, cnp.ndarray act, int isa=-1, int64_t r0=0, int64_t r1=-1):
        """act: (n_tok, act_row_bytes) uint8 from _quantize_activations -> y (n_tok, rows) float32."""
        if r1 < 0:
            r1 = self.rows
        act = np.ascontiguousarray(act)
        cdef int64_t n_tok = act.shape[0], arb = act.shape[1]
        y = np.zeros((n_tok, self.rows), dtype=np.float32)
        cdef cnp.ndarray yo = y
        cdef int st
        with nogil:
            st = slm_matmul_rows_isa(&self.w, cnp.PyArray_DATA(act), arb, n_tok,
                                     <float *>cnp.PyArray_DATA(yo), self.rows, r0, r1, isa)
        check(st, "matmul")
        return y


def _bench_matmul(list copies, cnp.ndarray act, int reps, int threads):
    """(wall seconds, thread-0 CPU seconds) per product of act (n_tok, act_row_bytes) with the
    weights, cycling over copies."""
    cdef int n = len(copies)
    if n < 1:
        raise ValueError("bench: no weights")
    cdef slm_weight *ws = <slm_weight *>malloc(n * sizeof(slm_weight))
    if ws == NULL:
        raise MemoryError()
    cdef int i
    cdef Weight w
    for i in range(n):
        w = copies[i]
        ws[i] = w.w
    act = np.ascontiguousarray(act)
    cdef int64_t n_tok = act.shape[0], arb = act.shape[1]
    y = np.zeros((n_tok, ws[0].rows), dtype=np.float32)
    cdef cnp.ndarray yo = y
    cdef double sec = 0, csec = 0
    cdef int st
    with nogil:
        st = slm_bench_matmul(ws, n, cnp.PyArray_DATA(act), arb, n_tok, <float *>cnp.PyArray_DATA(yo),
                              reps, threads, &sec, &csec)
    free(ws)
    check(st, "benchmark matmul")
    return sec, csec


def _bench_read_bandwidth(int64_t nbytes, int reps, int threads):
    """(bytes per wall second, bytes per CPU second of thread 0 x threads)."""
    cdef double bps = 0, cbps = 0
    cdef int st
    with nogil:
        st = slm_bench_read_bandwidth(nbytes, reps, threads, &bps, &cbps)
    check(st, "benchmark read bandwidth")
    return bps, cbps


def _attend(cnp.ndarray q, cnp.ndarray k, cnp.ndarray v, float scale, bint kv_f16, int isa):
    """One head's attention on path `isa`: q (head_dim,) float32; k, v (n_pos, kv_stride) C-contiguous,
    float16 if kv_f16 else float32 -> out (head_dim,) float32."""
    cdef int n_pos = k.shape[0], head_dim = q.shape[0]
    cdef int64_t stride = k.shape[1]
    att = np.empty(max(n_pos, 1), dtype=np.float32)
    out = np.empty(head_dim, dtype=np.float32)
    cdef cnp.ndarray a = att, o = out
    cdef int st
    with nogil:
        st = slm_attend_isa(isa, <const float *>cnp.PyArray_DATA(q), cnp.PyArray_DATA(k), cnp.PyArray_DATA(v),
                            stride, n_pos, head_dim, scale, kv_f16, <float *>cnp.PyArray_DATA(a),
                            <float *>cnp.PyArray_DATA(o))
    check(st, f"attention on path {slm_isa_name(isa).decode() if isa >= 0 else 'active'!r}")
    return out
