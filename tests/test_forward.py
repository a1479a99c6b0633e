"""The C forward pass against slmprof.engine.reference (numpy float64) on tiny models of each architecture and
weight type, plus batching, thread-count and bad-input checks.

Tolerances (logits compared relative to the reference logits' standard deviation, `std`):
- f32/f16 weights read f32 activations, so the engine and the float64 reference differ only by
  float32 rounding: 1e-4 * std (seen: ~1e-6).
- Quantized weights: the engine rounds each matmul input to Q8_0/Q8_1 (32 elements share one
  scale, step = max|x|/127). Against a reference that does the same rounding the difference is
  again float32 noise, except that a value lying within float32 noise of a rounding boundary
  can land one step apart ("a flip"); a flip in a key or value reaches every later token. So the
  strict comparison runs on many short sequences, most of which have no flip, and every
  sequence must stay within the float bound below.
- Against the pure float reference the activation rounding itself shows: each Q8 input carries
  an error of up to step/2 (~1.4% RMS of a Gaussian block), summed over the ~8 quantized matmul
  inputs on each path; measured 4-6% of std, bound 15%.
- Prefill against one token at a time: the batched and one-token kernels sum in different
  orders, so float32 noise (seen ~5e-7 * std), with the same flip caveat.
- Greedy tokens: wherever the reference's best logit leads the second by more than twice that
  bound, the engine must pick the same token.
"""
import importlib.util

import numpy as np
import pytest

from slmprof.analysis import roofline
from slmprof.errors import ContextOverflowError
from slmprof.engine.gguf import ModelShape
from slmprof.engine.model import Model
from slmprof.engine.registry import write_synthetic
from slmprof.engine.reference import ReferenceModel
from tiny_models import tiny, write_tiny_model

TYPES = ["f32", "f16", "q8_0", "q4_0", "q4_1"]
SHAPES = {
    # head_dim 16: attention outputs are quantized after a barrier, not per head
    "llama-tied": tiny(),
    # head_dim 32, one KV head for four query heads, rope_freqs, explicit output
    "llama-untied": tiny(dim=128, n_head=4, n_kv_head=1, tied=False, rope_freqs=True),
    "qwen2": tiny(arch="qwen2", dim=128, n_head=4, n_kv_head=2, tied=False),
    # per-head q/k norms, NEOX RoPE
    "qwen3": tiny(arch="qwen3", dim=128, n_head=4, n_kv_head=2, tied=False),
    # + scaled embeddings, post-norms, GELU; a window of 8 on layer 0 (40-token sequences
    # slide past it) with its own RoPE base; heads wider than the width (4 x 64 over 128)
    "gemma3": tiny(arch="gemma3", dim=128, n_head=4, n_kv_head=1, head_dim=64),
}
FLOAT_TOL, FLOAT_REF_TOL = 1e-4, 0.15


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    cache = {}

    def make(shape_name, type_name):
        key = (shape_name, type_name)
        if key not in cache:
            path = tmp_path_factory.mktemp("tiny") / f"{shape_name}-{type_name}.gguf"
            write_tiny_model(path, SHAPES[shape_name], type_name)
            cache[key] = path
        return cache[key]
    return make


def tokens(n, seed=1, vocab=320):
    return np.random.default_rng(seed).integers(0, vocab, n)


@pytest.mark.parametrize("type_name", TYPES)
@pytest.mark.parametrize("shape_name", list(SHAPES))
def test_logits_match_numpy_reference(tiny_path, shape_name, type_name):
    path = tiny_path(shape_name, type_name)
    seq = tokens(40)
    with Model.load(path, threads=2, ctx=64) as m:
        got = m.prefill(seq, all_logits=True).astype(np.float64)
        with ReferenceModel(path, quantize_activations=False) as ref:
            float_ref = ref.forward(seq)
        std = float_ref.std()
        assert np.abs(got - float_ref).max() <= FLOAT_REF_TOL * std

        with ReferenceModel(path, quantize_activations=True) as rounding_ref:
            if type_name in ("f32", "f16"):
                assert np.abs(got - rounding_ref.forward(seq)).max() <= FLOAT_TOL * std
            else:
                clean = 0
                for i in range(12):
                    short = tokens(4, seed=100 + i)
                    m.reset()
                    err = np.abs(m.prefill(short, all_logits=True) - rounding_ref.forward(short)).max()
                    assert err <= FLOAT_REF_TOL * std
                    clean += err <= FLOAT_TOL * std
                assert clean >= 9, f"only {clean}/12 short sequences match to float32 precision"

        # same greedy tokens where the reference is decisive
        top2 = np.sort(float_ref, axis=1)[:, -2:]
        decisive = top2[:, 1] - top2[:, 0] > 2 * FLOAT_REF_TOL * std
        same = got.argmax(1) == float_ref.argmax(1)
        assert same[decisive].all()
        assert same.mean() >= 0.9


