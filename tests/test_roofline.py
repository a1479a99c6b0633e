"""The cost model against independent counts, the verdict rule, and real kernels of known
character measured here and given the verdict they must get."""
import json
import time

import numpy as np
import pytest

from slmprof import _core, report

from slmprof.measure import calibrate

from slmprof.analysis import roofline
from slmprof.engine import quant
from slmprof.engine.gguf import ModelShape
from slmprof.engine.model import OP_NAMES, block_ops
from slmprof.engine.registry import SHAPES

SMOL = SHAPES["smollm2-135m"]


def smol_types():
    return roofline.weight_types_for(SMOL, "q4_1", embd_type="q8_0")


def test_decode_weight_bytes_match_the_shape_count():
    costs = roofline.op_costs(SMOL, smol_types(), n_past=0, n_tok=1)
    weights = sum(c.weight_bytes for c in costs)
    assert weights == SMOL.weight_bytes_per_token("q4_1", embd_type="q8_0")
    # the well-known figure for this model: ~96 MB streamed per decoded token
    assert 90e6 < weights < 100e6


def test_matmul_ops_are_two_per_weight():
    shape = SHAPES["tiny-llama"]
    costs = roofline.op_costs(shape, roofline.weight_types_for(shape, "q8_0"), 0, 3, n_logits=3)
    mm = sum(c.ops for c in costs if c.kind == "matmul")
    n2d = sum(int(np.prod(s)) for n, s in shape.tensor_shapes().items()
              if len(s) == 2 and n != "token_embd.weight")
    n2d += shape.dim * shape.vocab  # tied LM head
    rope = 3 * (shape.q_dim + shape.kv_dim) * 3
    swiglu = 3 * shape.ffn * roofline.SWIGLU_OPS_PER_ELEM * shape.n_layer
    assert mm == 2 * 3 * n2d + rope * shape.n_layer + swiglu


def test_kv_traffic_grows_with_position():
    t = smol_types()
    a = {c.region: c for c in roofline.op_costs(SMOL, t, n_past=0, n_tok=1)}
    b = {c.region: c for c in roofline.op_costs(SMOL, t, n_past=1000, n_tok=1)}
    attn = roofline.region_id(1, "rope_attn")
    kv_row = 2 * SMOL.kv_dim * 4
    assert a[attn].kv_read_bytes == kv_row and b[attn].kv_read_bytes == 1001 * kv_row
    assert b[attn].ops > 900 * a[attn].ops
    qkv = roofline.region_id(1, "qkv")
    assert a[qkv].kv_write_bytes == b[qkv].kv_write_bytes == kv_row
    f16 = {c.region: c for c in roofline.op_costs(SMOL, t, 1000, 1, kv_type="f16")}
    assert f16[attn].kv_read_bytes * 2 == b[attn].kv_read_bytes


def test_prefill_streams_weights_once_and_lm_head_only_for_logits():
    t = smol_types()
    one = sum(c.weight_bytes for c in roofline.op_costs(SMOL, t, 0, 1))
    many = roofline.op_costs(SMOL, t, 0, 64)
    embed_extra = 63 * roofline.tensor_bytes("q8_0", 1, SMOL.dim)
    assert sum(c.weight_bytes for c in many) == one + embed_extra
    head = [c for c in many if c.op == "lm_head"][0]
    assert head.ops == 2 * SMOL.dim * SMOL.vocab


def test_layer_rows_sum_their_operations_and_regions_are_the_engines():
    rows = roofline.layer_costs(SMOL, smol_types(), 10, 1)
    layers = [r for r in rows if r["op"] == "layer"]
    assert [r["layer"] for r in layers] == ["embedding"] + [f"block {i}" for i in range(30)] + ["output"]
    for lr in layers:
        ops = [r for r in rows if r["slot"] == lr["slot"] and r["op"] != "layer"]
        assert lr["bytes"] == sum(r["bytes"] for r in ops)
        assert lr["ops"] == sum(r["ops"] for r in ops)
        assert lr["region"] == lr["slot"] * len(OP_NAMES)
    assert roofline.region_id(31, "lm_head") == 31 * len(OP_NAMES) + OP_NAMES.index("lm_head")


