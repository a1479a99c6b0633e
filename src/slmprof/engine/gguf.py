"""GGUF model files: a validating reader over mmap, a writer, and the model description.

Reading:  `GGUFFile(path)` maps the file, parses the header, metadata and tensor table, and checks
every count, length, type id, dimension, offset and byte range before anything is used. Tensor
data are zero-copy numpy uint8 views into the mapping.
Describing: `describe_model(gguf_file)` checks the architecture (llama, qwen2, qwen3, gemma3), the
hyperparameters
and every tensor's shape and type against them, and returns a `ModelDescription` that the engine
loads weights from.
Writing:  `GGUFWriter(path, arch)` collects metadata and tensors and writes a v3 file to a temporary
name, renaming it into place only when complete.

Layout (all little-endian; see ggml's docs/gguf.md):
    "GGUF" u32 version  u64 n_tensors  u64 n_kv
    n_kv x      (string key, u32 value_type, value)
    n_tensors x (string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset)
    padding to alignment, then the data section (each tensor at data_start + offset)
"""
import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from slmprof.engine import quant
from slmprof.errors import ModelFileError, UnsupportedError
from slmprof.files import atomic_write, make_parent

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4
MAX_NAME_BYTES = 64            # ggml's GGML_MAX_NAME
MAX_TENSOR_ELEMENTS = 1 << 40  # far above any small model; stops overflowing products early


# --- metadata value types ------------------------------------------------------------------------
class ValueType:
    UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 \
        = range(13)


# value type -> (struct code, numpy dtype) for fixed-size scalars
_SCALAR = {
    ValueType.UINT8: ("<B", np.uint8), ValueType.INT8: ("<b", np.int8),
    ValueType.UINT16: ("<H", np.uint16), ValueType.INT16: ("<h", np.int16),
    ValueType.UINT32: ("<I", np.uint32), ValueType.INT32: ("<i", np.int32),
    ValueType.FLOAT32: ("<f", np.float32), ValueType.BOOL: ("<?", np.bool_),
    ValueType.UINT64: ("<Q", np.uint64), ValueType.INT64: ("<q", np.int64),
    ValueType.FLOAT64: ("<d", np.float64),
}
_VALUE_TYPE_NAMES = {getattr(ValueType, n): n.lower() for n in dir(ValueType) if n.isupper()}


# --- typed metadata reads ------------------------------------------------------------------------
_REQUIRED = object()


def _kind_of(value) -> str:
    """What a metadata value is, in the words an error message uses."""
    if isinstance(value, (bool, np.bool_)):
        return "a bool"
    if isinstance(value, (int, np.integer)):
        return "an integer"
    if isinstance(value, (float, np.floating)):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, np.ndarray):
        return f"an array of {value.dtype.name}"
    if isinstance(value, (list, tuple)):
        kinds = sorted({_kind_of(v).split(" ", 1)[1] for v in value[:1000]})
        return f"an array of {' and '.join(kinds) or 'nothing'}"
    return f"a {type(value).__name__}"


class Metadata:
    """Typed reads of GGUF metadata: every reader of a key says what it expects, and a value of
    another type (an array where a number belongs, a string for a token id, ...) is a
    ModelFileError naming the source and the key, never an exception from deep inside a reader.

    Works over a GGUFFile's metadata (scalars as Python numbers, numeric arrays as numpy arrays,
    string arrays as lists) and over plain dicts of Python values (synthetic vocabularies)."""

    def __init__(self, values, source):
        self.values = values
        self.source = source

    def __contains__(self, key):
        return key in self.values

    def _fail(self, key, value, expected):
        raise ModelFileError(f"{self.source}: metadata {key!r} is {_kind_of(value)}, expected "
                             f"{expected}")

    def _read(self, key, default, is_ok, expected, convert):
        if key not in self.values:
            if default is _REQUIRED:
                raise ModelFileError(f"{self.source}: missing metadata {key!r}")
            return default
        v = self.values[key]
        if not is_ok(v):
            self._fail(key, v, expected)
        return convert(key, v)

    def integer(self, key, default=_REQUIRED):
        """An integer of any width (not a bool)."""
        return self._read(key, default, _is_int, "an integer", lambda k, v: int(v))

    def number(self, key, default=_REQUIRED):
        """A float or an integer, as float."""
        return self._read(key, default, lambda v: _is_int(v) or isinstance(v, (float, np.floating)),
                          "a number", lambda k, v: float(v))

    def boolean(self, key, default=_REQUIRED):
        return self._read(key, default, lambda v: isinstance(v, (bool, np.bool_)), "a bool",
                          lambda k, v: bool(v))

    def string(self, key, default=_REQUIRED):
        return self._read(key, default, lambda v: isinstance(v, str), "a string", lambda k, v: v)

    def strings(self, key, default=_REQUIRED):
        """An array of strings, as a list."""
        return self._read(key, default, lambda v: isinstance(v, (list, tuple)) and
                          all(isinstance(s, str) for s in v), "an array of strings",
                          lambda k, v: list(v))

    def integers(self, key, default=_REQUIRED):
        """An array of integers, as an int64 numpy array."""
        return self._read(key, default, lambda v: _numeric_kind(v) in ("i", "u"),
                          "an array of integers", self._int64)

    def numbers(self, key, default=_REQUIRED):
        """An array of floats or integers, as a float64 numpy array."""
        return self._read(key, default, lambda v: _numeric_kind(v) in ("i", "u", "f"),
                          "an array of numbers", lambda k, v: np.asarray(v).astype(np.float64))

    def _int64(self, key, v):
        arr = np.asarray(v)
        if arr.dtype == np.uint64 and arr.size and arr.max() > np.iinfo(np.int64).max:
            raise ModelFileError(f"{self.source}: metadata {key!r} holds an integer too large "
                                 f"for int64")
        return arr.astype(np.int64)


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _numeric_kind(v):
    """numpy's dtype kind of an array of plain numbers ("i", "u", "f"), or None."""
    if isinstance(v, np.ndarray):
        return v.dtype.kind
    if isinstance(v, (list, tuple)) and all(_is_int(x) or isinstance(x, (float, np.floating))
                                            for x in v):
        try:
            return np.asarray(v).dtype.kind if v else "i"
        except OverflowError:
            return None
    return None


