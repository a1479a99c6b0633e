"""GGUF reader and writer: round trips, an independent cross-check with the `gguf` package,
architecture checks, and bad input (every error names the file and what is wrong)."""
import os
import struct

import numpy as np
import pytest

from slmprof.errors import ModelFileError, UnsupportedError
from slmprof.engine import quant
from slmprof.engine.gguf import GGUFFile, GGUFWriter, ModelShape, describe_model, open_model

TINY = ModelShape(arch="llama", n_layer=2, dim=64, ffn=96, n_head=4, n_kv_head=2, head_dim=16,
                  vocab=128, ctx=64, tied=True, rope_base=10000.0)


def write_f32_model(path, shape=TINY, drop=(), reshape=None, types=None, arch=None, extra=None):
    """A model of `shape` with F32 random weights written directly (no tokenizer)."""
    rng = np.random.default_rng(0)
    w = GGUFWriter(path, arch or shape.arch)
    k = (arch or shape.arch) + "."
    w.add(k + "block_count", shape.n_layer)
    w.add(k + "embedding_length", shape.dim)
    w.add(k + "feed_forward_length", shape.ffn)
    w.add(k + "attention.head_count", shape.n_head)
    w.add(k + "attention.head_count_kv", shape.n_kv_head)
    w.add(k + "context_length", shape.ctx)
    w.add(k + "rope.freq_base", shape.rope_base)
    w.add(k + "attention.layer_norm_rms_epsilon", shape.rms_eps)
    for key, value in (extra or {}).items():
        w.add(key, value)
    for name, shp in shape.tensor_shapes().items():
        if name in drop:
            continue
        shp = (reshape or {}).get(name, shp)
        t = (types or {}).get(name)
        if t is not None:
            ok = shp[0] % quant.type_info(t).block_elems == 0
            nbytes = quant.tensor_bytes(t, shp) if ok else 0
            w.add_tensor(name, bytes(nbytes), t, shp)
        else:
            x = rng.standard_normal(shp[::-1]).astype(np.float32)
            if name == "rope_freqs.weight":      # frequency factors are positive
                x = np.abs(x) + 1
            w.add_tensor(name, x, "f32", shp)
    return w.write()


# --- round trips ---------------------------------------------------------------------------------
@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("alignment", [32, 64])
def test_round_trip_metadata_and_tensors(tmp_path, version, alignment):
    path = tmp_path / "m.gguf"
    w = GGUFWriter(path, "llama", version=version, alignment=alignment)
    w.add("a.u32", 7)
    w.add("a.i32", -3)
    w.add("a.u8", 200, "uint8")
    w.add("a.i64", -(1 << 40))
    w.add("a.f32", 0.5)
    w.add("a.f64", 1.25, "float64")
    w.add("a.bool", True)
    w.add("a.str", "héllo ▁")
    w.add("a.strs", ["x", "", "ÿ"])
    w.add("a.ints", [1, -2, 3])
    w.add("a.floats", np.array([0.5, -1.0], dtype=np.float32))
    x = np.arange(3 * 64, dtype=np.float32).reshape(3, 64)
    h = np.linspace(-1, 1, 32).astype(np.float16)
    q = np.random.default_rng(1).integers(0, 255, 4 * 18, dtype=np.uint8)
    w.add_tensor("x", x, "f32", (64, 3))
    w.add_tensor("h", h, "f16", (32,))
    w.add_tensor("q", q.tobytes(), "q4_0", (64, 2))
    w.write()
    with GGUFFile(path) as gf:
        assert gf.version == version and gf.alignment == alignment and gf.arch == "llama"
        m = gf.metadata
        assert (m["a.u32"], m["a.i32"], m["a.u8"], m["a.i64"]) == (7, -3, 200, -(1 << 40))
        assert m["a.f32"] == 0.5 and m["a.f64"] == 1.25 and m["a.bool"] is True
        assert m["a.str"] == "héllo ▁" and m["a.strs"] == ["x", "", "ÿ"]
        assert list(m["a.ints"]) == [1, -2, 3] and m["a.ints"].dtype == np.int32
        assert list(m["a.floats"]) == [0.5, -1.0]
        t = gf.tensors["x"]
        assert t.shape == (64, 3) and t.type == 0 and t.nbytes == x.nbytes
        assert t.offset % alignment == 0
        assert np.array_equal(t.data.view(np.float32).reshape(3, 64), x)
        assert not t.data.flags.writeable          # a read-only view of the mapping
        assert np.array_equal(gf.tensors["h"].data.view(np.float16), h)
        assert np.array_equal(gf.tensors["q"].data, q)
        assert gf.tensors["q"].type_name == "Q4_0"
        # zero copy: the view's memory is the mapping at the tensor's file offset
        with open(path, "rb") as f:
            f.seek(t.offset)
            assert f.read(16) == t.data[:16].tobytes()