def test_gemma3_operations_window_and_tied_head():
    """Gemma 3 270M: the operations the engine runs, KV reads bounded by the window on five
    layers of six, and the 262144 x 640 embedding streamed whole as the LM head."""
    g = SHAPES["gemma3-270m"]
    types = roofline.weight_types_for(g, "q4_0", embd_type="q8_0")
    costs = roofline.op_costs(g, types, n_past=1000, n_tok=1)
    block0 = [c.op for c in costs if c.slot == 1]
    assert block0 == list(block_ops("gemma3")) == [
        "attn_norm", "qkv", "qk_norm", "rope_attn", "attn_out", "attn_post_norm", "ffn_norm",
        "gate_up", "gelu", "down", "ffn_post_norm"]
    kv_row = 2 * g.kv_dim * 4
    reads = [c.kv_read_bytes for c in costs if c.op == "rope_attn"]
    assert reads == [(1001 if layer % 6 == 5 else 512) * kv_row for layer in range(18)]
    head = next(c for c in costs if c.op == "lm_head")
    assert head.weight_bytes == 262144 * 640 // 32 * 34 and 175e6 < head.weight_bytes < 180e6
    assert g.n_params() - 262144 * 640 < 0.4 * g.n_params()      # the embedding is most of it
    # keys are written where they are normed, values with the products
    qkv, qk = next(c for c in costs if c.op == "qkv"), next(c for c in costs if c.op == "qk_norm")
    assert qkv.kv_write_bytes == qk.kv_write_bytes == kv_row // 2
    gelu = next(c for c in costs if c.op == "gelu")
    assert gelu.ops == g.ffn * roofline.GELU_OPS_PER_ELEM and gelu.weight_bytes == 0
    assert roofline.engine_waits(g, 1) == 18 * 9 + 3 and roofline.engine_waits(g, 8) == 18 * 11 + 3
    # early positions read only what exists; a prompt of 600 reads its last 512 + 599
    early = roofline.op_costs(g, types, n_past=10, n_tok=1)
    assert [c.kv_read_bytes for c in early if c.op == "rope_attn"] == [11 * kv_row] * 18


def test_per_block_weight_types_from_a_mixed_file():
    class T:
        def __init__(self, name):
            self.type = quant.type_info(name).id
    tensors = {"token_embd.weight": T("q8_0")}
    for i in range(4):
        for key in roofline.BLOCK_WEIGHTS:
            tensors[f"blk.{i}.{key}.weight"] = T("q8_0" if key == "attn_v" and i % 2 else "q4_0")
    table = roofline.weight_types_from_tensors(tensors, tied=True)
    assert [b["attn_v"] for b in table["blocks"]] == ["q4_0", "q8_0", "q4_0", "q8_0"]
    shape = ModelShape(arch="llama", n_layer=4, dim=64, ffn=96, n_head=4, n_kv_head=2,
                       head_dim=16, vocab=384, ctx=128, tied=True)
    qkv = [c.weight_bytes for c in roofline.op_costs(shape, table, 0, 1) if c.op == "qkv"]
    assert qkv[1] - qkv[0] == roofline.tensor_bytes("q8_0", 32, 64) - roofline.tensor_bytes("q4_0", 32, 64)
    uniform = {k: v for k, v in tensors.items() if "attn_v" not in k or "blk.1" not in k and "blk.3" not in k}
    for i in (1, 3):
        uniform[f"blk.{i}.attn_v.weight"] = T("q4_0")
    assert "blocks" not in roofline.weight_types_from_tensors(uniform, tied=True)


def test_qwen2_biases_and_untied_head():
    shape = SHAPES["tiny-qwen2"]
    costs = roofline.op_costs(shape, roofline.weight_types_for(shape, "q8_0"), 0, 1)
    qkv = [c for c in costs if c.op == "qkv"][0]
    plain = ModelShape(**{**shape.__dict__, "arch": "llama"})
    qkv_plain = [c for c in roofline.op_costs(plain, roofline.weight_types_for(plain, "q8_0"), 0, 1)
                 if c.op == "qkv"][0]
    assert qkv.weight_bytes - qkv_plain.weight_bytes == (shape.q_dim + 2 * shape.kv_dim) * 4
    untied = SHAPES["tinyllama-1.1b"]
    tt = roofline.weight_types_for(untied, "q4_0", embd_type="q8_0")
    assert tt["output"] == "q4_0"


