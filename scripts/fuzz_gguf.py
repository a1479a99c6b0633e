"""Seeded mutation fuzz of the model loader: malformed GGUF files must give a clear error.

Tiny models of each kind (llama / qwen2, byte-level BPE / SPM vocabulary, quantized / float
weights) are written to a temporary directory, then each case mutates one of them, either at the
byte level (bit flips, interesting integers over length and count fields, insertions, deletions,
truncation) or through its structure (a metadata value of another type, a token string such as
"<0xBt>", token types, special token ids, a vocabulary without the pieces for the text, tensor
dimensions, types and offsets, ...), writes the file and loads it as a command would:
resolve, open and describe, build the tokenizer and the engine, encode and decode text, run a
prompt and decode a token. A case either works or raises one of slmprof's own errors
(SlmprofError: one line on the command line). Anything else is a finding:

    traceback  any other exception (the command line would print a Python traceback)
    signal     the process died (a crash in C)
    sanitizer  an AddressSanitizer or UndefinedBehaviorSanitizer report (a build with
               SLMPROF_SANITIZE, see .ci/run)
    hang       no result within --timeout seconds

Cases run in a worker process that is restarted after a crash; case N of seed S is always the
same file, so a finding is reproduced with --case N (in this process, with the full traceback)
and kept with --keep DIR.

    python scripts/fuzz_gguf.py --seed 1 --cases 5000
    python scripts/fuzz_gguf.py --seed 1 --case 1234 --keep /tmp/found
Exit status: 0 when there is no finding, 1 otherwise.
"""
import argparse
import os
import select
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np

from slmprof.engine.gguf import GGUFFile, ModelShape, ValueType
from slmprof.engine.registry import write_synthetic
from slmprof.errors import SlmprofError

# The models mutated: small enough that a case takes milliseconds, varied enough to reach every
# reader (both vocabularies, biases, an untied head, float and quantized weights, GGUF v2).
# name -> (arch, weight type, tokenizer (model, pre), tied, GGUF version, rope_freqs)
BASES = {
    "llama-bpe-q8_0": ("llama", "q8_0", ("gpt2", "smollm"), True, 3, False),
    "llama-spm-q4_0": ("llama", "q4_0", ("llama", None), False, 3, False),
    "qwen2-bpe-q4_1": ("qwen2", "q4_1", ("gpt2", "qwen2"), True, 3, False),
    "llama-spm-f16-v2": ("llama", "f16", ("llama", None), True, 2, True),
    "qwen2-spm-q5_1": ("qwen2", "q5_1", ("llama", None), False, 3, False),
}


def write_base(path, arch, type_, tokenizer, tied, version, rope_freqs):
    shape = ModelShape(arch=arch, n_layer=1, dim=64, ffn=96, n_head=4, n_kv_head=2, head_dim=16,
                       vocab=320, ctx=64, tied=tied, rope_base=10000.0, rope_freqs=rope_freqs)
    return write_synthetic(shape, type_, path, seed=0, name=f"fuzz base {arch} {type_}",
                           tokenizer=tokenizer, head_type=type_, embd_type=type_, version=version)

TEXT = "Hello world, 日本 ñ € <|im_start|>x\n\t 123"
LOAD_CTX = 48

_SCALAR_CODES = {ValueType.UINT8: "<B", ValueType.INT8: "<b", ValueType.UINT16: "<H",
                 ValueType.INT16: "<h", ValueType.UINT32: "<I", ValueType.INT32: "<i",
                 ValueType.FLOAT32: "<f", ValueType.BOOL: "<B", ValueType.UINT64: "<Q",
                 ValueType.INT64: "<q", ValueType.FLOAT64: "<d"}
_INT_TYPES = (ValueType.UINT8, ValueType.INT8, ValueType.UINT16, ValueType.INT16,
              ValueType.UINT32, ValueType.INT32, ValueType.UINT64, ValueType.INT64)
