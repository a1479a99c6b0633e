"""What region profiling costs decode: profiling off, layer regions, per-operation regions.

One loaded Model, one prompt prefilled once; every repetition decodes the same tokens from the
same positions (the cache is rewound), each token once under every configuration, back to
back, the order rotating so no configuration always runs first (slmprof.analysis.overhead.profiling_cost).
Each repetition gives a ratio to profiling off measured milliseconds apart; the median ratio
over the repetitions is the figure. The per-token median ratio (each token against the same
token with profiling off, a few ms apart) is printed beside it: on a busy machine it is the
steadier of the two, as a preemption inflates one token, not the comparison. The load average is printed
with it: on a shared machine the ratios, not the absolute speeds, are what to compare.

    python scripts/bench_profiling_overhead.py                      # smollm2-135m, 2 threads
    python scripts/bench_profiling_overhead.py --reps 15 --json out.json

Configurations:
  off     no region hooks
  layers  layer regions only (wall time, thread CPU time, counters where the machine has them)
  ops     what `slmprof layers` attaches: per-operation regions (wall time) inside layer regions
"""
import argparse
import os
import statistics
import sys

from slmprof import report
from slmprof.analysis import overhead
from slmprof.engine import workload

TARGET = 0.03  # per-op regions within 3% of profiling off


def load_average():
    try:
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--gen-tokens", type=int, default=32)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)

    m, notes = workload.load(args.model, threads=args.threads, prompt_tokens=args.prompt_tokens,
                             gen_tokens=args.gen_tokens)
    for note in notes:
        print(note)
    name = m.name
    load_before = load_average()
    try:
        cost = overhead.profiling_cost(m, args.prompt_tokens, args.gen_tokens, args.reps)
    finally:
        m.close()
    load_after = load_average()
    runs, why, errors = cost.runs, cost.counters_note, cost.region_errors
    covered, covered_layers = cost.coverage["ops"], cost.coverage["layers"]
    names = list(overhead.CONFIGS)

    n = cost.tokens
    out = {"model": name, "threads": args.threads, "prompt_tokens": args.prompt_tokens,
           "gen_tokens": n, "reps": args.reps, "load_before": load_before, "load_after": load_after,
           "counters": why or "opened", "region_errors": errors, "configs": {}}
    print(f"{name}, {args.threads} threads, decode of {n} tokens after {args.prompt_tokens}, "
          f"{args.reps} interleaved repetitions")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} "
          f"(1-minute; {os.cpu_count()} CPUs)")
    if why:
        print(f"counters: {why}")
    print(f"{'config':8} {'median ms/tok':>13} {'best ms/tok':>11} {'median ratio':>12} "
          f"{'ratio range':>15} {'per-token median ratio':>22}")
    for c in names:
        ms = [s / n * 1e3 for s in runs[c]]
        ratios, med = cost.ratios[c], cost.median_ratio[c]
        tok = cost.median_token_ratio[c]
        out["configs"][c] = {"ms_per_token": ms, "median_ms_per_token": statistics.median(ms),
                             "ratios_to_off": ratios, "median_ratio": med,
                             "median_token_ratio": tok}
        print(f"{c:8} {statistics.median(ms):13.3f} {min(ms):11.3f} {med:12.4f} "
              f"{min(ratios):7.3f}-{max(ratios):.3f} {tok:22.4f}")
    ops = out["configs"]["ops"]["median_ratio"] - 1.0
    out["ops_overhead"] = ops
    out["ops_layer_coverage"] = covered
    out["layers_layer_coverage"] = covered_layers
    out["target_met"] = ops <= TARGET
    print(f"per-op regions: {100 * ops:+.1f}% decode time vs profiling off (target <= "
          f"{100 * TARGET:.0f}%): {'met' if ops <= TARGET else 'NOT met'}; layer regions cover "
          f"{100 * covered:.1f}% of the measured time (target >= 95%; {100 * covered_layers:.1f}% "
          "with layer regions only)")
    if errors:
        print(f"region errors: {errors}")
    if args.json:
        report.write_json(report.stamp("profiling-overhead", out), args.json)
    return 0 if ops <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