@pytest.mark.parametrize("shape_name", list(SHAPES))
def test_prefill_batch_equals_token_by_token(tiny_path, shape_name):
    # Q4_1's offset term (m * s) cancels most of its scale term, so its one-token and batched
    # kernels' different summation orders tip Q8 roundings often in gemma3's wide-ranging
    # activations (scaled embeddings); real Gemma files hold no Q4_1: Q8_0 there
    path = tiny_path(shape_name, "q8_0" if shape_name == "gemma3" else "q4_1")
    with Model.load(path, threads=2, ctx=64) as m:
        # the batched (GEMM) and one-token (GEMV) kernels add the same products in a different
        # order: float32 noise, which can tip a Q8 rounding now and then (see the module doc);
        # a flip early in a sequence reaches every later token, so of three sequences one may
        # differ by more than noise, and none beyond the float bound
        flipped = 0
        for seed in (9, 8, 7):
            seq = tokens(30, seed=seed)
            m.reset()
            batch = m.prefill(seq, all_logits=True)
            assert m.n_past == len(seq)
            m.reset()
            one_by_one = np.stack([m.decode(t) for t in seq])
            try:
                assert_close_per_token(batch, one_by_one)
            except AssertionError:
                assert np.abs(batch - one_by_one).max() <= FLOAT_REF_TOL * one_by_one.std()
                flipped += 1
        assert flipped <= 1
        # last-token logits only (the LM head then runs on one row)
        m.reset()
        assert_close_per_token(m.prefill(seq)[None], batch[-1:])
        # a prompt in two pieces
        m.reset()
        m.prefill(seq[:11])
        assert_close_per_token(m.prefill(seq[11:], all_logits=True), batch[11:])


def assert_close_per_token(a, b):
    std = b.std()
    err = np.abs(a - b).max(axis=1)
    assert err.max() <= FLOAT_REF_TOL * std
    assert np.mean(err <= FLOAT_TOL * std) >= 0.9, err / std


def test_chunked_prefill_equals_one_batch(tiny_path):
    path = tiny_path("qwen2", "q8_0")
    seq = tokens(50, seed=3)
    with Model.load(path, threads=2, ctx=64) as whole, \
            Model.load(path, threads=2, ctx=64, max_batch=16) as chunked:
        assert_close_per_token(whole.prefill(seq, all_logits=True),
                               chunked.prefill(seq, all_logits=True))


@pytest.mark.parametrize("shape_name", list(SHAPES))
def test_same_results_for_any_thread_count(tiny_path, shape_name):
    path = tiny_path(shape_name, "q4_0")
    seq = tokens(20, seed=5)
    results = []
    for threads in (1, 2, 3):
        with Model.load(path, threads=threads, ctx=64) as m:
            assert m.threads == threads
            logits = m.prefill(seq, all_logits=True)
            decoded = [m.decode(t) for t in (3, 4, 5)]
            results.append((logits, decoded))
    for logits, decoded in results[1:]:
        np.testing.assert_array_equal(logits, results[0][0])
        np.testing.assert_array_equal(np.stack(decoded), np.stack(results[0][1]))


def test_f16_kv_cache_close_to_f32(tiny_path):
    path = tiny_path("llama-untied", "q8_0")
    seq = tokens(30, seed=9)
    with Model.load(path, threads=2, ctx=64) as a, Model.load(path, threads=2, ctx=64, kv_type="f16") as b:
        la, lb = a.prefill(seq, all_logits=True), b.prefill(seq, all_logits=True)
        # fp16 keeps 11 bits: ~5e-4 relative per cached value, well inside the Q8 noise bound
        assert np.abs(la - lb).max() <= FLOAT_REF_TOL * la.std()