def test_bad_types_and_shapes_are_refused():
    from slmprof.errors import ShapeError, UnsupportedError
    with pytest.raises(UnsupportedError):
        quant.type_name("iq2_xxs")
    with pytest.raises(ShapeError):
        roofline.tensor_bytes("q4_0", 1, 33)
    with pytest.raises(ValueError):
        roofline.op_costs(SMOL, smol_types(), 0, 0)


def test_verdict_rule():
    assert roofline.verdict(1.0, 0.2, 1.5) == "memory-bound"
    assert roofline.verdict(0.2, 1.0, 1.5) == "compute-bound"
    assert roofline.verdict(0.2, 0.3, 1.0) == "overhead-bound"
    assert roofline.verdict(0.5, 0.0, 1.0) == "memory-bound"  # exactly half explained
    assert roofline.verdict(0.0, 0.0, 0.0) == "overhead-bound"
    c = roofline.Ceilings(threads=1, bandwidth=10e9, fma=100e9, dot={"q4_0": 40e9})
    assert c.peak("matmul", "q4_0") == 40e9 and c.peak("matmul", "f32") == 100e9
    assert c.ridge == pytest.approx(4.0)
    assert roofline.attainable(1.0, 40e9, 10e9) == 10e9
    a = roofline.analyze(10e9, 1e9, 2.0, c, "matmul", "q4_0")
    assert a["verdict"] == "memory-bound" and a["gb_per_s"] == pytest.approx(5.0)
    assert a["bandwidth_pct"] == pytest.approx(50.0) and a["explained"] == pytest.approx(0.5)


def test_the_verdict_keeps_memory_and_kernels_apart():
    """The verdict's t_mem is bytes over the read loop of the pages the data lives in (huge
    pages for repacked weights, 4 KiB for the rest and the KV cache) and its t_compute operations
    over a kernel's cache-resident rate; the engine's streaming figures never enter it."""
    c = roofline.Ceilings(threads=1, bandwidth=20e9, fma=100e9, matvec={"q4_0": 50e9},
                          stream={"q4_0": 10e9}, attention=5e9, attention_cached=40e9,
                          bandwidth_huge=30e9, repacked=("q4_0",))
    costs = roofline.op_costs(SMOL, roofline.weight_types_for(SMOL, "q4_0"), 100, 1)
    qkv = next(x for x in costs if x.op == "qkv")
    t_mem, t_cmp = c.times(qkv)
    assert t_mem == pytest.approx(qkv.weight_bytes / 30e9 + qkv.kv_write_bytes / 20e9)
    assert t_cmp == pytest.approx(qkv.ops / 50e9)
    attn = next(x for x in costs if x.op == "rope_attn")
    assert c.times(attn) == pytest.approx((attn.kv_read_bytes / 20e9, attn.ops / 40e9))
    norm = next(x for x in costs if x.op == "attn_norm")
    assert c.times(norm)[0] == pytest.approx(norm.weight_bytes / 20e9)   # f32, from the file
    f16 = roofline.op_costs(SMOL, roofline.weight_types_for(SMOL, "f16"), 100, 1)
    down16 = next(x for x in f16 if x.op == "down")
    assert c.times(down16)[0] == pytest.approx(down16.weight_bytes / 20e9)  # not repacked
    c.kv_huge = True
    assert c.times(attn)[0] == pytest.approx(attn.kv_read_bytes / 30e9)
    rule = roofline.verdict_rule(c)
    assert "q4_0 weights (copied into huge pages at load) at 30.0 GB/s" in rule and "20.0 GB/s" in rule