# Tensor types come from the C core's one table (slmprof.engine.quant.TYPES).

# llama.cpp's file types (general.file_type, enum llama_ftype): what a whole file is called.
FILE_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q8_0": 7, "q5_0": 8, "q5_1": 9,
              "q2_k": 10, "q3_k_s": 11, "q3_k_m": 12, "q3_k_l": 13, "q4_k_s": 14, "q4_k_m": 15,
              "q5_k_s": 16, "q5_k_m": 17, "q6_k": 18}


# --- reading -------------------------------------------------------------------------------------
@dataclass
class TensorInfo:
    name: str
    type: int               # ggml type id
    shape: tuple            # GGUF ne order: ne0 (row length) first
    offset: int             # absolute file offset of the first byte
    nbytes: int
    data: Optional[np.ndarray] = field(default=None, repr=False)  # uint8 zero-copy view

    @property
    def type_name(self) -> str:
        return quant.display_name(self.type)

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


class _Cursor:
    """Bounds-checked little-endian reads from the mapped file; errors name the file and field."""

    def __init__(self, buf, path):
        self.buf = buf
        self.size = len(buf)
        self.pos = 0
        self.path = path

    def fail(self, what):
        raise ModelFileError(f"{self.path}: {what}")

    def need(self, n, what):
        if n < 0 or self.pos + n > self.size:
            self.fail(f"truncated: {what} needs {n} bytes at offset {self.pos}, "
                      f"file has {self.size} bytes")

    def scalar(self, code, nbytes, what):
        self.need(nbytes, what)
        (v,) = struct.unpack_from(code, self.buf, self.pos)
        self.pos += nbytes
        return v

    def u32(self, what):
        return self.scalar("<I", 4, what)

    def u64(self, what):
        return self.scalar("<Q", 8, what)

    def string(self, what, max_len=None):
        n = self.u64(f"length of {what}")
        if max_len is not None and n > max_len:
            self.fail(f"{what}: string length {n} exceeds {max_len}")
        self.need(n, f"{what} (string of {n} bytes)")
        raw = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            self.fail(f"{what}: string is not valid UTF-8 ({e.reason} at byte {e.start})")