def test_generate_greedy_follows_argmax(tiny_path):
    path = tiny_path("llama-tied", "q8_0")
    with Model.load(path, threads=2, ctx=64) as m:
        prompt = [1, 300, 301, 302]
        out = [t for t, _ in m.generate(prompt, max_tokens=8, stop_at_eos=False)]
        assert len(out) == 8
        m.reset()
        logits, expect = m.prefill(prompt), []
        for _ in range(8):
            expect.append(int(np.argmax(logits)))
            logits = m.decode(expect[-1])
        assert out == expect
        # sampling is reproducible with a seed and differs from greedy somewhere
        a = [t for t, _ in m.generate(prompt, max_tokens=8, temperature=1.5, seed=3, stop_at_eos=False)]
        b = [t for t, _ in m.generate(prompt, max_tokens=8, temperature=1.5, seed=3, stop_at_eos=False)]
        assert a == b


def test_generate_stops_at_full_context(tiny_path):
    path = tiny_path("llama-tied", "f32")
    with Model.load(path, threads=1, ctx=10) as m:
        out = list(m.generate([1, 5, 6, 7], max_tokens=100, stop_at_eos=False))
        assert len(out) == 10 - 4 + 1  # the last token is sampled but never run
        assert m.n_past == 10


def test_context_overflow(tiny_path):
    path = tiny_path("llama-tied", "q4_0")
    with Model.load(path, threads=2, ctx=16) as m:
        with pytest.raises(ContextOverflowError, match="context of 16"):
            m.prefill(tokens(17))
        assert m.n_past == 0
        m.prefill(tokens(16))
        with pytest.raises(ContextOverflowError):
            m.decode(3)
        with pytest.raises(ContextOverflowError):
            list(m.generate(list(tokens(20)), max_tokens=1))


@pytest.mark.parametrize("threads", [0, -1, 1.5, "2", True])
def test_bad_thread_count(tiny_path, threads):
    with pytest.raises(ValueError, match="threads"):
        Model.load(tiny_path("llama-tied", "q4_0"), threads=threads)


@pytest.mark.parametrize("ctx", [0, -5, 1 << 30, 2.0])
def test_bad_context_length(tiny_path, ctx):
    with pytest.raises(ValueError, match="ctx"):
        Model.load(tiny_path("llama-tied", "q4_0"), ctx=ctx)


def test_bad_tokens(tiny_path):
    with Model.load(tiny_path("llama-tied", "q4_0"), threads=1, ctx=16) as m:
        with pytest.raises(ValueError, match="vocabulary"):
            m.prefill([1, 320])
        with pytest.raises(ValueError, match="vocabulary"):
            m.decode(-1)
        with pytest.raises(ValueError, match="no tokens"):
            m.prefill([])


def test_closed_model_is_an_error(tiny_path):
    m = Model.load(tiny_path("llama-tied", "q4_0"), threads=1, ctx=16)
    m.close()
    with pytest.raises(ValueError, match="closed"):
        m.decode(1)


def test_region_names_and_costs(tiny_path):
    with Model.load(tiny_path("qwen2", "q4_1"), threads=1, ctx=32) as m:
        names = m.region_names()
        ids = [r for r, _, _ in names]
        assert len(ids) == len(set(ids))
        assert ("blk.1", "gate_up") in [(layer, op) for _, layer, op in names]
        wtypes = roofline.weight_types_from_tensors(m.description.tensors, m.config.tied)
        costs = roofline.layer_costs(m.config, wtypes, 0, 1, m.kv_type)
        weight_total = sum(c["weight_bytes"] for c in costs if c["op"] != "layer")
        # one token streams every weight once: the same count as weight_bytes_per_token
        assert weight_total == m.weight_bytes_per_token()
        assert all(c["bytes"] >= c["weight_bytes"] and c["ops"] >= 0 for c in costs)


def test_logits_of_the_last_tokens_only(tiny_path):
    seq = tokens(40, seed=11)
    with Model.load(tiny_path("qwen2", "f32"), threads=2, ctx=64, max_batch=16) as m:
        every = m.prefill(seq, all_logits=True)
        for last in (1, 5, 16, 17, 40):
            m.reset()
            got = m.prefill(seq, last=last)
            assert got.shape == (last, 320)
            np.testing.assert_allclose(got, every[-last:], rtol=0, atol=1e-5 * every.std())
        with pytest.raises(ValueError, match="last"):
            m.prefill(seq[:3], last=4)