def test_engine_times_are_what_the_engine_achieves():
    """Plan's bound: a one-token matmul's weights at the engine's streaming rate for their
    type, KV traffic at the read bandwidth, attention at the engine's attention rate."""
    c = roofline.Ceilings(threads=1, bandwidth=20e9, fma=100e9, matvec={"q4_0": 50e9},
                          stream={"q4_0": 10e9}, attention=5e9)
    costs = roofline.op_costs(SMOL, roofline.weight_types_for(SMOL, "q4_0"), 100, 1)
    qkv = next(x for x in costs if x.op == "qkv")
    t_mem, t_cmp = c.engine_times(qkv)
    assert t_mem == pytest.approx(qkv.weight_bytes / 10e9 + qkv.kv_write_bytes / 20e9)
    assert t_cmp == pytest.approx(qkv.ops / 50e9)
    attn = next(x for x in costs if x.op == "rope_attn")
    assert c.engine_times(attn) == pytest.approx((attn.kv_read_bytes / 20e9, attn.ops / 5e9))
    prefill = roofline.op_costs(SMOL, roofline.weight_types_for(SMOL, "q4_0"), 0, 16)
    down = next(x for x in prefill if x.op == "down")
    assert c.engine_times(down)[0] == pytest.approx(down.weight_bytes / 20e9)
    assert roofline.engine_waits(SMOL, 1) == 30 * 5 + 3
    # with the in-cache figure too: arithmetic in cache plus the extra time of each KV byte
    # from memory, as the calibration (1.5 operations per KV byte) measured it
    c.attention_cached, c.attention_ops_per_kv_byte = 20e9, 1.5
    per_byte = (1 / 5e9 - 1 / 20e9) * 1.5
    assert c.engine_times(attn)[1] == pytest.approx(attn.ops / 20e9 + attn.kv_read_bytes * per_byte)


def test_a_small_model_streams_from_the_last_level_cache():
    """Plan's stream for a model that fits the last-level cache: per byte the in-cache time for
    the share of the way the reference ladder says a working set that size keeps, the memory
    time for the rest; a model beyond the ladder's end, or no cache to speak of, is all memory."""
    mib = 1 << 20
    ladder = ((16 * mib, 40e9), (64 * mib, 40e9), (128 * mib, 20e9), (1024 * mib, 10e9))
    c = roofline.Ceilings(threads=2, bandwidth=30e9, fma=100e9, stream_by_op={"down": {"q4_0": 12e9}},
                          stream_by_op_in_cache={"down": {"q4_0": 36e9}}, stream_ladder=ladder)
    assert c.cache_share(None) == 0.0 and c.cache_share(8 * mib) == 1.0 and c.cache_share(64 * mib) == 1.0
    assert c.cache_share(2048 * mib) == 0.0
    # at 128 MiB the reference takes 1/20e9 per byte, a third of the way from 1/10e9 to 1/40e9
    assert c.cache_share(128 * mib) == pytest.approx((1 / 10e9 - 1 / 20e9) / (1 / 10e9 - 1 / 40e9))
    assert 0 < c.cache_share(96 * mib) < 1 and c.cache_share(96 * mib) > c.cache_share(128 * mib)
    assert c.weight_bandwidth("matmul", "q4_0", 1, "down") == 12e9           # no working set: memory
    c.working_set = 32 * mib
    assert c.weight_bandwidth("matmul", "q4_0", 1, "down") == pytest.approx(36e9)
    c.working_set = 128 * mib
    share = c.cache_share(128 * mib)
    assert c.weight_bandwidth("matmul", "q4_0", 1, "down") == pytest.approx(1 / (share / 36e9 + (1 - share) / 12e9))
    assert c.weight_bandwidth("matmul", "q4_0", 16, "down") == 30e9          # prefill: the memory ceiling
    bumpy = roofline.Ceilings(threads=2, bandwidth=30e9, fma=100e9,
                              stream_ladder=((16 * mib, 40e9), (64 * mib, 20e9), (128 * mib, 30e9), (1024 * mib, 10e9)))
    assert bumpy.cache_share(128 * mib) == pytest.approx(bumpy.cache_share(64 * mib))   # a noisy rise is no cache
    flat = roofline.Ceilings(threads=2, bandwidth=30e9, fma=100e9, stream_ladder=((16 * mib, 10.2e9), (1024 * mib, 10e9)))
    assert flat.cache_share(16 * mib) == 0.0
    again = roofline.Ceilings.from_report(c.as_report())
    assert again.stream_ladder == ladder and again.weight_bandwidth("matmul", "q4_0", 1, "down") == \
        c.weight_bandwidth("matmul", "q4_0", 1, "down")