def test_views_survive_close(tmp_path):
    path = write_f32_model(tmp_path / "m.gguf")
    gf = GGUFFile(path)
    view = gf.tensors["token_embd.weight"].data
    gf.close()                                     # a live view keeps the mapping alive
    assert view.view(np.float32).shape == (64 * 128,)
    assert gf.tensors["token_embd.weight"].data is None


def test_cross_check_with_gguf_package(tmp_path):
    gguf = pytest.importorskip("gguf")
    # ours -> theirs
    path = write_f32_model(tmp_path / "ours.gguf")
    r = gguf.GGUFReader(str(path))
    ours = GGUFFile(path)
    assert len(r.tensors) == len(ours.tensors)
    for t in r.tensors:
        mine = ours.tensors[t.name]
        assert tuple(int(d) for d in t.shape) == mine.shape
        assert int(t.data_offset) == mine.offset and int(t.n_bytes) == mine.nbytes
        assert np.array_equal(np.asarray(t.data).reshape(-1).view(np.uint8), mine.data)
    assert r.fields["llama.block_count"].contents() == 2
    ours.close()
    # theirs -> ours, including a quantized tensor and a string array
    path2 = tmp_path / "theirs.gguf"
    w = gguf.GGUFWriter(str(path2), "qwen2")
    w.add_uint32("qwen2.block_count", 3)
    w.add_array("tokenizer.ggml.tokens", ["a", "bc", "▁d"])
    w.add_float32("qwen2.rope.freq_base", 1e6)
    a = np.random.default_rng(2).standard_normal((4, 64)).astype(np.float32)
    qa = gguf.quants.quantize(a, gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("w", qa, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("n", a[0])
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    with GGUFFile(path2) as gf:
        assert gf.arch == "qwen2" and gf.metadata["qwen2.block_count"] == 3
        assert gf.metadata["tokenizer.ggml.tokens"] == ["a", "bc", "▁d"]
        assert gf.metadata["qwen2.rope.freq_base"] == 1e6
        assert gf.tensors["w"].shape == (64, 4) and gf.tensors["w"].type == 8
        assert np.array_equal(gf.tensors["w"].data, qa.reshape(-1))
        assert np.array_equal(gf.tensors["n"].data.view(np.float32), a[0])


@pytest.mark.real_model
def test_real_model_header(real_model_path):
    with GGUFFile(real_model_path) as gf:
        d = describe_model(gf)
        s = d.shape
        assert (s.arch, s.n_layer, s.dim, s.ffn, s.n_head, s.n_kv_head, s.vocab) == \
               ("llama", 30, 576, 1536, 9, 3, 49152)
        assert s.tied and s.rope_base == 100000.0 and gf.version == 3
        types = [t.type_name for t in gf.tensors.values()]
        assert types.count("Q4_1") == 210 and types.count("F32") == 61
        assert gf.tensors["token_embd.weight"].type_name == "Q8_0"
        assert d.file_type == "Q4_1 (token_embd Q8_0)"


# --- architecture checks -------------------------------------------------------------------------
def test_describe_llama_and_qwen2(tmp_path):
    gf, d = open_model(write_f32_model(tmp_path / "l.gguf"))
    assert d.shape == TINY and d.shape.tied and not d.shape.qkv_bias
    # 2 layers x (4 dim^2/.. ) -- bytes per token counts every weight once plus one embedding row
    emb = gf.tensors["token_embd.weight"].nbytes
    assert d.weight_bytes_per_token() == d.weight_bytes() + emb // 128
    gf.close()
    q = ModelShape(arch="qwen2", n_layer=1, dim=64, ffn=96, n_head=4, n_kv_head=2, head_dim=16,
                   vocab=128, ctx=64, tied=False, rope_base=1e6)
    gf, d = open_model(write_f32_model(tmp_path / "q.gguf", q))
    assert d.shape == q and d.shape.qkv_bias and d.shape.rope_neox
    assert "blk.0.attn_k.bias" in d.tensors and d.tensors["blk.0.attn_k.bias"].shape == (32,)
    assert "output.weight" in d.tensors
    gf.close()


def test_optional_rope_freqs(tmp_path):
    s = ModelShape(**{**TINY.__dict__, "rope_freqs": True})
    with GGUFFile(write_f32_model(tmp_path / "r.gguf", s)) as gf:
        assert describe_model(gf).shape.rope_freqs


def test_unsupported_architecture(tmp_path):
    path = write_f32_model(tmp_path / "g.gguf", arch="gemma")
    with GGUFFile(path) as gf, pytest.raises(UnsupportedError,
                                             match=r"unsupported architecture 'gemma' "
                                                   r"\(supported: llama, qwen2, qwen3, gemma3\)"):
        describe_model(gf)


def test_missing_tensor(tmp_path):
    path = write_f32_model(tmp_path / "m.gguf", drop=("blk.1.ffn_up.weight",))
    with pytest.raises(ModelFileError, match=r"m\.gguf: missing tensor 'blk\.1\.ffn_up\.weight'"):
        open_model(path)


def test_missing_key(tmp_path):
    gguf_path = tmp_path / "k.gguf"
    w = GGUFWriter(gguf_path, "llama")
    w.add_tensor("token_embd.weight", np.zeros((4, 32), np.float32), "f32", (32, 4))
    w.write()
    with pytest.raises(ModelFileError, match="missing metadata 'llama.embedding_length'"):
        open_model(gguf_path)


def test_shape_inconsistent_with_hyperparameters(tmp_path):
    path = write_f32_model(tmp_path / "s.gguf", reshape={"blk.0.attn_k.weight": (64, 64)})
    with pytest.raises(ModelFileError, match=r"'blk\.0\.attn_k\.weight' has shape \[64, 64\], "
                                             r"expected \[64, 32\]"):
        open_model(path)


def test_absurd_block_count(tmp_path):
    path = write_f32_model(tmp_path / "b.gguf", extra={"llama.block_count": 1 << 31})
    with pytest.raises(ModelFileError, match="'llama.block_count' = 2147483648, but the file has "
                                             "only 20 tensors"):
        open_model(path)


def test_vocabulary_larger_than_embedding(tmp_path):
    path = write_f32_model(tmp_path / "v.gguf",
                           extra={"tokenizer.ggml.tokens": [str(i) for i in range(200)]})
    with pytest.raises(ModelFileError, match="tokenizer has 200 tokens but the embedding only 128"):
        open_model(path)


def test_bad_head_counts(tmp_path):
    path = write_f32_model(tmp_path / "h.gguf", extra={"llama.attention.head_count_kv": 3})
    with pytest.raises(ModelFileError, match="not a multiple of head_count_kv 3"):
        open_model(path)


def test_unsupported_tensor_types_are_named(tmp_path):
    # IQ2_XXS needs 256-element rows; the tiny dim 64 cannot hold one, so use a wider model
    s = ModelShape(**{**TINY.__dict__, "dim": 256, "n_head": 4, "head_dim": 64, "ffn": 256})
    path = write_f32_model(tmp_path / "k.gguf", s,
                           types={"blk.0.ffn_gate.weight": 16, "blk.1.ffn_down.weight": 20})
    with pytest.raises(UnsupportedError) as e:
        open_model(path)
    msg = str(e.value)
    assert "IQ2_XXS" in msg and "IQ4_NL" in msg and "blk.0.ffn_gate.weight (IQ2_XXS)" in msg
    assert "blk.1.ffn_down.weight (IQ4_NL)" in msg
    assert "supported: F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K" in msg


# --- bad input -----------------------------------------------------------------------------------
def small_file(tmp_path):
    path = tmp_path / "small.gguf"
    w = GGUFWriter(path, "llama")
    w.add("tokenizer.ggml.tokens", ["a", "b", "c"])
    w.add("llama.block_count", 1)
    w.add_tensor("first", np.ones((2, 32), np.float32), "f32", (32, 2))
    w.add_tensor("second", np.ones(64, np.float32), "f32", (64,))
    w.write()
    return path, bytearray(path.read_bytes())


def tensor_info_at(buf, name):
    """Offset just after the tensor's name string in the header."""
    key = struct.pack("<Q", len(name)) + name.encode()
    return buf.index(key) + len(key)


def expect_error(tmp_path, buf, pattern, exc=ModelFileError):
    path = tmp_path / "bad.gguf"
    path.write_bytes(bytes(buf))
    with pytest.raises(exc, match=pattern) as e:
        GGUFFile(path).close()
    assert str(path) in str(e.value)
    return str(e.value)


def test_truncated_at_every_cut_point(tmp_path):
    path, buf = small_file(tmp_path)
    cut_path = tmp_path / "cut.gguf"
    # every byte of the header and metadata, then a stride through the data
    cuts = list(range(0, 400)) + list(range(400, len(buf), 7))
    for n in cuts:
        if n >= len(buf):
            break
        cut_path.write_bytes(bytes(buf[:n]))
        with pytest.raises(ModelFileError) as e:
            GGUFFile(cut_path).close()
        assert str(cut_path) in str(e.value), n
        assert "truncated" in str(e.value) or "past the end" in str(e.value), (n, str(e.value))


def test_empty_and_missing_file(tmp_path):
    (tmp_path / "empty.gguf").write_bytes(b"")
    with pytest.raises(ModelFileError, match="too short"):
        GGUFFile(tmp_path / "empty.gguf")
    with pytest.raises(ModelFileError, match="cannot open"):
        GGUFFile(tmp_path / "nope.gguf")


def test_wrong_magic(tmp_path):
    _, buf = small_file(tmp_path)
    buf[:4] = b"GGML"
    expect_error(tmp_path, buf, "not a GGUF file: magic is b'GGML'")


@pytest.mark.parametrize("version", [0, 1, 4, 99])
def test_bad_version(tmp_path, version):
    _, buf = small_file(tmp_path)
    buf[4:8] = struct.pack("<I", version)
    expect_error(tmp_path, buf, f"unsupported GGUF version {version}")


def test_big_endian_version(tmp_path):
    _, buf = small_file(tmp_path)
    buf[4:8] = struct.pack(">I", 3)
    expect_error(tmp_path, buf, "big-endian")


def test_absurd_counts_rejected_before_allocating(tmp_path):
    _, buf = small_file(tmp_path)
    b = bytearray(buf)
    b[8:16] = struct.pack("<Q", 1 << 62)
    expect_error(tmp_path, b, "tensor count 4611686018427387904 is impossible")
    b = bytearray(buf)
    b[16:24] = struct.pack("<Q", 1 << 60)
    expect_error(tmp_path, b, "metadata count .* is impossible")


def test_absurd_string_and_array_lengths(tmp_path):
    _, buf = small_file(tmp_path)
    key = b"tokenizer.ggml.tokens"
    at = buf.index(key) + len(key)            # then u32 ARRAY, u32 STRING, u64 count
    b = bytearray(buf)
    b[at + 8:at + 16] = struct.pack("<Q", 1 << 61)
    expect_error(tmp_path, b, r"truncated: metadata 'tokenizer\.ggml\.tokens' \(2305843009213693952 strings\)")
    b = bytearray(buf)
    b[at + 16:at + 24] = struct.pack("<Q", 1 << 50)   # first string's length
    expect_error(tmp_path, b, r"'tokenizer\.ggml\.tokens' element 0: string of \d+ bytes")
    b = bytearray(buf)
    b[at:at + 4] = struct.pack("<I", 77)
    expect_error(tmp_path, b, r"metadata 'tokenizer\.ggml\.tokens': unknown value type 77")


def test_unknown_tensor_type_id(tmp_path):
    _, buf = small_file(tmp_path)
    at = tensor_info_at(buf, "first") + 4 + 16
    buf[at:at + 4] = struct.pack("<I", 1234)
    expect_error(tmp_path, buf, "tensor 'first': unknown ggml type id 1234")


@pytest.mark.parametrize("dims,pattern", [
    ((32, 0), r"must all be positive"),
    ((1 << 32, 1 << 20), r"elements, absurd"),
    ((1 << 63, 2), r"elements, absurd"),
])
def test_absurd_dimensions(tmp_path, dims, pattern):
    _, buf = small_file(tmp_path)
    at = tensor_info_at(buf, "first") + 4
    buf[at:at + 16] = struct.pack("<QQ", *dims)
    expect_error(tmp_path, buf, r"tensor 'first': .*" + pattern)


def test_too_many_dimensions(tmp_path):
    _, buf = small_file(tmp_path)
    at = tensor_info_at(buf, "first")
    buf[at:at + 4] = struct.pack("<I", 9)
    expect_error(tmp_path, buf, r"tensor 'first': 9 dimensions \(must be 1 to 4\)")


def test_tensor_data_past_end(tmp_path):
    _, buf = small_file(tmp_path)
    at = tensor_info_at(buf, "second") + 4 + 8 + 4
    buf[at:at + 8] = struct.pack("<Q", 1 << 20)
    expect_error(tmp_path, buf, r"tensor 'second': data \[\d+, \d+\) extends past the end")


def test_unaligned_and_overlapping_offsets(tmp_path):
    _, buf = small_file(tmp_path)
    at = tensor_info_at(buf, "second") + 4 + 8 + 4
    b = bytearray(buf)
    b[at:at + 8] = struct.pack("<Q", 4)
    expect_error(tmp_path, b, "tensor 'second': data offset 4 is not a multiple of the alignment 32")
    b = bytearray(buf)
    b[at:at + 8] = struct.pack("<Q", 0)
    expect_error(tmp_path, b, "tensors 'first' and 'second' overlap")


def test_duplicate_tensor_names(tmp_path):
    path = tmp_path / "dup.gguf"
    w = GGUFWriter(path, "llama")
    w.add_tensor("aaaa", np.ones(32, np.float32), "f32", (32,))
    w.add_tensor("bbbb", np.ones(32, np.float32), "f32", (32,))
    w.write()
    b = bytearray(path.read_bytes())
    i = b.index(b"bbbb")
    b[i:i + 4] = b"aaaa"
    expect_error(tmp_path, b, "tensor 'aaaa' appears twice")


def test_bad_alignment_key(tmp_path):
    path = tmp_path / "a.gguf"
    w = GGUFWriter(path, "llama")
    w.add("general.alignment", 48, "uint32")
    w.write()
    with pytest.raises(ModelFileError, match="'general.alignment' = 48 is not a power of two"):
        GGUFFile(path)
    w = GGUFWriter(path, "llama")
    w.add("general.alignment", 32, "uint64")
    w.write()
    with pytest.raises(ModelFileError, match="'general.alignment' must be uint32"):
        GGUFFile(path)
    w = GGUFWriter(path, "llama")       # GGUF requires a multiple of 8: F32 values read in place
    w.add("general.alignment", 4, "uint32")
    w.write()
    with pytest.raises(ModelFileError, match="'general.alignment' = 4 is not a multiple of 8"):
        GGUFFile(path)


def test_row_length_not_multiple_of_block(tmp_path):
    _, buf = small_file(tmp_path)
    at = tensor_info_at(buf, "first") + 4 + 16
    buf[at:at + 4] = struct.pack("<I", 2)      # F32 (32,2) relabelled Q4_0: 32 ok; make it 48
    buf[at - 16:at - 8] = struct.pack("<Q", 48)
    expect_error(tmp_path, buf, "row length 48 is not a multiple of the Q4_0 block size 32")


def test_invalid_utf8_key(tmp_path):
    _, buf = small_file(tmp_path)
    i = buf.index(b"llama.block_count")
    buf[i] = 0xFF
    expect_error(tmp_path, buf, "not valid UTF-8")


def test_writer_leaves_no_partial_file(tmp_path):
    path = tmp_path / "out.gguf"

    def chunks():
        yield np.zeros(16, np.float32)
        raise KeyboardInterrupt   # interrupted half way through the data

    w = GGUFWriter(path, "llama")
    w.add_tensor("t", chunks, "f32", (32,))
    with pytest.raises(KeyboardInterrupt):
        w.write()
    assert os.listdir(tmp_path) == []
    w = GGUFWriter(path, "llama")
    w.add_tensor("t", lambda: [np.zeros(8, np.float32)], "f32", (32,))
    with pytest.raises(ValueError, match="32 bytes produced, 128 expected"):
        w.write()
    assert os.listdir(tmp_path) == []


def test_writer_rejects_wrong_sizes(tmp_path):
    w = GGUFWriter(tmp_path / "x.gguf", "llama")
    with pytest.raises(ValueError, match="needs 72"):
        w.add_tensor("q", bytes(70), "q4_0", (64, 2))
    with pytest.raises(ValueError, match="not a multiple"):
        w.add_tensor("q", bytes(18), "q4_0", (31,))
    with pytest.raises(UnsupportedError, match="unknown tensor type 'q9_9'"):
        w.add_tensor("q", bytes(18), "q9_9", (32,))


def test_random_corruption_gives_only_clear_errors(tiny_model, tmp_path):
    """Flip bytes of the header and metadata of a real tiny model: opening, describing and
    building the tokenizer either work or raise slmprof's own errors, never anything else."""
    from slmprof.errors import SlmprofError
    from slmprof.engine.tokenizer import Tokenizer
    src = tiny_model(type="q8_0").read_bytes()
    with GGUFFile(tiny_model(type="q8_0")) as gf:
        header_end = gf.data_start
    rng = np.random.default_rng(1234)
    bad = tmp_path / "fuzz.gguf"
    outcomes = {"ok": 0, "error": 0}
    for _ in range(400):
        buf = bytearray(src)
        for _ in range(int(rng.integers(1, 4))):
            # the fixed header and first keys, the tensor table at the end, or anywhere
            region = int(rng.integers(0, 3))
            lo, hi = [(0, 400), (header_end - 1200, header_end), (0, header_end)][region]
            at = int(rng.integers(lo, hi))
            buf[at] = int(rng.integers(0, 256))
        bad.write_bytes(bytes(buf))
        try:
            gf, d = open_model(bad)
            with gf:
                Tokenizer.from_gguf(gf).encode("hello world")
            outcomes["ok"] += 1
        except SlmprofError as e:
            assert str(bad) in str(e) or "tokenizer" in str(e) or "token" in str(e), str(e)
            outcomes["error"] += 1
    assert outcomes["error"] > 100, outcomes