class GGUFFile:
    """A GGUF file mapped read-only and validated; see the module docstring."""

    def __init__(self, path):
        self.path = Path(path)
        self._mmap = None
        self.metadata = {}
        self.value_types = {}   # key -> value type (arrays: (ARRAY, element type))
        self.meta = Metadata(self.metadata, str(self.path))   # typed reads of the same values
        self.tensors = {}
        try:
            size = os.path.getsize(self.path)
        except OSError as e:
            raise ModelFileError(f"{self.path}: cannot open model file: {e.strerror}") from None
        if size < 24:
            raise ModelFileError(f"{self.path}: truncated: {size} bytes is too short for a GGUF "
                                 f"header (24 bytes)")
        with open(self.path, "rb") as f:
            self._mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            self._parse()
        except BaseException:
            self.close()
            raise

    # context manager and cleanup
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Drop the tensor views and unmap. If a caller still holds a view, the mapping lives
        until that view goes away (numpy keeps it alive), which is safe."""
        for t in self.tensors.values():
            t.data = None
        if self._mmap is not None:
            try:
                self._mmap.close()
            except BufferError:
                pass
            self._mmap = None

    @property
    def arch(self) -> str:
        """general.architecture, or "" when missing or not a string."""
        arch = self.metadata.get("general.architecture", "")
        return arch if isinstance(arch, str) else ""

    # parsing
    def _parse(self):
        cur = _Cursor(self._mmap, self.path)
        magic = bytes(self._mmap[:4])
        if magic != GGUF_MAGIC:
            cur.fail(f"not a GGUF file: magic is {magic!r}, expected b'GGUF'")
        cur.pos = 4
        version = cur.u32("version")
        if version not in SUPPORTED_VERSIONS:
            if version and version & 0xFFFF == 0:
                cur.fail(f"version field {version:#x} looks big-endian; only little-endian GGUF "
                         f"is supported")
            cur.fail(f"unsupported GGUF version {version} (supported: 2, 3)")
        self.version = version
        n_tensors = cur.u64("tensor count")
        n_kv = cur.u64("metadata count")
        # Smallest possible entries: a kv is an empty key (8) + type (4) + 1-byte value; a tensor
        # info is an empty name (8) + n_dims (4) + one dim (8) + type (4) + offset (8).
        remaining = cur.size - cur.pos
        if n_kv * 13 > remaining:
            cur.fail(f"metadata count {n_kv} is impossible for a file of {cur.size} bytes")
        if n_tensors * 32 > remaining:
            cur.fail(f"tensor count {n_tensors} is impossible for a file of {cur.size} bytes")

        for i in range(n_kv):
            key = cur.string(f"metadata key #{i}", max_len=65535)
            if key in self.metadata:
                cur.fail(f"metadata key {key!r} appears twice")
            vtype = cur.u32(f"type of metadata {key!r}")
            self.metadata[key], self.value_types[key] = self._read_value(cur, key, vtype)

        self.alignment = DEFAULT_ALIGNMENT
        if "general.alignment" in self.metadata:
            a = self.metadata["general.alignment"]
            if self.value_types["general.alignment"] != ValueType.UINT32:
                cur.fail(f"metadata 'general.alignment' must be uint32, found "
                         f"{_VALUE_TYPE_NAMES.get(self.value_types['general.alignment'])}")
            if a == 0 or a & (a - 1):
                cur.fail(f"metadata 'general.alignment' = {a} is not a power of two")
            if a % 8:
                # GGUF requires it; the engine reads F32 and F16 values in place
                cur.fail(f"metadata 'general.alignment' = {a} is not a multiple of 8")
            self.alignment = a

        infos = []
        for i in range(n_tensors):
            name = cur.string(f"name of tensor #{i}")
            if not name or len(name.encode()) > MAX_NAME_BYTES:
                cur.fail(f"tensor #{i} {name!r}: name must have 1 to {MAX_NAME_BYTES} bytes")
            if name in self.tensors or any(name == n for n, *_ in infos):
                cur.fail(f"tensor {name!r} appears twice")
            n_dims = cur.u32(f"tensor {name!r} dimension count")
            if not 1 <= n_dims <= MAX_DIMS:
                cur.fail(f"tensor {name!r}: {n_dims} dimensions (must be 1 to {MAX_DIMS})")
            shape = tuple(cur.u64(f"tensor {name!r} dimension {d}") for d in range(n_dims))
            type_id = cur.u32(f"tensor {name!r} type")
            offset = cur.u64(f"tensor {name!r} offset")
            infos.append((name, shape, type_id, offset))
        data_start = _align(cur.pos, self.alignment)
        self.data_start = data_start

        spans = []
        for name, shape, type_id, offset in infos:
            what = f"tensor {name!r}"
            if any(d <= 0 for d in shape):
                cur.fail(f"{what}: dimension {list(shape)} must all be positive")
            n_elem = 1
            for d in shape:
                n_elem *= d
            if n_elem > MAX_TENSOR_ELEMENTS:
                cur.fail(f"{what}: dimensions {list(shape)} give {n_elem} elements, absurd")
            t = quant.TYPES_BY_ID.get(type_id)
            if t is None:
                cur.fail(f"{what}: unknown ggml type id {type_id}")
            if shape[0] % t.block_elems:
                cur.fail(f"{what}: row length {shape[0]} is not a multiple of the "
                         f"{t.name.upper()} block size {t.block_elems}")
            if offset % self.alignment:
                cur.fail(f"{what}: data offset {offset} is not a multiple of the alignment "
                         f"{self.alignment}")
            nbytes = quant.tensor_bytes(type_id, shape)
            start = data_start + offset
            if start + nbytes > cur.size:
                cur.fail(f"{what}: data [{start}, {start + nbytes}) extends past the end of the "
                         f"file ({cur.size} bytes); the file is truncated or corrupt")
            spans.append((start, start + nbytes, name))
            self.tensors[name] = TensorInfo(name, type_id, shape, start, nbytes)
        spans.sort()
        for (s0, e0, n0), (s1, e1, n1) in zip(spans, spans[1:]):
            if s1 < e0:
                cur.fail(f"tensors {n0!r} and {n1!r} overlap in the data section")
        for t in self.tensors.values():
            t.data = np.frombuffer(self._mmap, dtype=np.uint8, count=t.nbytes, offset=t.offset)

    def _read_value(self, cur, key, vtype):
        what = f"metadata {key!r}"
        if vtype in _SCALAR:
            code, dt = _SCALAR[vtype]
            n = np.dtype(dt).itemsize
            return cur.scalar(code, n, what), vtype
        if vtype == ValueType.STRING:
            return cur.string(what), vtype
        if vtype == ValueType.ARRAY:
            etype = cur.u32(f"{what} element type")
            count = cur.u64(f"{what} element count")
            if etype in _SCALAR:
                dt = np.dtype(_SCALAR[etype][1]).newbyteorder("<")
                cur.need(count * dt.itemsize, f"{what} ({count} elements)")
                arr = np.frombuffer(cur.buf, dtype=dt, count=count, offset=cur.pos).copy()
                cur.pos += count * dt.itemsize
                return arr, (vtype, etype)
            if etype == ValueType.STRING:
                cur.need(count * 8, f"{what} ({count} strings)")
                return self._read_strings(cur, what, count), (vtype, etype)
            if etype == ValueType.ARRAY:
                cur.fail(f"{what}: nested arrays are not supported")
            cur.fail(f"{what}: unknown array element type {etype}")
        cur.fail(f"{what}: unknown value type {vtype}")

    @staticmethod
    def _read_strings(cur, what, count):
        # Tokenizer vocabularies hold ~50k strings; a tight loop over the mapping is fast enough.
        buf, size, pos = cur.buf, cur.size, cur.pos
        unpack = struct.Struct("<Q").unpack_from
        out = []
        for i in range(count):
            if pos + 8 > size:
                cur.pos = pos
                cur.need(8, f"{what} length of element {i}")
            (n,) = unpack(buf, pos)
            pos += 8
            if n > size - pos:
                cur.pos = pos
                cur.fail(f"truncated: {what} element {i}: string of {n} bytes at offset {pos}, "
                         f"file has {size} bytes")
            try:
                out.append(buf[pos:pos + n].decode("utf-8"))
            except UnicodeDecodeError as e:
                cur.fail(f"{what} element {i}: not valid UTF-8 ({e.reason})")
            pos += n
        cur.pos = pos
        return out

    def __repr__(self):
        return (f"GGUFFile({str(self.path)!r}, v{self.version}, arch={self.arch!r}, "
                f"{len(self.metadata)} keys, {len(self.tensors)} tensors)")


def _align(n, a):
    return (n + a - 1) // a * a


# --- architecture and model description ----------------------------------------------------------
SUPPORTED_ARCHS = ("llama", "qwen2", "qwen3", "gemma3")
_WEIGHT_TYPE_IDS = {quant.TYPES[n].id for n in quant.WEIGHT_TYPES}
# Gemma 3: what llama.cpp's loader fixes for the architecture and the published configs state
# (rope_local_base_freq 10000, every sixth layer global: sliding_window_pattern 6); a file
# may say otherwise with the keys below.
GEMMA3_ROPE_BASE_SWA = 10000.0
GEMMA3_SLIDING_WINDOW_PATTERN = 6


@dataclass(frozen=True)
class ModelShape:
    """The hyperparameters of a llama-family model (llama, qwen2, qwen3, gemma3);
    `tensor_shapes()` derives every tensor."""
    arch: str
    n_layer: int
    dim: int
    ffn: int
    n_head: int
    n_kv_head: int
    head_dim: int
    vocab: int
    ctx: int
    tied: bool
    rope_base: float = 10000.0
    rms_eps: float = 1e-5
    rope_freqs: bool = False    # a rope_freqs.weight tensor scales the rotary frequencies
    # Sliding-window attention (gemma3): a token attends to the last `sliding_window`
    # positions (0: no window) on the sliding layers, with RoPE base `rope_base_swa` there;
    # with sliding_window_pattern n >= 1 every n-th layer is global (gemma3: 6), with 0 every
    # layer slides (llama.cpp's convention).
    sliding_window: int = 0
    sliding_window_pattern: int = 0
    rope_base_swa: float = 0.0
    logit_softcap: float = 0.0  # logits = c * tanh(logits / c); 0: none

    @property
    def qkv_bias(self) -> bool:
        return self.arch == "qwen2"

    @property
    def rope_neox(self) -> bool:
        """qwen2, qwen3 and gemma3 rotate (i, i+d/2); llama files rotate adjacent pairs
        (2i, 2i+1)."""
        return self.arch != "llama"

    @property
    def qk_norm(self) -> bool:
        """Each head of q and k is RMS-normalized before RoPE (qwen3, gemma3)."""
        return self.arch in ("qwen3", "gemma3")

    @property
    def post_norms(self) -> bool:
        """The attention and FFN outputs are RMS-normalized before each residual add (gemma3)."""
        return self.arch == "gemma3"

    @property
    def ffn_act(self) -> str:
        """"gelu" (gelu_tanh(gate) * up, gemma3) or "silu" (SwiGLU)."""
        return "gelu" if self.arch == "gemma3" else "silu"

    @property
    def embed_scale(self) -> float:
        """Gemma multiplies the token embeddings by sqrt(dim); the others by 1."""
        return float(np.sqrt(np.float32(self.dim))) if self.arch == "gemma3" else 1.0

    @property
    def attn_scale(self) -> float:
        """The factor on q.k: 1/sqrt(query_pre_attn_scalar) for gemma3, which the published
        configs set to the head size except for the 62-layer 27B (dim / n_head), as llama.cpp
        does; 1/sqrt(head_dim) otherwise."""
        if self.arch == "gemma3" and self.n_layer == 62:
            return 1.0 / float(np.sqrt(self.dim // self.n_head))
        return 1.0 / float(np.sqrt(self.head_dim))

    def layer_sliding(self, layer) -> bool:
        """Whether layer `layer` attends to a sliding window (rather than every position)."""
        n = self.sliding_window_pattern
        return self.sliding_window > 0 and (n == 0 or layer % n < n - 1)

    def layer_window(self, layer) -> int:
        """Positions layer `layer` attends to at most (0: all)."""
        return self.sliding_window if self.layer_sliding(layer) else 0

    def layer_rope_base(self, layer) -> float:
        return self.rope_base_swa if self.layer_sliding(layer) and self.rope_base_swa else self.rope_base

    @property
    def q_dim(self):
        return self.n_head * self.head_dim

    @property
    def kv_dim(self):
        return self.n_kv_head * self.head_dim

    def tensor_shapes(self) -> dict:
        """name -> GGUF shape (ne0 first) of every tensor the model has, in file order."""
        d, q, kv, f = self.dim, self.q_dim, self.kv_dim, self.ffn
        shapes = {"token_embd.weight": (d, self.vocab)}
        if self.rope_freqs:
            shapes["rope_freqs.weight"] = (self.head_dim // 2,)
        for i in range(self.n_layer):
            b = f"blk.{i}."
            shapes[b + "attn_norm.weight"] = (d,)
            shapes[b + "attn_q.weight"] = (d, q)
            shapes[b + "attn_k.weight"] = (d, kv)
            shapes[b + "attn_v.weight"] = (d, kv)
            if self.qkv_bias:
                shapes[b + "attn_q.bias"] = (q,)
                shapes[b + "attn_k.bias"] = (kv,)
                shapes[b + "attn_v.bias"] = (kv,)
            if self.qk_norm:
                shapes[b + "attn_q_norm.weight"] = (self.head_dim,)
                shapes[b + "attn_k_norm.weight"] = (self.head_dim,)
            shapes[b + "attn_output.weight"] = (q, d)
            if self.post_norms:
                shapes[b + "post_attention_norm.weight"] = (d,)
            shapes[b + "ffn_norm.weight"] = (d,)
            shapes[b + "ffn_gate.weight"] = (d, f)
            shapes[b + "ffn_up.weight"] = (d, f)
            shapes[b + "ffn_down.weight"] = (f, d)
            if self.post_norms:
                shapes[b + "post_ffw_norm.weight"] = (d,)
        shapes["output_norm.weight"] = (d,)
        if not self.tied:
            shapes["output.weight"] = (d, self.vocab)
        return shapes

    def n_params(self) -> int:
        return sum(int(np.prod(s)) for s in self.tensor_shapes().values())

    def tensor_types(self, type_, head_type=None, embd_type=None) -> dict:
        """name -> (GGUF shape, ggml type id) when 2-D weights are `type_`, the LM head
        (output.weight) is `head_type` and token_embd is `embd_type` (both default to
        `type_`); when tied, token_embd is the LM head: head_type or else embd_type.
        1-D tensors are F32."""
        main = quant.type_info(type_).id
        head = quant.type_info(head_type).id if head_type else main
        embd = quant.type_info(embd_type).id if embd_type else main
        if self.tied:
            embd = head if head_type else embd
        out = {}
        for name, shp in self.tensor_shapes().items():
            if len(shp) == 1:
                out[name] = (shp, 0)
            elif name == "token_embd.weight":
                out[name] = (shp, embd)
            elif name == "output.weight":
                out[name] = (shp, head)
            else:
                out[name] = (shp, main)
        return out

    def weight_bytes(self, type_, head_type=None, embd_type=None) -> int:
        """Bytes of all tensor data for these types (about the file size)."""
        return sum(quant.tensor_bytes(t, shp)
                   for shp, t in self.tensor_types(type_, head_type, embd_type).values())

    def weight_bytes_per_token(self, type_, head_type=None, embd_type=None) -> int:
        """Bytes of weights streamed per decoded token for these types: every layer, the final
        norm, the LM head, and one embedding row."""
        return _bytes_per_token(self.tensor_types(type_, head_type, embd_type), self.tied)


def _bytes_per_token(table, tied) -> int:
    """table: name -> (shape, type id)."""
    total = 0
    for name, (shape, type_id) in table.items():
        nbytes = quant.tensor_bytes(type_id, shape)
        if name == "token_embd.weight":
            total += nbytes // shape[1]      # one row looked up
            if tied:
                total += nbytes              # and the whole matrix as the LM head
        else:
            total += nbytes
    return total


@dataclass
class ModelDescription:
    """A validated model: where it is, its shape, its tensors, and what its tokenizer is."""
    path: Path
    name: str
    shape: ModelShape
    tensors: dict            # name -> TensorInfo (data views stay valid while the file is open)
    tokenizer_model: str     # "gpt2" or "llama" (SPM), "" when absent
    file_type: str           # e.g. "Q4_1 (token_embd Q8_0)"

    def weight_bytes_per_token(self) -> int:
        return _bytes_per_token({n: (t.shape, t.type) for n, t in self.tensors.items()
                                 if n in self.shape.tensor_shapes()}, self.shape.tied)

    def weight_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors.values())


# File types that mix tensor types by llama.cpp's recipe: the file is known by the mix's name.
MIXED_FILE_TYPES = {v: k for k, v in FILE_TYPES.items() if k[-2:] in ("_s", "_m", "_l")}


def file_type_label(main_type, special_types, mix_name=None, weight_types=()):
    """"Q4_1 (token_embd Q8_0)": the weights' type, and embedding / LM head types that differ;
    a mix by its name and the types in it, most weights first: "Q4_K_M (Q5_0, Q4_K, Q6_K,
    Q8_0; token_embd Q8_0)"."""
    odd = [f"{n.split('.')[0]} {t}" for n, t in special_types.items() if t != main_type]
    if mix_name and len(weight_types) > 1:
        return f"{mix_name.upper()} ({', '.join(weight_types)}" + (f"; {', '.join(odd)})" if odd else ")")
    return f"{main_type} ({', '.join(odd)})" if odd else main_type


