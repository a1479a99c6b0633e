"""GGML as an oracle: ctransformers (an older llama.cpp) runs the same tiny llama GGUF (SPM
vocabulary, explicit output.weight) and its logits must agree with the engine's.

ctransformers has been seen to segfault at interpreter exit after running a model, so it runs in
a subprocess that prints its logits as JSON and leaves with os._exit.

Tolerance, relative to the standard deviation of the engine's logits (std):
- GGML keeps K and V in fp16 and converts the query to fp16 for q.k (11-bit mantissa, ~5e-4
  relative per value). With f32/f16 weights that is the whole difference: seen ~1e-3 * std,
  bound 1e-2 * std.
- With quantized weights GGML rounds activations to Q8 with its own quantizer (it multiplies by
  127/max instead of dividing by the scale), and the fp16 cache perturbs the inputs of the next
  quantization: some elements land on the neighbouring Q8 step. The two runs then carry
  independent Q8 rounding noise, whose size is the activation-quantization error itself: seen
  2-6% of std (the same as the engine against a float reference), bound 15%.
- Greedy tokens agree wherever GGML's best logit leads its second by more than twice that bound.
"""
import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from slmprof.engine.model import Model
from tiny_models import tiny, write_tiny_model

pytestmark = [
    pytest.mark.peers,
    pytest.mark.skipif(importlib.util.find_spec("ctransformers") is None,
                       reason="ctransformers is not installed (pip install ctransformers==0.2.27)"),
]

ORACLE = r"""
import json, os, sys
from ctransformers import AutoModelForCausalLM
path, tokens = sys.argv[1], json.loads(sys.argv[2])
llm = AutoModelForCausalLM.from_pretrained(path, model_type="llama", context_length=64,
                                           threads=1, gpu_layers=0)
rows = []
for t in tokens:
    llm.eval([t], threads=1)
    rows.append(list(llm.logits))
sys.stdout.write(json.dumps(rows))
sys.stdout.flush()
os._exit(0)
"""

SHAPE = tiny(dim=128, n_head=4, n_kv_head=2, tied=False)
TOKENS = [1, 300, 301, 5, 17, 260, 99, 120, 3, 310, 42, 7, 280, 281, 64, 200, 201, 11, 12, 13]


def ggml_logits(path, tokens):
    out = subprocess.run([sys.executable, "-c", ORACLE, str(path), json.dumps(tokens)],
                         capture_output=True, text=True, timeout=300)
    if out.returncode != 0 or not out.stdout:
        pytest.fail(f"ctransformers failed (exit {out.returncode}): {out.stderr[-2000:]}")
    return np.array(json.loads(out.stdout), dtype=np.float64)


@pytest.mark.parametrize("type_name,tol", [("f32", 1e-2), ("f16", 1e-2), ("q8_0", 0.15),
                                           ("q4_0", 0.15), ("q4_1", 0.15)])
def test_logits_agree_with_ggml(tmp_path, type_name, tol):
    path = tmp_path / f"tiny-llama-{type_name}.gguf"
    write_tiny_model(path, SHAPE, type_name)
    ref = ggml_logits(path, TOKENS)
    with Model.load(path, threads=2, ctx=64, kv_type="f16") as m:
        assert m.tokenizer is not None and m.tokenizer.vocab_size == SHAPE.vocab
        ours = m.prefill(TOKENS, all_logits=True).astype(np.float64)
    assert ref.shape == ours.shape
    std = ours.std()
    err = np.abs(ours - ref).max(axis=1) / std
    assert err.max() <= tol, err
    top2 = np.sort(ref, axis=1)[:, -2:]
    decisive = top2[:, 1] - top2[:, 0] > 2 * tol * std
    assert (ours.argmax(1) == ref.argmax(1))[decisive].all()