_INTERESTING_INTS = (0, 1, 2, 7, 31, 32, 33, 255, 256, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1,
                     2**32, 2**63 - 1, 2**63, 2**64 - 1)


# ---------------------------------------------------------------- a raw GGUF document

@dataclass
class KV:
    key: str
    vtype: int
    value: object            # python scalar / str, or a list / ndarray for arrays
    etype: int = None        # element type of an array


@dataclass
class Tensor:
    name: str
    shape: list
    type: int
    data: bytes
    offset: int = None       # None: placed after the previous tensor


@dataclass
class Doc:
    version: int
    kvs: list
    tensors: list
    alignment: int = 32
    counts: tuple = None     # (n_tensors, n_kv) written instead of the real ones

    def copy(self):
        return replace(self, kvs=list(self.kvs), tensors=list(self.tensors))


def read_doc(path) -> Doc:
    """A valid GGUF file as a Doc (through slmprof's reader: the bases are well formed)."""
    with GGUFFile(path) as gf:
        kvs = []
        for key, value in gf.metadata.items():
            vt = gf.value_types[key]
            if isinstance(vt, tuple):
                kvs.append(KV(key, vt[0], value if isinstance(value, list) else value.copy(), vt[1]))
            else:
                kvs.append(KV(key, vt, value))
        tensors = [Tensor(t.name, list(t.shape), t.type, bytes(t.data)) for t in gf.tensors.values()]
        return Doc(gf.version, kvs, tensors, gf.alignment)


def _pack_str(s):
    b = s if isinstance(s, bytes) else s.encode("utf-8", "surrogatepass")
    return struct.pack("<Q", len(b)) + b


def _pack_scalar(vtype, v):
    code = _SCALAR_CODES.get(vtype)
    if code is None:
        return b""            # an unknown type id: no payload, the reader must stop there
    if code in ("<f", "<d"):
        return struct.pack(code, float(v))
    bits = struct.calcsize(code) * 8
    v = int(v) & ((1 << bits) - 1)
    if code[1].islower() and v >= 1 << (bits - 1):
        v -= 1 << bits
    return struct.pack(code, v)


def _pack_value(kv):
    if kv.vtype == ValueType.STRING:
        return _pack_str(kv.value)
    if kv.vtype == ValueType.ARRAY:
        items = list(kv.value)
        out = struct.pack("<IQ", kv.etype, len(items))
        if kv.etype == ValueType.STRING:
            return out + b"".join(_pack_str(s) for s in items)
        return out + b"".join(_pack_scalar(kv.etype, x) for x in items)
    return _pack_scalar(kv.vtype, kv.value)


def _align(n, a):
    return (n + a - 1) // a * a


def write_doc(doc: Doc) -> bytes:
    n_tensors, n_kv = doc.counts or (len(doc.tensors), len(doc.kvs))
    out = bytearray(b"GGUF" + struct.pack("<IQQ", doc.version, n_tensors, n_kv))
    for kv in doc.kvs:
        out += _pack_str(kv.key) + struct.pack("<I", kv.vtype) + _pack_value(kv)
    offset, data = 0, bytearray()
    for t in doc.tensors:
        at = offset if t.offset is None else t.offset
        out += _pack_str(t.name) + struct.pack("<I", len(t.shape))
        out += b"".join(struct.pack("<Q", int(d) & (2**64 - 1)) for d in t.shape)
        out += struct.pack("<IQ", t.type & 0xFFFFFFFF, at & (2**64 - 1))
        data += t.data + b"\0" * (_align(len(t.data), doc.alignment) - len(t.data))
        offset = _align(offset + len(t.data), doc.alignment)
    out += b"\0" * (_align(len(out), doc.alignment) - len(out))
    return bytes(out + data)


# ---------------------------------------------------------------- mutations

def _pick(rng, seq):
    return seq[int(rng.integers(len(seq)))]