def _meta_int(gf, key, default=_REQUIRED):
    v = gf.meta.integer(key, default)
    if v <= 0:
        raise ModelFileError(f"{gf.path}: metadata {key!r} = {v} must be positive")
    return v


def _meta_float(gf, key, default):
    v = gf.meta.number(key, default)
    if v is None:
        return None
    if gf.value_types.get(key) == ValueType.FLOAT32:
        v = float(str(np.float32(v)))    # the shortest decimal of the float32 (1e-05, not 9.99e-06)
    if not np.isfinite(v) or v <= 0:
        raise ModelFileError(f"{gf.path}: metadata {key!r} = {v} must be a positive number")
    return v


def shape_from_metadata(gf: GGUFFile) -> ModelShape:
    """The hyperparameters a file declares, checked for consistency (not yet against tensors)."""
    arch = gf.meta.string("general.architecture")
    if arch not in SUPPORTED_ARCHS:
        raise UnsupportedError(f"{gf.path}: unsupported architecture {arch!r} "
                               f"(supported: {', '.join(SUPPORTED_ARCHS)})")
    k = arch + "."
    dim = _meta_int(gf, k + "embedding_length")
    n_head = _meta_int(gf, k + "attention.head_count")
    n_kv_head = _meta_int(gf, k + "attention.head_count_kv", n_head)
    if n_head % n_kv_head:
        raise ModelFileError(f"{gf.path}: head_count {n_head} is not a multiple of head_count_kv "
                             f"{n_kv_head}")
    if k + "attention.key_length" in gf.metadata:
        head_dim = _meta_int(gf, k + "attention.key_length")
    else:
        if dim % n_head:
            raise ModelFileError(f"{gf.path}: embedding_length {dim} is not a multiple of "
                                 f"head_count {n_head}")
        head_dim = dim // n_head
    if head_dim % 2:
        raise ModelFileError(f"{gf.path}: head dimension {head_dim} is odd; RoPE needs pairs")
    v_len = gf.meta.integer(k + "attention.value_length", head_dim)
    if v_len != head_dim:
        raise UnsupportedError(f"{gf.path}: attention.value_length {v_len} differs from "
                               f"key_length {head_dim}")
    rope_dim = _meta_int(gf, k + "rope.dimension_count", head_dim)
    if rope_dim != head_dim:
        raise UnsupportedError(f"{gf.path}: rope.dimension_count {rope_dim} != head dimension "
                               f"{head_dim} (partial rotary embedding is not supported)")
    if "token_embd.weight" in gf.tensors:
        vocab_from_tensor = gf.tensors["token_embd.weight"].shape[-1]
    else:
        raise ModelFileError(f"{gf.path}: missing tensor 'token_embd.weight'")
    vocab = _meta_int(gf, k + "vocab_size", vocab_from_tensor)
    n_layer = _meta_int(gf, k + "block_count")
    scaling = gf.meta.string(k + "rope.scaling.type", "none")
    factor = gf.meta.number(k + "rope.scaling.factor", 1.0)
    if scaling not in ("none", "") and factor != 1.0:
        raise UnsupportedError(f"{gf.path}: RoPE scaling {scaling!r} (factor {factor}) is not "
                               f"supported")
    attn_cap = gf.meta.number(k + "attn_logit_softcapping", 0.0)
    if attn_cap:
        raise UnsupportedError(f"{gf.path}: attention logit soft-capping ({attn_cap}) is not "
                               f"supported")
    window, pattern, base_swa = _sliding_window(gf, arch, n_layer)
    return ModelShape(
        arch=arch,
        n_layer=n_layer,
        dim=dim,
        ffn=_meta_int(gf, k + "feed_forward_length"),
        n_head=n_head, n_kv_head=n_kv_head, head_dim=head_dim,
        vocab=vocab,
        ctx=_meta_int(gf, k + "context_length"),
        tied="output.weight" not in gf.tensors,
        rope_base=_meta_float(gf, k + "rope.freq_base", 10000.0),
        rms_eps=_meta_float(gf, k + "attention.layer_norm_rms_epsilon", 1e-5),
        rope_freqs="rope_freqs.weight" in gf.tensors,
        sliding_window=window, sliding_window_pattern=pattern, rope_base_swa=base_swa,
        logit_softcap=_meta_float(gf, k + "final_logit_softcapping", None) or 0.0,
    )