@pytest.mark.parametrize("threads", [1, 2])
def test_engine_regions_tile_each_layer(tiny_path, threads):
    """With per-thread spans each operation gets its part of the pass's critical path: the
    operations add up to their layer exactly and the layers to the pass (from before the
    threads are woken to after the last one joined); with ops=False only layer regions run, at
    edges; results do not change."""
    from slmprof import _core
    with Model.load(tiny_path("qwen2", "q4_0"), threads=threads, ctx=32) as m:
        plain = [m.prefill([1, 2, 3, 4, 5]), m.decode(6), m.decode(7)]
        names = m.region_names()
        for ops in (True, False):
            table = _core.RegionTable(4096)
            table.keep_spans(1 << 16)
            m.reset()
            m.set_profiler(table, ops=ops)
            got = [m.prefill([1, 2, 3, 4, 5]), m.decode(6), m.decode(7)]
            m.set_profiler(None)
            for a, b in zip(plain, got):
                np.testing.assert_array_equal(a, b)
            assert table.errors == 0
            by_layer = {}
            for rid, layer, op in names:
                st = table.get(rid)
                if ops:
                    assert st["span_count"] == 3 and st["count"] == 0, (layer, op)
                    slot = by_layer.setdefault(layer, [0, 0])
                    slot[0 if op == "layer" else 1] += st["span_ns"]
                elif op == "layer":
                    assert st["count"] == 3 and st["span_count"] == 0 and not st["wall_only"]
                else:
                    assert st is None, (layer, op)
            if ops:
                for layer, (wall, op_sum) in by_layer.items():
                    assert op_sum == wall, layer
                calls = table.calls()
                passes = {int(c["call"]): int(c["t_end_ns"] - c["t_begin_ns"]) for c in calls}
                assert len(passes) == 3 and set(calls["thread"]) == set(range(threads))
                assert sum(w for w, _ in by_layer.values()) == sum(passes.values())
                spans = table.spans()
                assert len(spans) == 3 * (threads * (7 * 2 + 3) + 2 + 2) and table.spans_dropped == 0
            else:
                assert len(table.spans()) == 0


@pytest.mark.parametrize("thread,op,slot", [(0, "qkv", 2), (1, "qkv", 1), (1, "attn_norm", 2),
                                            (0, "ffn_norm", 1)])
def test_a_delayed_thread_lands_in_its_operation(tiny_path, thread, op, slot):
    """One worker sleeps inside one operation (csrc/model/model.c's test delay, inside the first
    work unit it takes there): the critical path puts the sleep in that operation, whether the
    others wait for the unit it holds (qkv) or go on without it (attn_norm, which each
    thread computes for itself: the pass then waits for the sleeper at its end); the operations
    around it keep their times."""
    from slmprof import _core
    from slmprof.engine.model import region_id
    delay_us = 20000
    with Model.load(tiny_path("qwen2", "q4_0"), threads=2, ctx=64) as m:
        table = _core.RegionTable(4096)
        table.keep_spans(1 << 16)
        m.set_profiler(table)
        m.prefill([1, 2, 3, 4, 5])
        target = region_id(slot, op)
        m.engine.debug_delay(thread, target, delay_us)
        table.reset()
        for token in range(12):
            m.decode(token + 3)
        m.engine.debug_delay(thread, target, 0)
        m.set_profiler(None)
        spans = table.spans()
        ops = spans[spans["thread"] >= 0]
        hit = 0
        for call in range(12):
            mine = ops[(ops["call"] == call) & (ops["thread"] == thread) & (ops["region"] == target)]
            if not mine["chunks"][0]:
                continue      # the others took every unit before the sleeper got one: no sleep
            hit += 1
            critical = ops[(ops["call"] == call) & (ops["thread"] == 0)]
            ms = {int(r): (int(c1) - int(c0)) / 1e6 for r, c0, c1 in
                  zip(critical["region"], critical["c0_ns"], critical["c1_ns"])}
            assert ms[target] >= 0.9 * delay_us / 1e3, (call, ms[target])
            # the rest of the pass together took far less than the sleep
            assert sum(v for r, v in ms.items() if r != target) < 0.5 * delay_us / 1e3, (call, ms)
        assert hit >= 1


