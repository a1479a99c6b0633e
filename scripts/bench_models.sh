#!/usr/bin/env bash
# The `bench` runs behind the engine speed targets: slmprof against llama.cpp (llama-cpp-python)
# in one call per target, so that each ratio comes from interleaved runs on the same machine state.
# llama.cpp goes first, so the ratio column of the table is slmprof / llama.cpp.
#
#   scripts/bench_models.sh [OUTDIR]          (default: bench-results/)
#
# Needs llama-cpp-python (see docs/commands.md: "Speed against other engines"). Each call writes a markdown
# table (stdout and OUTDIR/NAME.md) and the full JSON report (OUTDIR/NAME.json). Threads: 2 unless
# the target says 1. Set REPS to change the repetitions (default 5) and PYTHON for the interpreter.
set -euo pipefail
OUT=${1:-bench-results}
PY=${PYTHON:-python3}
REPS=${REPS:-5}
mkdir -p "$OUT"

run() {  # NAME ARGS...
    local name=$1; shift
    echo "== $name: python -m slmprof bench $*"
    "$PY" -m slmprof bench --backend llama.cpp slmprof --reps "$REPS" "$@" \
        --json "$OUT/$name.json" | tee "$OUT/$name.md"
    echo
}

# smollm2-135m (real, Q4_1): decode >= 1.5x, prefill of 128 tokens >= 2x llama.cpp at 2 threads;
# decode >= 1.2x at 1 thread.
run smollm2-135m-q4_1-t2 --model smollm2-135m --threads 2 --prompt-tokens 128 --gen-tokens 128
run smollm2-135m-q4_1-t1 --model smollm2-135m --threads 1 --prompt-tokens 128 --gen-tokens 128
# The same model requantized to Q8_0 and Q4_0: decode >= 1.1x.
run smollm2-135m-q8_0-t2 --model smollm2-135m:q8_0 --threads 2 --prompt-tokens 128 --gen-tokens 128
run smollm2-135m-q4_0-t2 --model smollm2-135m:q4_0 --threads 2 --prompt-tokens 128 --gen-tokens 128
# synth:tinyllama-1.1b:q4_0: decode >= 1.1x and >= 75% of the read bandwidth; prefill >= 1.0x.
run tinyllama-1.1b-q4_0-t2 --backend ctransformers --model synth:tinyllama-1.1b:q4_0 --threads 2 --prompt-tokens 128 --gen-tokens 64

# One line per target from the JSON reports.
"$PY" - "$OUT" <<'PYEOF'
import sys
from pathlib import Path
from slmprof.report import read_json

targets = {  # report name: [(test, minimum ratio to llama.cpp)]
    "smollm2-135m-q4_1-t2": [("decode", 1.5), ("prefill", 2.0)],
    "smollm2-135m-q4_1-t1": [("decode", 1.2)],
    "smollm2-135m-q8_0-t2": [("decode", 1.1)],
    "smollm2-135m-q4_0-t2": [("decode", 1.1)],
    "tinyllama-1.1b-q4_0-t2": [("decode", 1.1), ("prefill", 1.0)],
}
out = Path(sys.argv[1])
print("| run | test | slmprof t/s | llama.cpp t/s | slmprof / llama.cpp | best rep / best rep | target | met by both ratios | slmprof % of read BW |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
for name, tests in targets.items():
    path = out / f"{name}.json"
    if not path.exists():
        continue
    recs = read_json(path, kind="bench")["records"]
    for test, want in tests:
        by = {r["backend"]: r for r in recs if r["test"] == test and r.get("tok_s_mean")}
        if {"slmprof", "llama.cpp"} <= by.keys():
            s, l = by["slmprof"]["tok_s_mean"], by["llama.cpp"]["tok_s_mean"]
            best = max(by["slmprof"]["tok_s_samples"]) / max(by["llama.cpp"]["tok_s_samples"])
            share = by["slmprof"].get("bandwidth_share")
            print(f"| {name} | {test} | {s:.1f} | {l:.1f} | {s / l:.2f}x | {best:.2f}x | {want:.1f}x | "
                  f"{'yes' if min(s / l, best) >= want else 'NO'} | "
                  f"{'' if share is None else f'{100 * share:.0f}%'} |")
        else:
            print(f"| {name} | {test} | | | | | {want:.1f}x | no result | |")
PYEOF
