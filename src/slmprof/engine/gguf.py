"""GGUF model files: a validating reader over mmap, a writer, and the model description.

Reading:  `GGUFFile(path)` maps the file, parses the header, metadata and tensor table, and checks
every count, length, type id, dimension, offset and byte range before anything is used. Tensor
data are zero-copy numpy uint8 views into the mapping.
Describing: `describe_model(gguf_file)` checks the architecture (llama, qwen2), the hyperparameters
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
from slmprof.files import atomic_write

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

    def _get(self, key, default):
        if key in self.values:
            return self.values[key], True
        if default is _REQUIRED:
            raise ModelFileError(f"{self.source}: missing metadata {key!r}")
        return default, False

    def integer(self, key, default=_REQUIRED):
        """An integer of any width (not a bool)."""
        v, found = self._get(key, default)
        if not found:
            return v
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            self._fail(key, v, "an integer")
        return int(v)

    def number(self, key, default=_REQUIRED):
        """A float or an integer, as float."""
        v, found = self._get(key, default)
        if not found:
            return v
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer,
                                                                  np.floating)):
            self._fail(key, v, "a number")
        return float(v)

    def boolean(self, key, default=_REQUIRED):
        v, found = self._get(key, default)
        if not found:
            return v
        if not isinstance(v, (bool, np.bool_)):
            self._fail(key, v, "a bool")
        return bool(v)

    def string(self, key, default=_REQUIRED):
        v, found = self._get(key, default)
        if not found:
            return v
        if not isinstance(v, str):
            self._fail(key, v, "a string")
        return v

    def strings(self, key, default=_REQUIRED):
        """An array of strings, as a list."""
        v, found = self._get(key, default)
        if not found:
            return v
        if not isinstance(v, (list, tuple)) or not all(isinstance(s, str) for s in v):
            self._fail(key, v, "an array of strings")
        return list(v)

    def integers(self, key, default=_REQUIRED):
        """An array of integers, as an int64 numpy array."""
        v, found = self._get(key, default)
        if not found:
            return v
        arr = self._numeric_array(key, v, "an array of integers")
        if arr.dtype.kind not in "iu":
            self._fail(key, v, "an array of integers")
        if arr.dtype == np.uint64 and arr.size and arr.max() > np.iinfo(np.int64).max:
            raise ModelFileError(f"{self.source}: metadata {key!r} holds an integer too large "
                                 f"for int64")
        return arr.astype(np.int64)

    def numbers(self, key, default=_REQUIRED):
        """An array of floats or integers, as a float64 numpy array."""
        v, found = self._get(key, default)
        if not found:
            return v
        arr = self._numeric_array(key, v, "an array of numbers")
        if arr.dtype.kind not in "iuf":
            self._fail(key, v, "an array of numbers")
        return arr.astype(np.float64)

    def _numeric_array(self, key, v, expected):
        if isinstance(v, np.ndarray):
            return v
        if isinstance(v, (list, tuple)) and not any(isinstance(x, (str, bool, np.bool_))
                                                    for x in v):
            try:
                return np.asarray(v)
            except (TypeError, ValueError, OverflowError):
                pass
        self._fail(key, v, expected)


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
SUPPORTED_ARCHS = ("llama", "qwen2")
_WEIGHT_TYPE_IDS = {quant.TYPES[n].id for n in quant.WEIGHT_TYPES}


@dataclass(frozen=True)
class ModelShape:
    """The hyperparameters of a llama-family model; `tensor_shapes()` derives every tensor."""
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

    @property
    def qkv_bias(self) -> bool:
        return self.arch == "qwen2"

    @property
    def rope_neox(self) -> bool:
        """qwen2 rotates (i, i+d/2); llama files rotate adjacent pairs (2i, 2i+1)."""
        return self.arch == "qwen2"

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
            shapes[b + "attn_output.weight"] = (q, d)
            shapes[b + "ffn_norm.weight"] = (d,)
            shapes[b + "ffn_gate.weight"] = (d, f)
            shapes[b + "ffn_up.weight"] = (d, f)
            shapes[b + "ffn_down.weight"] = (f, d)
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


def file_type_label(main_type, special_types):
    """"Q4_1 (token_embd Q8_0)": the weights' type, and embedding / LM head types that differ."""
    odd = [f"{n.split('.')[0]} {t}" for n, t in special_types.items() if t != main_type]
    return f"{main_type} ({', '.join(odd)})" if odd else main_type


def _meta_int(gf, key, default=_REQUIRED):
    v = gf.meta.integer(key, default)
    if v <= 0:
        raise ModelFileError(f"{gf.path}: metadata {key!r} = {v} must be positive")
    return v


def _meta_float(gf, key, default):
    v = gf.meta.number(key, default)
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
    return ModelShape(
        arch=arch,
        n_layer=_meta_int(gf, k + "block_count"),
        dim=dim,
        ffn=_meta_int(gf, k + "feed_forward_length"),
        n_head=n_head, n_kv_head=n_kv_head, head_dim=head_dim,
        vocab=vocab,
        ctx=_meta_int(gf, k + "context_length"),
        tied="output.weight" not in gf.tensors,
        rope_base=_meta_float(gf, k + "rope.freq_base", 10000.0),
        rms_eps=_meta_float(gf, k + "attention.layer_norm_rms_epsilon", 1e-5),
        rope_freqs="rope_freqs.weight" in gf.tensors,
    )


def describe_model(gf: GGUFFile) -> ModelDescription:
    """Check a GGUF file is a llama/qwen2 model slmprof can run; return its description.
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
    file_type = file_type_label(main_type, {n: gf.tensors[n].type_name for n in
                                            ("token_embd.weight", "output.weight")
                                            if n in gf.tensors})
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
        self.path.parent.mkdir(parents=True, exist_ok=True)
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