def _other_value(rng, kv):
    """A value of another type than kv's, as (vtype, value, etype)."""
    n = len(kv.value) if kv.vtype == ValueType.ARRAY else 2
    choices = [
        (ValueType.UINT32, int(rng.integers(0, 1000)), None),
        (ValueType.INT32, -1, None),
        (ValueType.UINT64, 2**64 - 1, None),
        (ValueType.INT64, -(2**63), None),
        (ValueType.UINT8, 1, None),
        (ValueType.FLOAT32, 1.5, None),
        (ValueType.FLOAT64, float("nan"), None),
        (ValueType.BOOL, 1, None),
        (ValueType.STRING, _pick(rng, ["", "gpt2", "llama", "x" * 40, "3", "<0xBt>"]), None),
        (ValueType.ARRAY, [int(x) for x in rng.integers(0, 2**31, max(1, min(n, 400)))],
         ValueType.INT32),
        (ValueType.ARRAY, [], ValueType.UINT32),
        (ValueType.ARRAY, [0.5] * max(1, min(n, 400)), ValueType.FLOAT32),
        (ValueType.ARRAY, ["a", "b c", ""][: max(1, min(n, 3))], ValueType.STRING),
        (ValueType.ARRAY, [1, 0], ValueType.BOOL),
        (ValueType.ARRAY, [int(x) for x in rng.integers(0, 2**63, 3, dtype=np.uint64)],
         ValueType.UINT64),
    ]
    while True:
        vt, v, et = _pick(rng, choices)
        if (vt, et) != (kv.vtype, kv.etype):
            return vt, v, et


def _kv_index(doc, key):
    for i, kv in enumerate(doc.kvs):
        if kv.key == key:
            return i
    return None


def _array_index(doc, key, etypes):
    """Index of key when it is still an array of one of `etypes` (an earlier mutation of the
    same case may have changed it), else None."""
    i = _kv_index(doc, key)
    if i is None or doc.kvs[i].vtype != ValueType.ARRAY or doc.kvs[i].etype not in etypes \
            or len(doc.kvs[i].value) == 0:
        return None
    return i


_STR = (ValueType.STRING,)
_NUM = _INT_TYPES + (ValueType.FLOAT32, ValueType.FLOAT64)


def _set_kv(doc, key, vtype, value, etype=None):
    i = _kv_index(doc, key)
    kv = KV(key, vtype, value, etype)
    if i is None:
        doc.kvs.append(kv)
    else:
        doc.kvs[i] = kv


def _tokenizer_keys(doc):
    return [kv.key for kv in doc.kvs if kv.key.startswith("tokenizer.")]


def m_retype(rng, doc):
    """A metadata value of another type (most often a tokenizer or general key)."""
    keys = [kv.key for kv in doc.kvs]
    if not keys:
        return "retype: no keys left"
    favoured = _tokenizer_keys(doc) + ["general.name", "general.architecture"]
    key = _pick(rng, favoured if rng.random() < 0.7 else keys)
    i = _kv_index(doc, key)
    if i is None:
        return f"retype {key}: absent"
    vt, v, et = _other_value(rng, doc.kvs[i])
    doc.kvs[i] = KV(key, vt, v, et)
    return f"retype {key} -> {vt}/{et}"


def m_drop_key(rng, doc):
    if not doc.kvs:
        return "drop: no keys left"
    key = _pick(rng, [kv.key for kv in doc.kvs])
    doc.kvs = [kv for kv in doc.kvs if kv.key != key]
    return f"drop {key}"


def m_token_string(rng, doc):
    """Token strings a reader might trip on: malformed byte tokens, empty, duplicates, odd
    Unicode, special-looking text."""
    i = _array_index(doc, "tokenizer.ggml.tokens", _STR)
    if i is None:
        return "token string: no tokens"
    tokens = list(doc.kvs[i].value)
    out = []
    for _ in range(int(rng.integers(1, 4))):
        j = int(rng.integers(len(tokens)))
        new = _pick(rng, ["<0xBt>", "<0x>", "<0xGG>", "<0x1>", "<0x123>", "<0xff", "", " ",
                          "\u2581", "\ufffd", "\x00", "<s>", "<|im_start|>", "\u00e9", "a b",
                          tokens[int(rng.integers(len(tokens)))], "<0x" + "\u0661\u0662" + ">",
                          "<0x\uff11\uff12>", "\ud800"])
        tokens[j] = new
        out.append(f"[{j}]={new!r}")
    doc.kvs[i] = replace(doc.kvs[i], value=tokens)
    return "token strings " + " ".join(out)


