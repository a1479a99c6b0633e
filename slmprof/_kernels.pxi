# Kernels: reference quantizers, ISA dispatch, activation quantization and matrix products.
# Python-facing helpers live in slmprof/quant.py; these are thin, checked wrappers.

from libc.stdint cimport uint16_t

cdef extern from "slm.h" nogil:
    int64_t slm_type_block_elems(int type)
    int64_t slm_type_block_bytes(int type)
    int64_t slm_row_bytes(int type, int64_t n)
    const char *slm_type_name(int type)
    uint16_t slm_fp32_to_fp16(float f)
    float slm_fp16_to_fp32(uint16_t h)
    int slm_quantize_row_ref(int type, const float *x, void *y, int64_t n)
    int slm_dequantize_row(int type, const void *x, float *y, int64_t n)


def _row_bytes(int type, int64_t n):
    """Bytes of one row of n elements of `type`; negative if n is not a whole number of blocks."""
    return slm_row_bytes(type, n)


def _block_elems(int type):
    return slm_type_block_elems(type)


def _block_bytes(int type):
    return slm_type_block_bytes(type)


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