def test_a_stream_over_longer_rows_is_interpolated_between_the_two_measured_lengths():
    """Plan's stream for an operation whose weight rows are between the two calibrated lengths:
    per byte the time interpolated in log(row length); outside them the nearer end holds; a
    table without the long figure, or an operation that is not measured long, keeps the one
    figure."""
    c = roofline.Ceilings(threads=2, bandwidth=30e9, fma=100e9, stream_by_op={"down": {"q4_0": 10e9}, "qkv": {"q4_0": 10e9}},
                          stream_by_op_long={"down": {"q4_0": 20e9}}, stream_row_lengths=(1024, 4096))
    assert c.weight_bandwidth("matmul", "q4_0", 1, "down", 1024) == pytest.approx(10e9)
    assert c.weight_bandwidth("matmul", "q4_0", 1, "down", 4096) == pytest.approx(20e9)
    assert c.weight_bandwidth("matmul", "q4_0", 1, "down", 2048) == pytest.approx(1 / (0.5 / 10e9 + 0.5 / 20e9))
    assert c.weight_bandwidth("matmul", "q4_0", 1, "down", 576) == pytest.approx(10e9)      # held at the ends
    assert c.weight_bandwidth("matmul", "q4_0", 1, "down", 16384) == pytest.approx(20e9)
    assert c.weight_bandwidth("matmul", "q4_0", 1, "qkv", 4096) == pytest.approx(10e9)      # not measured long
    assert c.weight_bandwidth("matmul", "q4_0", 1, "down") == pytest.approx(10e9)           # no row length given
    down = next(x for x in roofline.op_costs(SMOL, roofline.weight_types_for(SMOL, "q4_0"), 0, 1) if x.op == "down")
    assert down.row_length == SMOL.ffn
    assert c.engine_times(down)[0] == pytest.approx(down.weight_bytes / c.weight_bandwidth("matmul", "q4_0", 1, "down", SMOL.ffn))
    again = roofline.Ceilings.from_report(c.as_report())
    assert again.weight_bandwidth("matmul", "q4_0", 1, "down", 2048) == c.weight_bandwidth("matmul", "q4_0", 1, "down", 2048)
    short_only = roofline.Ceilings(threads=2, bandwidth=30e9, fma=100e9, stream_by_op={"down": {"q4_0": 10e9}},
                                   stream_by_op_long={"down": {"q4_0": 20e9}})
    assert short_only.weight_bandwidth("matmul", "q4_0", 1, "down", 4096) == pytest.approx(10e9)
    same = roofline.Ceilings(threads=2, bandwidth=30e9, fma=100e9, stream_by_op={"down": {"q4_0": 10e9}},
                             stream_by_op_long={"down": {"q4_0": 20e9}}, stream_row_lengths=(1024, 1024))
    assert same.weight_bandwidth("matmul", "q4_0", 1, "down", 4096) == pytest.approx(10e9)  # no span to interpolate


