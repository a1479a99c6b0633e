#!/usr/bin/env python3
"""Kernel benchmark: decode (gemv) bandwidth and prefill (gemm) throughput on real SLM shapes.

Timing loops run in C (slm_bench_matmul) with the engine's row split and a barrier after each
product. Decode cycles over enough weight copies (> 4x the last-level cache) that weights stream
from DRAM as in a real forward pass; its GB/s is compared with a plain read-bandwidth loop run in
the same process (ratio = fraction of the machine's read bandwidth the kernel reaches).
Prefill multiplies n_tok tokens at once (cache-resident weights) and reports GOP/s (2 ops/MAC).

Every figure is given twice: per wall-clock second, and per CPU second of the timing thread. On a
machine shared with other work the CPU-time figure is the kernel's own speed (it leaves out the
time other processes held the core); on a quiet machine the two agree.

    python scripts/bench_kernels.py --threads 1,2 --types q4_1,q8_0 --json bench.json
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys

import numpy as np

from slmprof import _core, report

from slmprof.engine import quant

SHAPES = {  # rows x cols as "out x in"; SmolLM2-135M: dim 576, ffn 1536, vocab 49152
    "576x576": (576, 576),      # q/o projections
    "192x576": (192, 576),      # k/v projections (3 kv heads x 64)
    "1536x576": (1536, 576),    # gate/up
    "576x1536": (576, 1536),    # down
    "49152x576": (49152, 576),  # LM head (tied embedding)
    # TinyLlama-1.1B: dim 2048, ffn 5632 (not in the default list; pass --shapes)
    "2048x2048": (2048, 2048),
    "5632x2048": (5632, 2048),
    "2048x5632": (2048, 5632),
}
DEFAULT_SHAPES = "576x576,192x576,1536x576,576x1536,49152x576"


def weight_copies(name, rows, cols, total_bytes, rng, isa):
    """Enough prepared copies of one random weight matrix to exceed `total_bytes`."""
    w = rng.standard_normal((rows, cols), dtype=np.float32) * 0.05
    q = quant.quantize(w, name)
    n = max(1, int(total_bytes // q.nbytes) + 1)
    with quant.force_isa(isa):
        return [quant.weight(q.copy() if i else q, name, rows, cols, prepare=True) for i in range(n)], q.nbytes


def measure(fn, repeats):
    """Median wall and CPU seconds of `repeats` runs of fn() -> (wall, cpu), and the wall sd."""
    vals = [fn() for _ in range(repeats)]
    wall = [v[0] for v in vals]
    return (statistics.median(wall), statistics.median(v[1] for v in vals),
            statistics.stdev(wall) if len(wall) > 1 else 0.0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--types", default="q4_1,q4_0,q8_0,f16")
    ap.add_argument("--shapes", default=DEFAULT_SHAPES, help=f"rows x cols; named: {', '.join(SHAPES)}")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--isa", default="best", help="kernel path(s), comma separated, 'all' or 'best'")
    ap.add_argument("--prefill-tokens", type=int, default=128)
    ap.add_argument("--stream-mb", type=int, default=160, help="bytes cycled through per decode test")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-prefill", action="store_true")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)

    types = [t.strip() for t in args.types.split(",") if t.strip()]
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    threads = [int(t) for t in args.threads.split(",")]
    isas = (quant.available_isas() if args.isa == "all" else
            [quant.best_isa()] if args.isa == "best" else args.isa.split(","))
    rng = np.random.default_rng(0)
    results = {"machine": platform.processor() or platform.machine(), "read_GBps": {}, "decode": [], "prefill": []}

    results["read_GBps_cpu"] = {}
    for t in threads:
        runs = [_core._bench_read_bandwidth(256 << 20, 2, t) for _ in range(args.repeats)]
        bw = max(r[0] for r in runs) / 1e9
        bwc = max(r[1] for r in runs) / 1e9
        results["read_GBps"][t], results["read_GBps_cpu"][t] = bw, bwc
        print(f"read bandwidth, {t} thread(s): {bw:.2f} GB/s wall, {bwc:.2f} GB/s per CPU second")

    print(f"\n{'path':<13}{'type':<6}{'shape':>11}{'thr':>4}{'decode GB/s':>18}{'of read bw':>12}"
          f"{'us/product':>12}{'prefill GOP/s':>16}")
    print(f"{'':<34}{'wall / cpu':>18}{'wall / cpu':>12}{'wall':>12}{'wall / cpu':>16}")
    for isa in isas:
        for name in types:
            for shape in shapes:
                rows, cols = SHAPES.get(shape) or tuple(int(v) for v in shape.split("x"))
                copies, nbytes = weight_copies(name, rows, cols, args.stream_mb << 20, rng, isa)
                x1 = rng.standard_normal((1, cols), dtype=np.float32)
                act1 = quant.quantize_activations(x1, name, isa=isa)
                xp = rng.standard_normal((args.prefill_tokens, cols), dtype=np.float32)
                actp = quant.quantize_activations(xp, name, isa=isa)
                for t in threads:
                    with quant.force_isa(isa):
                        reps = max(20, int(4 * len(copies)))
                        _core._bench_matmul(copies, act1, len(copies), t)  # warm-up: page in, spin up
                        sec, csec, sd = measure(lambda: _core._bench_matmul(copies, act1, reps, t), args.repeats)
                        gbps, gbps_cpu = nbytes / sec / 1e9, nbytes / csec / 1e9
                        rec = {"isa": isa, "type": name, "shape": shape, "threads": t, "bytes": nbytes,
                               "us": sec * 1e6, "us_sd": sd * 1e6, "GBps": gbps, "GBps_cpu": gbps_cpu,
                               "of_read_bw": gbps / results["read_GBps"][t],
                               "of_read_bw_cpu": gbps_cpu / results["read_GBps_cpu"][t]}
                        results["decode"].append(rec)
                        gops = gops_cpu = float("nan")
                        if not args.no_prefill and rows * cols * args.prefill_tokens <= 1536 * 576 * 512:
                            one = copies[:1]
                            _core._bench_matmul(one, actp, 1, t)
                            psec, pcsec, psd = measure(lambda: _core._bench_matmul(one, actp, 3, t), args.repeats)
                            ops = 2.0 * rows * cols * args.prefill_tokens
                            gops, gops_cpu = ops / psec / 1e9, ops / pcsec / 1e9
                            results["prefill"].append({"isa": isa, "type": name, "shape": shape, "threads": t,
                                                       "tokens": args.prefill_tokens, "ms": psec * 1e3,
                                                       "ms_sd": psd * 1e3, "GOPs": gops, "GOPs_cpu": gops_cpu})
                    print(f"{isa:<13}{name:<6}{shape:>11}{t:>4}{gbps:>9.2f} /{gbps_cpu:>6.2f}"
                          f"{rec['of_read_bw']:>5.0%} /{rec['of_read_bw_cpu']:>4.0%}"
                          f"{sec * 1e6:>12.1f}{gops:>8.1f} /{gops_cpu:>6.1f}")
                    sys.stdout.flush()
                del copies
    if args.json:
        report.write_json(report.stamp("bench-kernels", results), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
