/* slm_quant.h: block formats (ggml-identical layouts), quantizers, dot-product kernels,
 * runtime ISA dispatch, and matrix products over row ranges. Included by slm.h. */
#ifndef SLM_QUANT_H
#define SLM_QUANT_H

/* Type ids are GGUF's ggml type ids. */
typedef enum slm_type {
    SLM_TYPE_F32 = 0,
    SLM_TYPE_F16 = 1,
    SLM_TYPE_Q4_0 = 2,
    SLM_TYPE_Q4_1 = 3,
    SLM_TYPE_Q5_0 = 6,
    SLM_TYPE_Q5_1 = 7,
    SLM_TYPE_Q8_0 = 8,
    SLM_TYPE_Q8_1 = 9, /* activations only */
    SLM_TYPE_Q2_K = 10,
    SLM_TYPE_Q3_K = 11,
    SLM_TYPE_Q4_K = 12,
    SLM_TYPE_Q5_K = 13,
    SLM_TYPE_Q6_K = 14,
    SLM_TYPE_Q8_K = 15, /* activations only */
} slm_type;

#define SLM_QK 32    /* elements per block of the 32-element types (Q4_0 .. Q8_1) */
#define SLM_QK_K 256 /* elements per super-block of the K types (Q2_K .. Q8_K) */

typedef uint16_t slm_half; /* IEEE fp16 bits */

typedef struct { slm_half d; uint8_t qs[SLM_QK / 2]; } slm_block_q4_0;          /* 18 bytes */
typedef struct { slm_half d; slm_half m; uint8_t qs[SLM_QK / 2]; } slm_block_q4_1; /* 20 bytes */
typedef struct { slm_half d; int8_t qs[SLM_QK]; } slm_block_q8_0;               /* 34 bytes */
typedef struct { slm_half d; slm_half s; int8_t qs[SLM_QK]; } slm_block_q8_1;   /* 36 bytes, s = d*sum(qs) */
/* 5-bit: bit j of qh (little-endian uint32) is the 5th bit of element j; qs as in Q4_0/Q4_1. */
typedef struct { slm_half d; uint8_t qh[4]; uint8_t qs[SLM_QK / 2]; } slm_block_q5_0;              /* 22 bytes */
typedef struct { slm_half d; slm_half m; uint8_t qh[4]; uint8_t qs[SLM_QK / 2]; } slm_block_q5_1;  /* 24 bytes */

/* K types: super-blocks of 256 elements in sub-blocks of 16 or 32, each with an integer scale
 * (and min) quantized against the super-block's fp16 d (and dmin). Element order in the quants
 * is ggml's (see csrc/quant/kquants_ref.c). Activations for them are Q8_K. */
typedef struct { /* 2.625 bits per weight: x = d*sc*q - dmin*m, 16 sub-blocks of 16, q in 0..3 */
    uint8_t scales[SLM_QK_K / 16]; /* low nibble scale, high nibble min */
    uint8_t qs[SLM_QK_K / 4];
    slm_half d, dmin;
} slm_block_q2_K; /* 84 bytes */
typedef struct { /* 3.4375 bpw: x = d*(sc-32)*q, 16 sub-blocks of 16, q in -4..3 */
    uint8_t hmask[SLM_QK_K / 8];   /* high bit, set meaning "no -4" */
    uint8_t qs[SLM_QK_K / 4];      /* low 2 bits */
    uint8_t scales[12];            /* 16 scales of 6 bits */
    slm_half d;
} slm_block_q3_K; /* 110 bytes */
typedef struct { /* 4.5 bpw: x = d*sc*q - dmin*m, 8 sub-blocks of 32, q in 0..15 */
    slm_half d, dmin;
    uint8_t scales[12];            /* 8 scales and 8 mins of 6 bits */
    uint8_t qs[SLM_QK_K / 2];
} slm_block_q4_K; /* 144 bytes */
typedef struct { /* 5.5 bpw: as Q4_K with a 5th bit, q in 0..31 */
    slm_half d, dmin;
    uint8_t scales[12];
    uint8_t qh[SLM_QK_K / 8];
    uint8_t qs[SLM_QK_K / 2];
} slm_block_q5_K; /* 176 bytes */
typedef struct { /* 6.5625 bpw: x = d*sc*(q-32), 16 sub-blocks of 16, int8 scales */
    uint8_t ql[SLM_QK_K / 2];      /* low 4 bits */
    uint8_t qh[SLM_QK_K / 4];      /* high 2 bits */
    int8_t scales[SLM_QK_K / 16];
    slm_half d;
} slm_block_q6_K; /* 210 bytes */
typedef struct { /* activations for the K types: fp32 d, bsums[g] = sum of qs[16g .. 16g+15] */
    float d;
    int8_t qs[SLM_QK_K];
    int16_t bsums[SLM_QK_K / 16];
} slm_block_q8_K; /* 292 bytes */