def test_a_parallel_product_loses_part_of_its_last_work_unit():
    """Decode's products are claimed in work units (a head of q/k/v, 48 rows of wo and down, 96
    of gate and up, or down's activation block if longer, 512 of the LM head); with T threads a
    step trails their mean work by (T - 1) / T of one unit's time on one thread. Nothing at one
    thread, in a prefill, or from a profile without the engine's own streaming figures."""
    wt = roofline.weight_types_for(SMOL, "q4_0")
    costs = {c.op: c for c in roofline.op_costs(SMOL, wt, 0, 1) if c.slot in (1, SMOL.n_layer + 1)}
    rb = quant.row_bytes("q4_0", SMOL.dim)
    assert costs["qkv"].unit_bytes == SMOL.head_dim * rb
    assert costs["attn_out"].unit_bytes == 48 * quant.row_bytes("q4_0", SMOL.n_head * SMOL.head_dim)
    assert costs["gate_up"].unit_bytes == 2 * 96 * rb
    assert costs["down"].unit_bytes == 48 * quant.row_bytes("q4_0", SMOL.ffn)
    assert costs["lm_head"].unit_bytes == 512 * rb
    assert costs["attn_norm"].unit_bytes == 0 and costs["rope_attn"].unit_bytes == 0
    assert roofline.ffn_unit_rows("q4_k") == 256          # down's input quantized in 256-element blocks
    assert all(c.unit_bytes == 0 for c in roofline.op_costs(SMOL, wt, 0, 8) if c.op != "lm_head")
    stream = {"q4_0": 8e9}
    two = roofline.Ceilings(threads=2, bandwidth=30e9, fma=100e9, stream=stream)
    down = costs["down"]
    assert roofline.unit_wait_seconds([down], two) == pytest.approx(0.5 * down.unit_bytes / 4e9)
    four = roofline.Ceilings(threads=4, bandwidth=30e9, fma=100e9, stream=stream)
    assert roofline.unit_wait_seconds([down], four) == pytest.approx(0.75 * down.unit_bytes / 2e9)
    assert roofline.unit_wait_seconds([down], roofline.Ceilings(threads=1, bandwidth=30e9, fma=100e9, stream=stream)) == 0
    assert roofline.unit_wait_seconds([down], roofline.Ceilings(threads=2, bandwidth=30e9, fma=100e9)) == 0
    # past the calibrated threads, the calibrated count's figures and waits stand
    past = roofline.Ceilings(threads=8, bandwidth=30e9, fma=100e9, stream=stream, calibrated_threads=2)
    assert roofline.unit_wait_seconds([down], past) == roofline.unit_wait_seconds([down], two)


def test_a_rate_above_a_ceiling_is_flagged():
    assert roofline.ceiling_flags(1.0, 0.1, 1.05) == []
    mem = roofline.ceiling_flags(1.2, 0.1, 1.0, nbytes=1e9, ops=1e8)
    assert len(mem) == 1 and mem[0].startswith("above the memory ceiling") and "cache" in mem[0]
    both = roofline.ceiling_flags(1.2, 1.3, 1.0, nbytes=1e9, ops=1e8)
    assert len(both) == 2 and both[1].startswith("above the compute ceiling")
    c = roofline.Ceilings(threads=1, bandwidth=10e9, fma=100e9)
    assert roofline.analyze(1e9, 1, 0.05, c, kind="elementwise")["flags"]


def test_ceilings_travel_through_a_report():
    """A `layers` report carries every ceiling its verdicts used (the attention's too), so that a
    reader of the report (the roofline picture) rebuilds the same ceilings."""
    c = roofline.Ceilings(threads=2, bandwidth=20e9, fma=float("inf"), dot={"q4_0": 40e9},
                          matvec={"q4_0": 50e9}, gemm={"q4_0": 70e9}, attention=5e9,
                          attention_cached=20e9, attention_ops_per_kv_byte=1.5, isa="avx2")
    back = roofline.Ceilings.from_report(json.loads(report.to_json({"c": c.as_report()}))["c"])
    costs = roofline.op_costs(SMOL, roofline.weight_types_for(SMOL, "q4_0"), 100, 1)
    assert [back.times(x) for x in costs] == [c.times(x) for x in costs]
    assert (back.attention, back.attention_cached, back.attention_ops_per_kv_byte) == (5e9, 20e9, 1.5)
    assert back.fma == float("inf")     # JSON's null: no FMA figure, as before


def test_ideal_tokens_per_second():
    c = roofline.Ceilings(threads=2, bandwidth=20e9, fma=200e9, dot={"q4_1": 1e15, "q8_0": 1e15})
    tps = roofline.ideal_tokens_per_s(SMOL, smol_types(), c)
    wb = SMOL.weight_bytes_per_token("q4_1", embd_type="q8_0")
    assert tps == pytest.approx(20e9 / (wb + 2 * SMOL.kv_dim * 4 * 30 * 2), rel=0.02)


# ---- real kernels of known character, measured on this machine -------------------------------

