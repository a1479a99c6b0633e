"""Instructions per decoded token, counted by the PMU, for the kernel path this core picks.

Under qemu-system-aarch64 -icount shift=0 instruction counts are exact and repeatable, so this
is an exact efficiency figure for the ARM kernels (NEON on a Cortex-A72, NEON dot product on a
Cortex-A76), compared with a stored baseline: more than REGRESSION over it exits 1.
    python instructions_per_token.py BASELINE.json [MODEL] [N_TOKENS]
One engine thread, so no spinning worker adds a varying count.
"""
import json
import os
import sys

from slmprof.engine import quant
from slmprof.measure.counters import Counters, detect_core
from slmprof.engine.model import Model

REGRESSION = 0.05   # more instructions per token than the baseline by this much is flagged


def main():
    baseline_path = sys.argv[1]
    name = sys.argv[2] if len(sys.argv) > 2 else "synth:smollm2-135m"
    n_tokens = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    core = detect_core().core
    core_name = core.name if core is not None else "unknown"
    model = Model.load(name, threads=1)
    try:
        prompt = model.tokenizer.encode("The quick brown fox")
        token = int(model.prefill(prompt).argmax())
        with Counters(["instructions", "cycles"]) as c:
            c.attach_threads()
            before = c.read()
            for _ in range(n_tokens):
                token = int(model.decode(token).argmax())
            after = c.read()
    finally:
        model.close()
    reading = after["instructions"]
    if reading.value is None or before["instructions"].value is None:
        print(f"instructions per token: not counted here ({reading.status})")
        return 1
    per_token = (reading.value - before["instructions"].value) / n_tokens
    key = f"{name} {quant.active_isa()}"
    print(f"instructions per token: {per_token:,.0f} ({key}, core {core_name}, "
          f"{n_tokens} tokens, counter {reading.status})")
    baseline = {}
    if os.path.exists(baseline_path):
        with open(baseline_path) as f:
            baseline = json.load(f)
    ref = baseline.get(key)
    if not ref:
        print(f"  no baseline for '{key}' yet; to keep this figure add it to {os.path.basename(baseline_path)}")
        return 0
    change = per_token / ref - 1
    if change > REGRESSION:
        print(f"  baseline {ref:,.0f}: {change:+.2%} -> REGRESSION (more than {REGRESSION:.0%} over; "
              f"if intended, update {os.path.basename(baseline_path)})")
        return 1
    print(f"  baseline {ref:,.0f}: {change:+.2%} -> ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