def _sliding_window(gf, arch, n_layer):
    """(window, pattern, RoPE base of the sliding layers) a file declares; (0, 0, 0.0) without
    a window. Gemma 3 defaults to its published pattern and local base; the pattern key may be
    one period or llama.cpp's per-layer flags (true: sliding), which must repeat with a period."""
    k = arch + "."
    window = gf.meta.integer(k + "attention.sliding_window", 0)
    if window < 0:
        raise ModelFileError(f"{gf.path}: metadata {k + 'attention.sliding_window'!r} = {window} "
                             f"is negative")
    if window == 0:
        return 0, 0, 0.0
    if arch != "gemma3":
        raise UnsupportedError(f"{gf.path}: sliding-window attention is supported for gemma3 "
                               f"only, not {arch}")
    key = k + "attention.sliding_window_pattern"
    pattern = GEMMA3_SLIDING_WINDOW_PATTERN
    if key in gf.metadata:
        value = gf.metadata[key]
        if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
            pattern = int(value)
        else:
            if not (isinstance(value, np.ndarray) and value.dtype.kind in "biu"):
                raise ModelFileError(f"{gf.path}: metadata {key!r} is {_kind_of(value)}, "
                                     f"expected an integer or an array of bools")
            flags = [bool(f) for f in value]
            if len(flags) != n_layer:
                raise ModelFileError(f"{gf.path}: metadata {key!r} has {len(flags)} entries for "
                                     f"{n_layer} layers")
            periods = [n for n in range(0, n_layer + 1)
                       if all(f == (n == 0 or i % n < n - 1) for i, f in enumerate(flags))]
            if not periods:
                raise UnsupportedError(f"{gf.path}: metadata {key!r}: sliding layers that do not "
                                       f"repeat as (n-1) sliding then one global are not supported")
            pattern = periods[0]
        if pattern < 0:
            raise ModelFileError(f"{gf.path}: metadata {key!r} = {pattern} is negative")
    base_swa = _meta_float(gf, k + "rope.freq_base_swa", GEMMA3_ROPE_BASE_SWA)
    return window, pattern, base_swa