@pytest.fixture(scope="module")
def ceilings():
    """One thread's ceilings measured as calibrate measures them (the read loop over arrays 8x
    the last-level cache in 4 KiB pages, the f32 FMA peak, the engine's cache-resident one-token
    q8_0 product): only what these verdicts use, not a whole calibration."""
    bandwidth = _core.calib_memory("read", 1, calibrate.default_array_bytes(), 0.1)["best_per_s"]
    fma = _core.calib_fma(1, 0.06)["best_per_s"]
    matvec = {}
    try:
        matvec["q8_0"] = _core.calib_matmul(quant.type_id("q8_0"), 1, calibrate.DOT_ROWS,
                                            calibrate.DOT_COLS, 1, 0.06)["best_per_s"]
    except Exception as e:  # no int8 kernel in this build: matmuls fall back to the FMA peak
        assert type(e).__name__ == "UnavailableError", e
    return roofline.Ceilings(threads=1, bandwidth=bandwidth, fma=fma, matvec=matvec)


def best_of(fn, repeats=3):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def test_streaming_read_far_beyond_the_cache_is_memory_bound(ceilings):
    n_bytes = calibrate.default_array_bytes()     # as far beyond the cache as calibrate reads
    a = np.ones(n_bytes // 8, dtype=np.uint64)
    seconds = best_of(a.sum)
    result = roofline.analyze(n_bytes, n_bytes // 8, seconds, ceilings, kind="elementwise")
    assert result["verdict"] == "memory-bound", result


def test_cache_resident_dot_loop_is_compute_bound(ceilings):
    """The engine's own one-token product over a 64 x 1024 q8_0 block that stays in cache: every
    pass re-reads the same block, so its bytes come from memory once over all passes. Timed
    at the fastest pass's rate: on a shared machine the slow ones measure the neighbours."""
    try:
        r = _core.calib_matmul(8, 1, 64, 1024, 1, 0.1)
        kind, wtype = "matmul", "q8_0"
    except Exception as e:  # no int8 kernel in this build: the f32 FMA chains are the loop
        assert type(e).__name__ == "UnavailableError", e
        r = _core.calib_fma(1, 0.1)
        kind, wtype = "attention", None
    ops = r["work_per_pass"] * r["passes"]
    block = 64 * roofline.tensor_bytes("q8_0", 1, 1024)
    result = roofline.analyze(block, ops, ops / r["best_per_s"], ceilings, kind=kind, weight_type=wtype)
    assert result["verdict"] == "compute-bound", result


def test_tiny_op_dominated_by_call_overhead_is_overhead_bound(ceilings):
    x = np.ones(16, dtype=np.float32)
    y = np.empty_like(x)
    seconds = best_of(lambda: np.add(x, x, out=y), repeats=50)
    result = roofline.analyze(3 * x.nbytes, x.size, seconds, ceilings, kind="elementwise")
    assert result["verdict"] == "overhead-bound", result


def test_one_token_product_limited_by_its_unpacking_is_compute_bound(ceilings):
    """The scalar path's one-token Q4_0 product streaming its weight from memory: unpacking
    the nibbles one by one holds it far below what memory delivers, so its time is its
    operations at its own cache-resident rate: compute-bound. (The old rule took t_mem from this
    very streaming rate, which makes any such product memory-bound by construction.)"""
    q4_0 = quant.type_id("q4_0")
    with quant.force_isa("scalar"):
        cached = _core.calib_matmul(q4_0, 1, 64, 1024, 1, 0.1)
        stream = _core.calib_stream(q4_0, 1, 1024, 1024, 64 << 20, 48, 1, 0.2)
    weight_bytes = stream["work_per_pass"]
    ops = 2 * 1024 * 1024 * weight_bytes // roofline.tensor_bytes("q4_0", 1024, 1024)
    seconds = weight_bytes / stream["best_per_s"]
    c = roofline.Ceilings(threads=1, bandwidth=ceilings.bandwidth, fma=ceilings.fma,
                          matvec={"q4_0": cached["best_per_s"]}, stream={"q4_0": stream["best_per_s"]})
    result = roofline.analyze(weight_bytes, ops, seconds, c, kind="matmul", weight_type="q4_0")
    assert result["verdict"] == "compute-bound", result
    # what this engine achieves streaming it is no ceiling: judged by it, it would be memory-bound
    cost = roofline.OpCost(1, "block 0", "down", 0, weight_bytes, 0, 0, ops, "matmul", "q4_0", 1)
    assert roofline.verdict(*c.engine_times(cost), seconds) == "memory-bound"