/* Kernel paths. The SLMPROF_ISA env var (scalar|avx2|neon|neon-dotprod|avx512-vnni) forces one at startup;
 * if it names a path this CPU/build cannot run, the kernels return SLM_ENOSYS instead of
 * silently running another one (slm_isa_env_status says why). */
typedef enum slm_isa {
    SLM_ISA_SCALAR = 0,
    SLM_ISA_AVX2 = 1,
    SLM_ISA_NEON = 2,
    SLM_ISA_NEON_DOTPROD = 3,
    SLM_ISA_AVX512_VNNI = 4, /* the AVX2 kernels with 256-bit AVX-512 VNNI dot products */
    SLM_ISA_COUNT
} slm_isa;

/* Every tensor type a GGUF file may carry (ggml's ids, names and block layouts), whether or not
 * this engine computes with it: the one table of type facts, read by Python through the
 * extension. `activation` marks formats that only activations take (Q8_1, Q8_K). */
typedef struct slm_type_info {
    int id;
    const char *name;     /* lower case, as ggml spells it ("q4_k", "bf16") */
    int64_t block_elems;  /* elements per block (1 for plain floats and integers) */
    int64_t block_bytes;
    int activation;
} slm_type_info;
const slm_type_info *slm_type_info_at(int index); /* index 0.. in id order; NULL past the end */
const slm_type_info *slm_type_info_of(int type);  /* NULL for an id ggml does not define */
/* 1 if the engine has kernels for weights of this type (every ISA has at least the scalar path). */
int slm_type_computable(int type);

/* Type facts from that table; 0 for an unknown type. */
int64_t slm_type_block_elems(int type);
int64_t slm_type_block_bytes(int type);
int64_t slm_row_bytes(int type, int64_t n); /* <0 if n is not a multiple of the block */
const char *slm_type_name(int type);        /* "unknown" for an unknown type */

float slm_fp16_to_fp32(slm_half h);
slm_half slm_fp32_to_fp16(float f);

/* Reference (ground-truth) quantize/dequantize of one row of n elements. */
int slm_quantize_row_ref(int type, const float *x, void *y, int64_t n);
int slm_dequantize_row(int type, const void *x, float *y, int64_t n);

/* ISA selection. */
int slm_isa_available(int isa);        /* 1 if this CPU and build can run it */
int slm_isa_best(void);                /* best available path */
int slm_isa_active(void);              /* path in use now */
int slm_isa_set(int isa);              /* SLM_OK, or SLM_ENOSYS if unavailable */
const char *slm_isa_name(int isa);
int slm_isa_from_name(const char *name); /* isa id, or SLM_EINVAL */
int slm_isa_env_status(void);          /* SLM_OK, SLM_EINVAL (unknown name) or SLM_ENOSYS */
/* Put back a state read by slm_isa_active and slm_isa_env_status (the end of a section that
 * forced a path): a refused SLMPROF_ISA is refused again afterwards. */
int slm_isa_restore(int isa, int status);

/* One weight type's kernels on one ISA (ggml's type_traits idea). */
typedef void (*slm_from_float_fn)(const float *x, void *y, int64_t n);
typedef void (*slm_vec_dot_fn)(int64_t n, float *s, const void *w_row, const void *act_row);
typedef struct slm_type_traits {
    int vec_dot_type;             /* activation format the dot product expects */
    slm_from_float_fn from_float; /* f32 -> vec_dot_type, on this ISA */
    slm_vec_dot_fn vec_dot;       /* one weight row . one activation row */
} slm_type_traits;

/* NULL if the type has no kernel on that ISA. isa < 0 means the active one. */
const slm_type_traits *slm_get_traits(int type, int isa);

/* A weight matrix as the kernels see it: rows of `cols` elements of `type`.
 * `data` points into the mmap'd file (zero-copy) unless the kernel repacked it at load. */