def describe_model(gf: GGUFFile) -> ModelDescription:
    """Check a GGUF file is a model of a supported architecture slmprof can run; return its
    description.
    Raises UnsupportedError (architecture, tensor types) or ModelFileError (shapes, keys)."""
    shape = shape_from_metadata(gf)
    # every layer has at least 9 tensors: catch an absurd block_count before listing them
    if shape.n_layer * 9 > len(gf.tensors):
        raise ModelFileError(f"{gf.path}: metadata {shape.arch + '.block_count'!r} = "
                             f"{shape.n_layer}, but the file has only {len(gf.tensors)} tensors")
    n_tokens = len(gf.meta.strings("tokenizer.ggml.tokens", ()))
    if n_tokens > shape.vocab:
        raise ModelFileError(f"{gf.path}: the tokenizer has {n_tokens} tokens but the embedding "
                             f"only {shape.vocab} rows")
    expected = shape.tensor_shapes()
    missing = [n for n in expected if n not in gf.tensors]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ModelFileError(f"{gf.path}: missing tensor{'s' if len(missing) > 1 else ''} "
                             f"{', '.join(map(repr, missing[:5]))}{more}")
    for name, want in expected.items():
        got = gf.tensors[name].shape
        if tuple(got) != tuple(want):
            raise ModelFileError(f"{gf.path}: tensor {name!r} has shape {list(got)}, expected "
                                 f"{list(want)} from the {shape.arch} hyperparameters")
    unsupported = [(n, t.type_name) for n, t in gf.tensors.items()
                   if n in expected and t.type not in _WEIGHT_TYPE_IDS]
    if unsupported:
        listing = ", ".join(f"{n} ({ty})" for n, ty in unsupported[:6])
        more = f" and {len(unsupported) - 6} more" if len(unsupported) > 6 else ""
        types = sorted({ty for _, ty in unsupported})
        raise UnsupportedError(
            f"{gf.path}: tensor type{'s' if len(types) > 1 else ''} {', '.join(types)} not "
            f"supported (supported: {', '.join(t.upper() for t in quant.WEIGHT_TYPES)}): {listing}{more}. "
            f"Convert the model with `python -m slmprof requantize` from a supported source, or "
            f"use a Q4_0/Q4_1/Q8_0/F16 GGUF.")
    for name, want in expected.items():
        if len(want) == 1 and gf.tensors[name].type != 0:
            raise UnsupportedError(f"{gf.path}: 1-D tensor {name!r} is "
                                   f"{gf.tensors[name].type_name}; slmprof needs F32 norms, biases "
                                   f"and rope_freqs")
    if "rope_freqs.weight" in expected:
        # each factor divides a rotary frequency: the engine refuses anything but positive ones
        factors = gf.tensors["rope_freqs.weight"].data.view(np.float32)
        bad = np.flatnonzero(~(factors > 0))
        if bad.size:
            raise ModelFileError(f"{gf.path}: tensor 'rope_freqs.weight' holds "
                                 f"{float(factors[bad[0]])} at {int(bad[0])}; every rotary "
                                 f"frequency factor must be a positive number")
    types = {}
    for n in expected:
        if len(expected[n]) == 2:
            types[gf.tensors[n].type_name] = types.get(gf.tensors[n].type_name, 0) + 1
    main_type = max(types, key=types.get)
    block_bytes = {}     # the blocks' types (not the embedding's or the LM head's), most bytes first
    for n in expected:
        if len(expected[n]) == 2 and n not in ("token_embd.weight", "output.weight"):
            block_bytes[gf.tensors[n].type_name] = block_bytes.get(gf.tensors[n].type_name, 0) + gf.tensors[n].nbytes
    by_share = sorted(block_bytes, key=lambda t: -block_bytes[t])
    mix = MIXED_FILE_TYPES.get(gf.meta.integer("general.file_type", -1))
    file_type = file_type_label(main_type, {n: gf.tensors[n].type_name for n in
                                            ("token_embd.weight", "output.weight")
                                            if n in gf.tensors}, mix, by_share)
    name = gf.meta.string("general.name", "") or gf.path.stem
    return ModelDescription(path=gf.path, name=name, shape=shape,
                            tensors={n: gf.tensors[n] for n in expected},
                            tokenizer_model=gf.meta.string("tokenizer.ggml.model", ""),
                            file_type=file_type)