def mapped_rss_bytes(path):
    """Resident bytes of this process's mappings of `path` (from /proc/self/smaps)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5:          # a mapping's header line
                inside = len(fields) >= 6 and fields[-1] == str(path)
            elif inside and fields[0] == "Rss:":
                total += int(fields[1]) * 1024
    return total


def test_repacked_weights_do_not_stay_resident_twice(tiny_model):
    """The engine gives back the file pages under matrices it repacked: the model is resident
    once (its repacked copy), not twice."""
    from slmprof.engine import quant
    path = tiny_model(type="q4_0", dim=512, ffn=2048, n_layer=2, n_head=8, n_kv_head=8).resolve()
    size = path.stat().st_size
    with Model.load(path, threads=1, ctx=16) as m:
        logits = m.prefill([1, 2, 3])
        assert np.isfinite(logits).all()
        resident = mapped_rss_bytes(path)
        if quant.active_isa() == "scalar":
            pytest.skip("the scalar path reads weights in place (nothing is repacked)")
        # what stays: the norms, the embedding rows looked up, pages shared at tensor edges
        assert resident < 0.25 * size, f"{resident} of {size} bytes of the file still resident"


def test_engine_layer_regions_keep_counters(tiny_path):
    """With counters, layer regions get counter deltas (the engine holds its threads at layer
    edges for the read) and operation regions stay wall-only; results do not change."""
    from slmprof.measure.counters import Counters
    from slmprof.measure.profiler import Profiler
    st = Counters(["task-clock"]).states[0]
    if not st.available:
        pytest.skip(f"no software counting here: {st.reason}")
    with Model.load(tiny_path("qwen2", "q4_0"), threads=2, ctx=32) as m:
        plain = m.prefill([1, 2, 3, 4, 5])
        prof = Profiler(events=["task-clock"])
        try:
            m.reset()
            m.set_profiler(prof.table)
            prof.attach_threads()
            np.testing.assert_array_equal(m.prefill([1, 2, 3, 4, 5]), plain)
            m.set_profiler(None)
            assert prof.errors == 0
            for rid, layer, op in m.region_names():
                r = prof.result(rid)
                if op == "layer":
                    assert r["counters"]["task-clock"].value > 0, layer
                else:
                    assert r["wall_only"] and r["counters"] == {}, (layer, op)
        finally:
            prof.close()


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                    reason="llama_cpp is not installed (pip install llama-cpp-python)")
@pytest.mark.parametrize("arch", ["qwen3", "gemma3"])
def test_qwen3_and_gemma3_match_llama_cpp(tmp_path, arch):
    """The architectures as llama.cpp runs them, on f32 weights: heads of 128 wider than the
    width, GQA, gemma3's window of 16 (llama.cpp fixes its pattern at 6) over 80 tokens.
    llama.cpp keeps its KV cache in f16 (and gemma's GELU in an f16 table): ~0.3% of std."""
    import llama_cpp
    extra = dict(sliding_window=16, sliding_window_pattern=6, rope_base_swa=10000.0) \
        if arch == "gemma3" else {}
    shape = ModelShape(arch=arch, n_layer=6, dim=256, ffn=512, n_head=4, n_kv_head=2,
                       head_dim=128, vocab=4096, ctx=4096, tied=True, rope_base=1e6,
                       rms_eps=1e-6, **extra)
    path = tmp_path / f"{arch}.gguf"
    write_synthetic(shape, "f32", path, seed=1, head_type="f32",
                    tokenizer=("gpt2", "qwen2") if arch == "qwen3" else ("llama", None))
    seq = [int(t) for t in tokens(80, seed=3, vocab=4000)]
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=128, n_threads=2, logits_all=True,
                          verbose=False)
    llm.eval(seq)
    ref = np.array(llm.scores[:len(seq)], dtype=np.float64)
    with Model.load(path, threads=2, ctx=128) as m:
        got = m.prefill(seq, all_logits=True).astype(np.float64)
    assert np.abs(got - ref).max() < 0.02 * ref.std()
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.95