typedef struct slm_weight {
    int type;
    int64_t rows, cols;
    int64_t row_bytes;
    const void *data;   /* [rows][row_bytes] */
    void *packed;       /* optional repacked copy owned by the kernels, or NULL */
    int layout;         /* SLM_LAYOUT_* of `packed` */
} slm_weight;

/* Weight layouts. R4X2: rows in groups of 4 (last group zero-padded), blocks in pairs (odd
 * count zero-padded); tile (group g, pair p) at (g*n_pairs + p)*tile_bytes holds
 *   half d[8] (index 2*row+block), [Q4_1, Q5_1: half m[8]], [Q5: per row the fifth bits as
 *   two uint32, elements 0..15 of both blocks then 16..31], then per row the two blocks' quants
 *   (Q4, Q5: 2x16 bytes of nibbles, Q8_0: 2x32 bytes).
 *   Tile bytes: Q4_0 144, Q4_1 160, Q5_0 176, Q5_1 192, Q8_0 272.
 * R4I (the dot-product path; Q4_0, Q4_1, Q8_0): the same tiles, but scales at index
 * 4*block+row and each block's quants 4 rows interleaved 4 bytes at a time (byte 16*j + 4*row + i
 * is the row's byte 4*j + i), so one 16-byte register holds 4 bytes of each row, the operand of
 * a by-element dot product. Q4_0 bytes are stored with each nibble's top bit flipped (x ^ 0x88):
 * then (x << 4) and (x & 0xF0), read as int8, are 16 times the signed values q - 8.
 * COPY (the K types): the plain rows, copied into huge pages. Streamed from 4 KiB pages of the
 * mapped file their kernels, busier per byte than a read loop, lose a third to half of their
 * speed to page walks. */
enum { SLM_LAYOUT_PLAIN = 0, SLM_LAYOUT_R4X2 = 1, SLM_LAYOUT_R4I = 2, SLM_LAYOUT_COPY = 3 };

/* Prepare a weight for the active ISA (may repack); slm_weight_release frees what it made. */
int slm_weight_prepare(slm_weight *w);
void slm_weight_release(slm_weight *w);

/* Quantize n_tok rows of activations (each of `cols` floats, row stride x_stride floats)
 * into the format `type`'s kernels expect; act has n_tok rows of slm_row_bytes(vec_dot_type, cols).
 * Returns the activation row size in bytes through *act_row_bytes. */
int slm_quantize_activations(int weight_type, const float *x, int64_t x_stride, int64_t n_tok,
                             int64_t cols, void *act, int64_t *act_row_bytes);

/* y[t*y_stride + r] = W[r,:] . act[t]  for r in [r0, r1), t in [0, n_tok).
 * act: n_tok rows, each act_row_bytes apart (from slm_quantize_activations; for F32/F16
 * weights the activations are plain f32 rows). The caller splits rows across threads. */
int slm_matmul_rows(const slm_weight *w, const void *act, int64_t act_row_bytes, int64_t n_tok,
                    float *y, int64_t y_stride, int64_t r0, int64_t r1);

/* Bytes of one activation row for a weight type (slm_row_bytes of its vec_dot_type). */
int slm_act_row_bytes(int weight_type, int64_t cols);

/* slm_matmul_rows on a given path (isa >= 0) instead of the active one; for tests/validation. */
int slm_matmul_rows_isa(const slm_weight *w, const void *act, int64_t act_row_bytes, int64_t n_tok,
                        float *y, int64_t y_stride, int64_t r0, int64_t r1, int isa);

/* Benchmark loops (scripts/bench_kernels.py): `reps` products of n_tok tokens, cycling over
 * n_copies weights (so decode streams from DRAM), rows split over n_threads threads with a
 * barrier after each product; and a read-bandwidth loop over `bytes`. The cpu_ outputs (may be
 * NULL) use thread 0's CPU time, which leaves out time other processes held the core. */
int slm_bench_matmul(const slm_weight *copies, int n_copies, const void *act, int64_t act_row_bytes,
                     int64_t n_tok, float *y, int reps, int n_threads, double *seconds_per_rep,
                     double *cpu_seconds_per_rep);
int slm_bench_read_bandwidth(int64_t bytes, int reps, int n_threads, double *bytes_per_second,
                             double *bytes_per_cpu_second);

/* Test-only: deliberately corrupt one kernel path so validation can prove it catches it. */
int slm_debug_corrupt_kernel(int type, int isa, int on);

#endif /* SLM_QUANT_H */