# --- writing -------------------------------------------------------------------------------------
def _infer_value_type(key, value):
    if isinstance(value, (bool, np.bool_)):
        return ValueType.BOOL
    if isinstance(value, (int, np.integer)):
        v = int(value)
        if 0 <= v < 1 << 32:
            return ValueType.UINT32
        if -(1 << 31) <= v < 0:
            return ValueType.INT32
        return ValueType.INT64 if v < 0 else ValueType.UINT64
    if isinstance(value, (float, np.floating)):
        return ValueType.FLOAT32
    if isinstance(value, str):
        return ValueType.STRING
    if isinstance(value, (list, tuple, np.ndarray)):
        return ValueType.ARRAY
    raise TypeError(f"metadata {key!r}: cannot store a {type(value).__name__} in GGUF")


_DTYPE_TO_VT = {np.dtype(dt): vt for vt, (_, dt) in _SCALAR.items()}


def _value_type_id(vtype):
    if vtype is None or isinstance(vtype, int):
        return vtype
    names = {n: v for v, n in _VALUE_TYPE_NAMES.items()}
    if vtype.lower() not in names:
        raise ValueError(f"unknown GGUF value type {vtype!r}")
    return names[vtype.lower()]


class GGUFWriter:
    """Write a GGUF v3 (or v2) file: `add` metadata, `add_tensor` tensors, then `write()`.

    Tensor data can be bytes / an ndarray, or a callable returning an iterable of chunks (bytes or
    ndarrays), called at write time so large models are produced piece by piece."""

    def __init__(self, path, arch, version=3, alignment=DEFAULT_ALIGNMENT):
        self.path = Path(path)
        self.version = version
        self.alignment = alignment
        self._kv = {}           # key -> (value type, element type or None, value)
        self._tensors = []      # (name, type id, shape, nbytes, data)
        self.add("general.architecture", arch)
        if alignment != DEFAULT_ALIGNMENT:
            self.add("general.alignment", alignment, "uint32")

    def add(self, key, value, vtype=None, element_type=None):
        """Add metadata. Types are inferred (int -> uint32 when it fits, float -> float32,
        lists of str/int/float -> string/int32/float32 arrays) unless `vtype` / `element_type`
        ("uint32", "int32", "float32", "bool", "string", ...) are given."""
        vtype = _value_type_id(vtype)
        element_type = _value_type_id(element_type)
        if vtype is None:
            vtype = _infer_value_type(key, value)
        if vtype == ValueType.ARRAY and element_type is None:
            if isinstance(value, np.ndarray):
                element_type = _DTYPE_TO_VT[value.dtype.newbyteorder("=")]
            elif len(value) and isinstance(value[0], str):
                element_type = ValueType.STRING
            elif len(value) and isinstance(value[0], (float, np.floating)):
                element_type = ValueType.FLOAT32
            elif len(value) and isinstance(value[0], (bool, np.bool_)):
                element_type = ValueType.BOOL
            else:
                element_type = ValueType.INT32
        self._kv[key] = (vtype, element_type, value)

    def add_hyperparameters(self, shape):
        """The architecture keys the reader needs, from a ModelShape (or anything with the same
        fields): one place for the names, so writers and `describe_model` cannot drift apart."""
        k = shape.arch + "."
        self.add(k + "context_length", shape.ctx)
        self.add(k + "embedding_length", shape.dim)
        self.add(k + "block_count", shape.n_layer)
        self.add(k + "feed_forward_length", shape.ffn)
        self.add(k + "attention.head_count", shape.n_head)
        self.add(k + "attention.head_count_kv", shape.n_kv_head)
        if shape.head_dim * shape.n_head != shape.dim:
            self.add(k + "attention.key_length", shape.head_dim)
            self.add(k + "attention.value_length", shape.head_dim)
        self.add(k + "rope.dimension_count", shape.head_dim)
        self.add(k + "rope.freq_base", float(shape.rope_base))
        self.add(k + "attention.layer_norm_rms_epsilon", float(shape.rms_eps))
        self.add(k + "vocab_size", shape.vocab)
        if shape.sliding_window:
            # per layer, true where it slides (the form llama.cpp reads for the archs that
            # take the key; its gemma3 loader fixes the pattern at 6 and the base at 10000)
            self.add(k + "attention.sliding_window", shape.sliding_window)
            self.add(k + "attention.sliding_window_pattern",
                     [shape.layer_sliding(i) for i in range(shape.n_layer)], "array", "bool")
            self.add(k + "rope.freq_base_swa", float(shape.rope_base_swa or shape.rope_base))
        if shape.logit_softcap:
            self.add(k + "final_logit_softcapping", float(shape.logit_softcap))

    def add_tensor(self, name, data, type_, shape):
        """`shape` in GGUF order (ne0 = row length first); `data` holds exactly the tensor bytes
        (float32 array for F32, float16 for F16, quantized blocks as uint8) or is a callable."""
        ttype = quant.type_info(type_)
        type_id = ttype.id
        shape = tuple(int(d) for d in shape)
        if any(n == name for n, *_ in self._tensors):
            raise ValueError(f"tensor {name!r} added twice")
        if shape[0] % ttype.block_elems:
            raise ValueError(f"tensor {name!r}: row length {shape[0]} is not a multiple of the "
                             f"{ttype.name.upper()} block size")
        nbytes = quant.tensor_bytes(type_id, shape)
        if not callable(data):
            size = data.nbytes if isinstance(data, np.ndarray) else len(data)
            if size != nbytes:
                raise ValueError(f"tensor {name!r}: {size} bytes given, {ttype.name.upper()} "
                                 f"shape {list(shape)} needs {nbytes}")
        self._tensors.append((name, type_id, shape, nbytes, data))

    def data_bytes(self) -> int:
        """Bytes of tensor data that write() will produce (without padding)."""
        return sum(t[3] for t in self._tensors)

    def _header(self):
        out = bytearray()
        out += GGUF_MAGIC + struct.pack("<IQQ", self.version, len(self._tensors), len(self._kv))
        for key, (vtype, etype, value) in self._kv.items():
            out += _pack_string(key) + struct.pack("<I", vtype)
            out += _pack_value(key, vtype, etype, value)
        offset = 0
        offsets = []
        for name, type_id, shape, nbytes, _ in self._tensors:
            out += _pack_string(name) + struct.pack("<I", len(shape))
            out += struct.pack(f"<{len(shape)}Q", *shape)
            out += struct.pack("<IQ", type_id, offset)
            offsets.append(offset)
            offset = _align(offset + nbytes, self.alignment)
        out += b"\0" * (_align(len(out), self.alignment) - len(out))
        return bytes(out), offsets

    def write(self, progress=None, what=None):
        """Write everything to a temporary file next to `path`, then rename it into place.
        `progress(what, done_bytes, total_bytes)` is called as tensor data are written
        (`what` defaults to "writing NAME")."""
        what = what or f"writing {self.path.name}"
        header, _ = self._header()
        total = sum(t[3] for t in self._tensors)
        make_parent(self.path)
        with atomic_write(self.path, binary=True, sync=True) as f:
            f.write(header)
            done = 0
            for name, type_id, shape, nbytes, data in self._tensors:
                written = 0
                chunks = data() if callable(data) else (data,)
                for chunk in chunks:
                    if isinstance(chunk, np.ndarray):
                        chunk = np.ascontiguousarray(chunk).view(np.uint8).reshape(-1)
                    f.write(chunk)
                    written += len(chunk)
                if written != nbytes:
                    raise ValueError(f"tensor {name!r}: {written} bytes produced, "
                                     f"{nbytes} expected")
                pad = _align(nbytes, self.alignment) - nbytes
                f.write(b"\0" * pad)
                done += nbytes
                if progress:
                    progress(what, done, total)
        return self.path


def _pack_string(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _pack_value(key, vtype, etype, value):
    if vtype in _SCALAR:
        try:
            return struct.pack(_SCALAR[vtype][0], value)
        except struct.error as e:
            raise ValueError(f"metadata {key!r}: {value!r} does not fit "
                             f"{_VALUE_TYPE_NAMES[vtype]}: {e}") from None
    if vtype == ValueType.STRING:
        return _pack_string(value)
    if vtype == ValueType.ARRAY:
        head = struct.pack("<IQ", etype, len(value))
        if etype == ValueType.STRING:
            return head + b"".join(_pack_string(s) for s in value)
        if etype in _SCALAR:
            dt = np.dtype(_SCALAR[etype][1]).newbyteorder("<")
            return head + np.asarray(value).astype(dt, casting="unsafe").tobytes()
        raise ValueError(f"metadata {key!r}: unsupported array element type {etype}")
    raise ValueError(f"metadata {key!r}: unsupported value type {vtype}")


def open_model(path):
    """Open and describe a model file; returns (GGUFFile, ModelDescription). Closes on error."""
    gf = GGUFFile(path)
    try:
        return gf, describe_model(gf)
    except BaseException:
        gf.close()
        raise

