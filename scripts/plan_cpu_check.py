#!/usr/bin/env python3
"""The cost model `plan` uses, checked against the engine on one thread in CPU time.

On a shared machine the wall-clock proof (scripts/plan_vs_bench.py) measures the neighbours as
much as the model: a calibration pass of a few milliseconds and a bench run of seconds get
different shares of the cores. With one thread, the calling thread's CPU time leaves out the
time other processes held the core, for the calibration kernels (their rate per CPU second of
the thread, `median_per_cpu_s`) and for the engine alike. So this script builds the one-thread
ceilings from the engine's own calibration kernels in CPU time (the one-token product streaming
each weight type from memory in each of the engine's work units, decode attention with its KV
cache from memory and in cache, the cache-resident products, the read bandwidth), predicts
decode and prefill time per token with slmprof.analysis.plan.step_seconds (the same code as `plan`), and
times the engine's decode and prefill in CPU time, interleaved, for each model. Nothing is
learnt. What it cannot take out: memory bandwidth the neighbours use at the same time.

    python scripts/plan_cpu_check.py --models smollm2-135m,synth:tinyllama-1.1b:q8_0
"""
import argparse
import os
import sys
import time

DEFAULT_MODELS = ("smollm2-135m,synth:smollm2-135m:q8_0,synth:smollm2-360m:q4_0,synth:smollm2-360m:q8_0,"
                  "synth:qwen2.5-0.5b:q4_0,synth:qwen2.5-0.5b:q8_0,synth:tinyllama-1.1b:q4_0,"
                  "synth:tinyllama-1.1b:q4_1,synth:tinyllama-1.1b:q8_0,synth:llama-3.2-1b:q4_0")


def cpu_ceilings(seconds=0.3, array_bytes=256 << 20):
    """One-thread Ceilings from the calibration kernels, rates per CPU second."""
    from slmprof import _core
    from slmprof.measure import calibrate
    from slmprof.analysis import roofline
    from slmprof.engine import quant
    ids = {t: quant.type_id(t) for t in calibrate.DOT_TYPES}
    stream, stream_by_op, matvec, gemm = {}, {}, {}, {}
    for t in calibrate.DOT_TYPES:
        for pattern, (chunk, interleave) in calibrate.STREAM_PATTERNS.items():
            r = _core.calib_stream(ids[t], 1, calibrate.STREAM_ROWS, calibrate.STREAM_COLS, array_bytes,
                                   chunk, interleave, seconds)["median_per_cpu_s"]
            if pattern == "rows":
                stream[t] = r
            for op, p in calibrate.STREAM_PATTERN_OF_OP.items():
                if p == pattern:
                    stream_by_op.setdefault(op, {})[t] = r
        matvec[t] = _core.calib_matmul(ids[t], 1, calibrate.DOT_ROWS, calibrate.DOT_COLS, 1, seconds)["median_per_cpu_s"]
        gemm[t] = _core.calib_matmul(ids[t], 1, calibrate.DOT_ROWS, calibrate.DOT_COLS,
                                     calibrate.PREFILL_TOKENS, seconds)["median_per_cpu_s"]
    hd, pos = calibrate.ATTENTION_HEAD_DIM, calibrate.ATTENTION_POSITIONS
    layer = 2 * pos * calibrate.ATTENTION_KV_HEADS * hd * 4
    attention = _core.calib_attention(1, array_bytes, hd, pos, seconds)["median_per_cpu_s"]
    cached = _core.calib_attention(1, layer, hd, pos, seconds)["median_per_cpu_s"]
    read = _core.calib_memory("read", 1, array_bytes, seconds, 50)["median_per_cpu_s"]
    fma = _core.calib_fma(1, seconds)["median_per_cpu_s"]
    return roofline.Ceilings(threads=1, bandwidth=read, fma=fma, matvec=matvec, gemm=gemm, stream=stream,
                             stream_by_op=stream_by_op, attention=attention, attention_cached=cached,
                             attention_ops_per_kv_byte=calibrate.ATTENTION_OPS_PER_KV_BYTE)


def engine_cpu_seconds(path, prompt_tokens, gen_tokens, reps):
    """(decode seconds per token, prefill seconds per token), CPU time of the one engine thread,
    the fastest of `reps` runs."""
    from slmprof.engine.model import Model
    model = Model.load(str(path), threads=1, ctx=prompt_tokens + gen_tokens + 1)
    try:
        dec, pre = [], []
        for _ in range(reps):
            model.reset()
            c0 = time.thread_time()
            model.prefill(list(range(1, prompt_tokens + 1)))
            pre.append((time.thread_time() - c0) / prompt_tokens)
            c0 = time.thread_time()
            for i in range(gen_tokens):
                model.decode(5 + i)
            dec.append((time.thread_time() - c0) / gen_tokens)
        return min(dec), min(pre)
    finally:
        model.close()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=DEFAULT_MODELS)
    p.add_argument("--prompt-tokens", type=int, default=128)
    p.add_argument("--gen-tokens", type=int, default=64)
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args(argv)
    from slmprof.analysis import plan as planner
    from slmprof.engine import registry
    load0 = os.getloadavg()[0]
    rows = []
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        path = registry.resolve(model).path
        cand = planner.candidates_for(str(path))[0]
        ceilings = cpu_ceilings()          # again for every model: the neighbours' memory traffic moves
        decode_at = args.prompt_tokens + args.gen_tokens // 2
        t_dec = planner.step_seconds(cand, ceilings, decode_at, 1)[0]
        t_pre = planner.step_seconds(cand, ceilings, 0, args.prompt_tokens)[0] / args.prompt_tokens
        m_dec, m_pre = engine_cpu_seconds(path, args.prompt_tokens, args.gen_tokens, args.reps)
        rows.append((model, cand.type.split(" ")[0], 1 / t_dec, 1 / m_dec, 1 / t_pre, 1 / m_pre, os.getloadavg()[0]))
        print(f"{model}: decode predicted {1 / t_dec:.1f} measured {1 / m_dec:.1f} tok/s per CPU second; "
              f"prefill {1 / t_pre:.1f} / {1 / m_pre:.1f}", file=sys.stderr, flush=True)
    print(f"plan's cost model vs the engine, 1 thread, tokens per CPU second (prompt {args.prompt_tokens}, "
          f"decode at {args.prompt_tokens + args.gen_tokens // 2}); ceilings from the calibration kernels "
          f"per CPU second, nothing learnt\n")
    print("| model | type | decode predicted | decode measured | error | prefill predicted | prefill measured | error | load |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for model, t, pd, md, pp, mp, load in rows:
        print(f"| {model} | {t} | {pd:.1f} | {md:.1f} | {pd / md - 1:+.0%} | {pp:.1f} | {mp:.1f} | "
              f"{pp / mp - 1:+.0%} | {load:.1f} |")
    for name, i, j, target in (("decode", 2, 3, 0.2), ("prefill", 4, 5, 0.3)):
        errs = [abs(r[i] / r[j] - 1) for r in rows]
        print(f"\n{name}: {sum(e <= target for e in errs)}/{len(errs)} within ±{target:.0%}; mean |error| "
              f"{sum(errs) / len(errs):.0%}, max {max(errs):.0%}", end="")
    print(f"\nload average (1 min) {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
