"""Malformed but parseable model files give slmprof's own errors, never a traceback: a seeded
mutation fuzz of the loader (scripts/fuzz_gguf.py, a few hundred cases), and the metadata of
the wrong type it found, one by one (each error names the key)."""
import importlib.util
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from slmprof.engine.gguf import ValueType
from slmprof.errors import ModelFileError

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "fuzz_gguf.py"


@pytest.fixture(scope="module")
def fuzz():
    if not SCRIPT.exists():
        pytest.skip("scripts/fuzz_gguf.py is not in this installation (run from a source checkout)")
    spec = importlib.util.spec_from_file_location("fuzz_gguf", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_seeded_fuzz_of_the_loader_finds_no_traceback_signal_or_hang():
    if not SCRIPT.exists():
        pytest.skip("scripts/fuzz_gguf.py is not in this installation (run from a source checkout)")
    out = subprocess.run([sys.executable, str(SCRIPT), "--seed", "17", "--cases", "400",
                          "--timeout", "60"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    summary = out.stdout.strip().splitlines()[0]
    assert "400 cases" in summary and "traceback 0, signal 0, hang 0" in summary, summary
    ok = int(summary.split(" ok ")[1].split(",")[0])
    assert ok > 20, f"too few mutated files load: the fuzz no longer reaches the engine: {summary}"


@pytest.fixture(scope="module")
def bases(fuzz, tmp_path_factory):
    return fuzz.Corpus.make(tmp_path_factory.mktemp("fuzz-bases")).docs


def _load_error(fuzz, doc, tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(fuzz.write_doc(doc))
    with pytest.raises(ModelFileError) as e:
        fuzz.exercise(path)
    assert str(path) in str(e.value)
    return str(e.value)


def _with(fuzz, doc, key, vtype, value, etype=None):
    doc = doc.copy()
    fuzz._set_kv(doc, key, vtype, value, etype)
    return doc


@pytest.mark.parametrize("key, vtype, value, etype, expected", [
    ("tokenizer.ggml.bos_token_id", ValueType.STRING, "1", None, "expected an integer"),
    ("tokenizer.ggml.eos_token_id", ValueType.ARRAY, [1, 2], ValueType.INT32, "expected an integer"),
    ("tokenizer.ggml.unknown_token_id", ValueType.FLOAT32, 0.5, None, "expected an integer"),
    ("tokenizer.ggml.token_type", ValueType.ARRAY, ["a", "b"], ValueType.STRING,
     "expected an array of integers"),
    ("tokenizer.ggml.token_type", ValueType.UINT32, 1, None, "expected an array of integers"),
    ("tokenizer.ggml.tokens", ValueType.UINT32, 7, None, "expected an array of strings"),
    ("tokenizer.ggml.scores", ValueType.FLOAT32, 1.0, None, "expected an array of numbers"),
    ("general.name", ValueType.ARRAY, ["a"], ValueType.STRING, "expected a string"),
    ("general.architecture", ValueType.ARRAY, [1], ValueType.INT32, "expected a string"),
    ("tokenizer.ggml.model", ValueType.ARRAY, ["llama"], ValueType.STRING, "expected a string"),
    ("tokenizer.ggml.add_bos_token", ValueType.ARRAY, [1], ValueType.BOOL, "expected a bool"),
    ("llama.block_count", ValueType.FLOAT32, 1.0, None, "expected an integer"),
])
def test_metadata_of_the_wrong_type_names_the_key(fuzz, bases, tmp_path, key, vtype, value,
                                                   etype, expected):
    msg = _load_error(fuzz, _with(fuzz, bases["llama-spm-q4_0"], key, vtype, value, etype),
                      tmp_path)
    assert f"metadata {key!r} is " in msg and expected in msg, msg


def _tokens(doc):
    return next(kv for kv in doc.kvs if kv.key == "tokenizer.ggml.tokens")


def test_a_malformed_byte_token_names_its_index(fuzz, bases, tmp_path):
    doc = bases["llama-spm-q4_0"].copy()
    kv = _tokens(doc)
    tokens = list(kv.value)
    i = tokens.index("<0x0B>")
    tokens[i] = "<0xBt>"
    doc.kvs[doc.kvs.index(kv)] = replace(kv, value=tokens)
    msg = _load_error(fuzz, doc, tmp_path)
    assert f"tokenizer.ggml.tokens[{i}] = '<0xBt>'" in msg and "<0xHH>" in msg, msg


def test_text_the_vocabulary_cannot_spell_is_a_model_file_error(fuzz, bases, tmp_path):
    """No piece, no byte token and no unknown token for a character."""
    doc = bases["llama-spm-q4_0"].copy()
    doc.kvs = [kv for kv in doc.kvs if kv.key != "tokenizer.ggml.unknown_token_id"]
    it = next(i for i, kv in enumerate(doc.kvs) if kv.key == "tokenizer.ggml.token_type")
    types = np.array(doc.kvs[it].value)
    types[types == 6] = 1                   # byte tokens become ordinary pieces
    doc.kvs[it] = replace(doc.kvs[it], value=types)
    msg = _load_error(fuzz, doc, tmp_path)
    assert "cannot encode" in msg and "tokenizer.ggml.unknown_token_id" in msg, msg


def test_rope_frequency_factors_must_be_positive(fuzz, bases, tmp_path):
    doc = bases["llama-spm-f16-v2"].copy()
    j = next(i for i, t in enumerate(doc.tensors) if t.name == "rope_freqs.weight")
    factors = np.frombuffer(doc.tensors[j].data, np.float32).copy()
    factors[3] = 0.0
    doc.tensors[j] = replace(doc.tensors[j], data=factors.tobytes())
    msg = _load_error(fuzz, doc, tmp_path)
    assert "'rope_freqs.weight' holds 0.0 at 3" in msg, msg


def test_weights_that_compute_nan_are_a_numerical_error_not_a_traceback(fuzz, bases, tmp_path):
    """NaN scales in a weight matrix make every logit NaN: generating (greedy or sampled) says
    so instead of failing inside numpy or printing noise."""
    from slmprof.engine.model import Model
    from slmprof.errors import NumericalError
    doc = bases["llama-bpe-q8_0"].copy()
    j = next(i for i, t in enumerate(doc.tensors) if t.name == "blk.0.attn_output.weight")
    data = bytearray(doc.tensors[j].data)
    data[0:2] = b"\x00\x7e"                    # the first block's f16 scale: NaN
    doc.tensors[j] = replace(doc.tensors[j], data=bytes(data))
    path = tmp_path / "nan.gguf"
    path.write_bytes(fuzz.write_doc(doc))
    with Model.load(str(path), threads=1, ctx=64) as m:
        for kw in ({}, {"temperature": 0.8, "top_k": 5}):
            with pytest.raises(NumericalError, match=r"position \d+: \d+ of 320 logits are NaN"):
                list(m.generate("hello", max_tokens=2, **kw))


def test_the_sampler_takes_minus_infinity_but_not_nan():
    from slmprof.engine.sampling import Sampler
    from slmprof.errors import NumericalError
    logits = np.array([0.5, -np.inf, 2.0, 1.0], np.float32)
    assert Sampler().sample(logits) == 2
    assert Sampler(temperature=1.0, seed=3).sample(logits) != 1
    for bad in (np.nan, np.inf):
        logits[3] = bad
        for s in (Sampler(), Sampler(temperature=1.0)):
            with pytest.raises(NumericalError, match="1 of 4 logits are NaN or \\+infinity"):
                s.sample(logits)