def m_token_types(rng, doc):
    i = _array_index(doc, "tokenizer.ggml.token_type", _INT_TYPES)
    if i is None:
        return "token types: absent"
    types = np.array(doc.kvs[i].value).astype(np.int64)
    k = int(rng.integers(1, 20))
    idx = rng.integers(0, len(types), k)
    types[idx] = rng.integers(-2, 9, k)
    if rng.random() < 0.3:
        types[rng.integers(0, len(types), k)] = 6        # BYTE on ordinary pieces
    doc.kvs[i] = replace(doc.kvs[i], value=types.astype(np.int32), etype=ValueType.INT32)
    return f"token types x{k}"


def m_special_id(rng, doc):
    key = _pick(rng, ["tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                      "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id"])
    vt = _pick(rng, [ValueType.UINT32, ValueType.INT32, ValueType.UINT64, ValueType.INT64])
    v = _pick(rng, [0, 1, 319, 320, 321, -1, 2**31 - 1, 2**32 - 1, 2**63 - 1, 2**64 - 1])
    _set_kv(doc, key, vt, v)
    return f"{key} = {v} ({vt})"


def m_no_fallback(rng, doc):
    """A vocabulary that cannot spell the text: no unknown token, byte tokens made ordinary
    (SPM) or single characters renamed (BPE)."""
    doc.kvs = [kv for kv in doc.kvs if kv.key != "tokenizer.ggml.unknown_token_id"]
    it = _array_index(doc, "tokenizer.ggml.tokens", _STR)
    ity = _array_index(doc, "tokenizer.ggml.token_type", _INT_TYPES)
    if it is None:
        return "no fallback: no tokens"
    tokens = list(doc.kvs[it].value)
    if ity is not None:
        types = np.array(doc.kvs[ity].value).astype(np.int64)
        types[types == 6] = 1
        doc.kvs[ity] = replace(doc.kvs[ity], value=types.astype(np.int32), etype=ValueType.INT32)
    for j in rng.integers(0, len(tokens), 60):
        if len(tokens[j]) == 1:
            tokens[j] = tokens[j] * 2 + str(j)
    doc.kvs[it] = replace(doc.kvs[it], value=tokens)
    return "no unknown token, no byte fallback"


def m_merges(rng, doc):
    i = _array_index(doc, "tokenizer.ggml.merges", _STR)
    if i is None:
        return "merges: absent"
    merges = list(doc.kvs[i].value)
    j = int(rng.integers(max(1, len(merges)))) if merges else 0
    new = _pick(rng, ["a", "a b c", "", " ", "a  b", "\u0120 \u0120", "<0xBt> x"])
    if merges:
        merges[j] = new
    else:
        merges.append(new)
    doc.kvs[i] = replace(doc.kvs[i], value=merges)
    return f"merges[{j}] = {new!r}"


def m_scores(rng, doc):
    i = _array_index(doc, "tokenizer.ggml.scores", _NUM)
    if i is None:
        return "scores: absent"
    scores = np.array(doc.kvs[i].value).astype(np.float32)
    how = _pick(rng, ["nan", "inf", "short", "long"])
    if how == "nan":
        scores[rng.integers(0, len(scores), 10)] = np.nan
    elif how == "inf":
        scores[rng.integers(0, len(scores), 10)] = -np.inf
    elif how == "short":
        scores = scores[:-1]
    else:
        scores = np.concatenate([scores, [0.0]]).astype(np.float32)
    doc.kvs[i] = replace(doc.kvs[i], value=scores, etype=ValueType.FLOAT32)
    return f"scores {how}"


def m_hyper(rng, doc):
    """An architecture key set to a boundary value, or of another integer or float type."""
    keys = [kv.key for kv in doc.kvs if kv.key.split(".")[0] in ("llama", "qwen2")]
    if not keys:
        return "hyperparameter: none left"
    key = _pick(rng, keys)
    vt = _pick(rng, _INT_TYPES + (ValueType.FLOAT32, ValueType.FLOAT64))
    v = _pick(rng, (0, 1, 2, 3, 15, 16, 17, 64, 65, -1, 1e-30, float("inf"), float("nan"),
                    2**31 - 1, 2**32 - 1, 2**63))
    if vt in (ValueType.FLOAT32, ValueType.FLOAT64):
        v = float(v) if abs(float(v)) < 3e38 or vt == ValueType.FLOAT64 else float("inf")
    else:
        v = int(v) if np.isfinite(float(v)) else 0
    _set_kv(doc, key, vt, v)
    return f"{key} = {v!r} ({vt})"


def m_arch(rng, doc):
    v = _pick(rng, ["", "llama", "qwen2", "gemma3", "LLAMA", "llama\x00", "x" * 300])
    _set_kv(doc, "general.architecture", ValueType.STRING, v)
    return f"architecture {v[:20]!r}"


def m_tensor(rng, doc):
    if not doc.tensors:
        return "tensor: none left"
    j = int(rng.integers(len(doc.tensors)))
    t = doc.tensors[j]
    how = _pick(rng, ["dim", "ndims", "type", "offset", "drop", "dup", "rename", "short"])
    if how == "dim":
        shape = list(t.shape)
        k = int(rng.integers(len(shape)))
        shape[k] = _pick(rng, (0, 1, shape[k] + 1, shape[k] - 1, shape[k] * 2, 2**32, 2**63))
        doc.tensors[j] = replace(t, shape=shape)
    elif how == "ndims":
        doc.tensors[j] = replace(t, shape=list(t.shape) + [1] * int(rng.integers(1, 4)))
    elif how == "type":
        doc.tensors[j] = replace(t, type=int(_pick(rng, (0, 1, 2, 3, 6, 7, 8, 12, 14, 30, 39,
                                                        1000, 2**31))))
    elif how == "offset":
        doc.tensors[j] = replace(t, offset=_pick(rng, (0, 32, 1, 2**40, 2**64 - 32)))
    elif how == "drop":
        del doc.tensors[j]
    elif how == "dup":
        doc.tensors.insert(j, t)
    elif how == "rename":
        doc.tensors[j] = replace(t, name=_pick(rng, ("", "blk.0.attn_q.weight", "x" * 80,
                                                     "blk.9.attn_q.weight", "output.weight")))
    else:
        doc.tensors[j] = replace(t, data=t.data[: len(t.data) // 2])
    return f"tensor {t.name} {how}"


def m_tensor_data(rng, doc):
    """Weights that parse but compute badly: NaN, infinity, huge or tiny values (the scales of
    quantized blocks included), so the engine and the sampler meet them."""
    if not doc.tensors:
        return "tensor data: none left"
    j = int(rng.integers(len(doc.tensors)))
    t = doc.tensors[j]
    data = bytearray(t.data)
    if not data:
        return f"tensor {t.name} data: empty"
    pattern = _pick(rng, [b"\xff\xff", b"\x00\x7c", b"\x00\xfc", b"\xff\x7f\xff\x7f",
                          b"\x00\x00\x80\x7f", b"\x00\x00\xc0\x7f", b"\x01\x00", b"\x00\x00"])
    for _ in range(int(rng.integers(1, 64))):
        at = int(rng.integers(0, len(data)))
        data[at:at + len(pattern)] = pattern
    doc.tensors[j] = replace(t, data=bytes(data[: len(t.data)]))
    return f"tensor {t.name} data {pattern.hex()}"


def m_header(rng, doc):
    how = _pick(rng, ["version", "counts", "alignment"])
    if how == "version":
        doc.version = _pick(rng, (0, 1, 2, 3, 4, 0x03000000))
        return f"version {doc.version}"
    if how == "counts":
        n_t, n_kv = len(doc.tensors), len(doc.kvs)
        doc.counts = (_pick(rng, (n_t, n_t + 1, n_t - 1, 0, 2**63)),
                      _pick(rng, (n_kv, n_kv + 1, n_kv - 1, 0, 2**40)))
        return f"counts {doc.counts}"
    a = _pick(rng, (1, 16, 64, 0, 3))
    _set_kv(doc, "general.alignment", ValueType.UINT32, a)
    if a and a & (a - 1) == 0:
        doc.alignment = a
    return f"alignment {a}"


STRUCTURE = [(m_retype, 6), (m_token_string, 4), (m_token_types, 2), (m_special_id, 3),
             (m_no_fallback, 2), (m_merges, 1), (m_scores, 1), (m_drop_key, 2), (m_hyper, 3),
             (m_arch, 1), (m_tensor, 3), (m_tensor_data, 3), (m_header, 1)]


def mutate_bytes(rng, buf, header_end):
    """Byte-level damage, mostly in the header, metadata and tensor table."""
    buf = bytearray(buf)
    if len(buf) < 2:
        return bytes(buf) + b"\0", "bytes append"
    how = _pick(rng, ["flip", "byte", "int", "insert", "delete", "truncate", "repeat"])
    end = min(header_end, len(buf)) if rng.random() < 0.9 else len(buf)
    at = int(rng.integers(0, max(1, end)))
    if how == "flip":
        for _ in range(int(rng.integers(1, 9))):
            k = int(rng.integers(0, max(1, end)))
            buf[k] ^= 1 << int(rng.integers(8))
    elif how == "byte":
        buf[at] = _pick(rng, (0, 1, 0x7F, 0x80, 0xFF, int(rng.integers(256))))
    elif how == "int":
        size = _pick(rng, (4, 8))
        v = _pick(rng, _INTERESTING_INTS) & ((1 << (8 * size)) - 1)
        buf[at:at + size] = v.to_bytes(size, "little")
    elif how == "insert":
        buf[at:at] = bytes(rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8))
    elif how == "delete":
        del buf[at:at + int(rng.integers(1, 9))]
    elif how == "truncate":
        del buf[int(rng.integers(0, len(buf))):]
    else:
        n = int(rng.integers(1, 64))
        buf[at:at] = buf[at:at + n]
    return bytes(buf), f"bytes {how} @{at}"


@dataclass
class Corpus:
    docs: dict = field(default_factory=dict)      # base name -> Doc
    header_end: dict = field(default_factory=dict)

    @classmethod
    def make(cls, directory):
        c = cls()
        for name, how in BASES.items():
            path = os.path.join(directory, f"base-{name}.gguf")
            write_base(path, *how)
            c.docs[name] = read_doc(path)
            with GGUFFile(path) as gf:
                c.header_end[name] = gf.data_start
        return c

    def case(self, seed, index):
        """(file bytes, description) of case `index` of `seed`: the same on every run."""
        rng = np.random.default_rng([seed, index])
        base = _pick(rng, sorted(self.docs))
        doc = self.docs[base].copy()
        notes = [base]
        kind = rng.random()
        if kind < 0.65:                    # structure-aware, sometimes then a byte
            fns, weights = zip(*STRUCTURE)
            p = np.array(weights, float) / sum(weights)
            for _ in range(int(rng.integers(1, 4))):
                notes.append(fns[rng.choice(len(fns), p=p)](rng, doc))
            buf = write_doc(doc)
            if rng.random() < 0.15:
                buf, note = mutate_bytes(rng, buf, len(buf) - sum(len(t.data) for t in doc.tensors))
                notes.append(note)
        else:                              # byte-level
            buf = write_doc(doc)
            for _ in range(int(rng.integers(1, 4))):
                buf, note = mutate_bytes(rng, buf, self.header_end[base])
                notes.append(note)
        return buf, "; ".join(notes)


# ---------------------------------------------------------------- one case

def exercise(path):
    """Load and use the file as a command would; raises what the command would see."""
    from slmprof.engine.model import Model
    with Model.load(str(path), threads=1, ctx=LOAD_CTX) as m:
        tok = m.tokenizer
        ids = [0]
        if tok is not None:
            ids = tok.encode(TEXT) or [0]
            tok.decode(ids)
            for i in range(min(tok.vocab_size, m.config.vocab)):
                tok.token_to_bytes(i)
            for _ in m.generate(TEXT, max_tokens=2):
                pass
            for _ in m.generate(TEXT, max_tokens=2, temperature=0.8, top_k=40, top_p=0.9):
                pass
        m.reset()
        logits = m.prefill(ids[: LOAD_CTX // 2])
        m.decode(int(np.argmax(logits)))


def run_case(path):
    """(outcome, detail): ok, rejected (an slmprof error) or traceback."""
    try:
        exercise(path)
        return "ok", ""
    except SlmprofError as e:
        return "rejected", type(e).__name__
    except Exception as e:  # noqa: BLE001 - this is what the fuzz looks for
        tb = traceback.extract_tb(e.__traceback__)[-1]
        where = f"{os.path.basename(tb.filename)}:{tb.lineno} {tb.name}"
        return "traceback", f"{type(e).__name__} at {where}: {str(e)[:200]}"


def worker(args):
    """Run cases [start, stop) and report each on stdout: 'begin N' then 'end N outcome detail'."""
    corpus = Corpus.make(args.dir)
    path = os.path.join(args.dir, "case.gguf")
    out = sys.stdout
    for i in range(args.start, args.stop):
        buf, _ = corpus.case(args.seed, i)
        with open(path, "wb") as f:
            f.write(buf)
        out.write(f"begin {i}\n")
        out.flush()
        outcome, detail = run_case(path)
        out.write(f"end {i} {outcome} {detail}".replace("\n", " ") + "\n")
        out.flush()
    return 0


# ---------------------------------------------------------------- the supervisor

@dataclass
class Finding:
    case: int
    kind: str         # traceback, signal, hang
    detail: str
    mutation: str = ""


def _lines(fd, timeout):
    """Lines from a pipe as they come; None when none came within `timeout` seconds (the
    timeout is read again after each line, so a caller can change it)."""
    pending = b""
    while True:
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            yield line.decode()
        ready, _, _ = select.select([fd], [], [], timeout())
        if not ready:
            yield None
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            return
        pending += chunk


def _sanitizer_report(stderr):
    """The head of an AddressSanitizer or UndefinedBehaviorSanitizer report, if any."""
    for mark in ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer"):
        at = stderr.find(mark)
        if at >= 0:
            start = stderr.rfind("\n", 0, at) + 1
            return "\n".join(stderr[start:].splitlines()[:12])
    return None


def supervise(seed, n_cases, timeout, work_dir, log=sys.stderr):
    """Run cases 0..n_cases-1 in worker processes; returns (outcome counts, findings)."""
    counts, findings = Counter(), []
    next_case = 0
    err_path = os.path.join(work_dir, "worker.stderr")
    while next_case < n_cases:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--seed", str(seed),
               "--start", str(next_case), "--stop", str(n_cases), "--dir", work_dir]
        with open(err_path, "wb") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
        state = {"current": None, "limit": timeout + 60}    # the first case: bases are made too
        hung = False
        for line in _lines(proc.stdout.fileno(), lambda: state["limit"]):
            if line is None:                                # no word within the timeout: a hang
                proc.kill()
                hung = True
                break
            parts = line.split(" ", 3)
            if parts[0] == "begin":
                state["current"], state["limit"] = int(parts[1]), timeout
            elif parts[0] == "end":
                i, outcome = int(parts[1]), parts[2]
                detail = parts[3] if len(parts) > 3 else ""
                counts[outcome] += 1
                if outcome == "rejected":
                    counts[f"rejected: {detail}"] += 1
                if outcome == "traceback":
                    findings.append(Finding(i, "traceback", detail))
                state["current"] = None
                if (i + 1) % 1000 == 0:
                    log.write(f"fuzz: {i + 1}/{n_cases} cases\n")
                    log.flush()
        rc = proc.wait()
        proc.stdout.close()
        with open(err_path, "rb") as f:
            stderr = f.read().decode(errors="replace")
        current = state["current"]
        if hung:
            at = current if current is not None else next_case
            findings.append(Finding(at, "hang", f"no result within {state['limit']:g} s"))
            counts["hang"] += 1
            next_case = at + 1
        elif current is not None:                           # died inside a case
            report = _sanitizer_report(stderr)
            kind = "sanitizer" if report else "signal" if rc < 0 else "traceback"
            what = f"signal {-rc}" if rc < 0 else f"exit status {rc}"
            findings.append(Finding(current, kind, f"{what}: {report or stderr.strip()[-800:]}"))
            counts[kind] += 1
            next_case = current + 1
        elif rc != 0:
            raise RuntimeError(f"the fuzz worker failed outside a case (exit {rc}):\n"
                               f"{stderr.strip()[-3000:]}")
        else:
            next_case = n_cases
    return counts, findings


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cases", type=int, default=2000, help="cases 0..N-1 (default 2000)")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds per case (default 20)")
    p.add_argument("--case", type=int, help="run this one case here, with its full traceback")
    p.add_argument("--keep", metavar="DIR", help="copy the files of findings (or of --case) here")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--start", type=int, help=argparse.SUPPRESS)
    p.add_argument("--stop", type=int, help=argparse.SUPPRESS)
    p.add_argument("--dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)

    with tempfile.TemporaryDirectory(prefix="slmprof-fuzz-") as tmp:
        if args.case is not None:
            corpus = Corpus.make(tmp)
            buf, what = corpus.case(args.seed, args.case)
            path = os.path.join(args.keep or tmp, f"fuzz-{args.seed}-{args.case}.gguf")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(buf)
            print(f"case {args.case} of seed {args.seed}: {what}\nfile: {path}")
            try:
                exercise(path)
                print("ok")
            except SlmprofError as e:
                print(f"rejected: {type(e).__name__}: {e}")
            return 0

        t0 = time.monotonic()
        counts, findings = supervise(args.seed, args.cases, args.timeout, tmp)
        took = time.monotonic() - t0
        if findings:
            corpus = Corpus.make(os.path.join(tmp, "bases"))   # a fresh copy for descriptions
            for f in findings:
                buf, f.mutation = corpus.case(args.seed, f.case)
                if args.keep:
                    os.makedirs(args.keep, exist_ok=True)
                    with open(os.path.join(args.keep, f"fuzz-{args.seed}-{f.case}.gguf"), "wb") as out:
                        out.write(buf)
    rejected = sorted((k.split(": ", 1)[1], v) for k, v in counts.items() if k.startswith("rejected: "))
    print(f"fuzz_gguf: seed {args.seed}, {args.cases} cases in {took:.0f} s: ok {counts['ok']}, "
          f"rejected {counts['rejected']} ({', '.join(f'{k} {v}' for k, v in rejected) or 'none'}), "
          f"traceback {counts['traceback']}, signal {counts['signal']}, hang {counts['hang']}, "
          f"sanitizer {counts['sanitizer']}")
    by_place = Counter(f.detail for f in findings)
    for f in findings:
        print(f"  case {f.case}: {f.kind}: {f.detail}\n      mutation: {f.mutation}")
    if findings:
        print(f"  {len(by_place)} distinct findings; reproduce one with --seed {args.seed} --case N")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
