"""`python -m slmprof bench`: tokens per second of slmprof's engine and its peers, side by side."""
from __future__ import annotations

from slmprof import report
from slmprof.bench import backends, harness
from slmprof.commands import _options
from slmprof.engine import workload
from slmprof.errors import CheckFailed, UnavailableError, UsageError
from slmprof.report import Column
from slmprof.report.units import mb

NAME = "bench"
HELP = "time prefill and decode of a model on slmprof, llama.cpp and ctransformers side by side"
DESCRIPTION = """\
Runs llama-bench style tests: a prefill of P tokens from an empty context (its time is the time to
first token) followed by a decode of G tokens one at a time, R repetitions after one warm-up.
Several backends run interleaved (A B A B ...) so that their ratio is fair on a noisy machine;
the table shows each backend's ratio to the first one. Each backend runs in its own process,
which also gives its own peak RSS, load times (cold: the model file dropped from the page cache
first; warm: loaded again), page faults and bytes read while loading.

bytes/token is the weight bytes streamed per decoded token (every layer, the LM head and one
embedding row; the KV cache is not counted), and GB/s is bytes/token x tokens/s."""
EXAMPLES = """\
examples:
  python -m slmprof bench                                   # slmprof on smollm2-135m, 2 threads
  python -m slmprof bench --backend slmprof llama.cpp --threads 1
  python -m slmprof bench --model synth:tinyllama-1.1b:q4_0 --backend slmprof llama.cpp \\
        --format json --output tinyllama.json
"""

DEFAULT_MODEL = workload.DEFAULT_MODEL


def add_arguments(p):
    _options.add_model(p, DEFAULT_MODEL, short=True)
    _options.add_threads(p, "threads per backend (default: every usable core)", short=True)
    p.add_argument("--prompt-tokens", "-p", type=_options.gen_tokens, default=128, metavar="P",
                   help="prefill length (default 128; 0 skips the prefill test)")
    p.add_argument("--gen-tokens", "-n", type=_options.gen_tokens, default=128, metavar="G",
                   help="tokens decoded one at a time after the prefill (default 128; 0 skips)")
    p.add_argument("--reps", "-r", type=_options.integer(1, 10000), default=5,
                   help="repetitions after the warm-up (default 5)")
    p.add_argument("--backend", "-b", nargs="+", action="extend", default=None,
                   metavar="NAME", help="slmprof, llama.cpp, ctransformers (several: interleaved; "
                   "the first is the reference for ratios). Default: slmprof")
    p.add_argument("--no-cold", action="store_true",
                   help="skip the cold load (the model file is not dropped from the page cache)")
    p.add_argument("--no-bandwidth", action="store_true",
                   help="do not measure the read bandwidth between repetitions (for %% of read BW)")
    p.add_argument("--seed", type=_options.integer(0), default=1234, help="seed of the token ids fed in (default 1234)")
    report.add_output_arguments(p)


def check(args):
    names = []
    for b in args.backend or ["slmprof"]:
        try:
            n = backends.canonical_name(b)
        except ValueError as e:
            raise UsageError(f"--backend: {e}") from None
        if n not in names:
            names.append(n)
    args.backend = names
    if "slmprof" in names:
        _options.check_kernel_path()
    if args.prompt_tokens == 0 and args.gen_tokens == 0:
        raise UsageError("nothing to time: --prompt-tokens and --gen-tokens are both 0")
    _options.check_positions(args.model, args.prompt_tokens + args.gen_tokens,
                             "--prompt-tokens + --gen-tokens")


def run(args):
    rep = harness.benchmark(args.model, args.backend, threads=args.threads,
                            prompt_tokens=args.prompt_tokens, gen_tokens=args.gen_tokens,
                            reps=args.reps, cold=not args.no_cold, bandwidth=not args.no_bandwidth,
                            seed=args.seed, quiet=args.quiet)
    fmt = report.stdout_format(args)
    text = format_bench(rep, fmt) if fmt in ("md", "plain") else report.render(rep, fmt)
    report.emit_output(text, args, rep)
    errors = [b["error"] for b in rep["backends"].values()]
    if all(errors):
        why = "; ".join(f"{name}: {b['error']}" for name, b in rep["backends"].items())
        if all(e.startswith("not installed") for e in errors):
            raise UnavailableError(f"no backend could run ({why})")
        raise CheckFailed(f"no backend produced results ({why})")


def _pm(v, rec):
    return "" if v is None else f"± {v:.2f}"


def _ratio(v, rec):
    return "" if v is None else f"{v:.2f}x"


MAIN_COLUMNS = [
    Column("backend", align="left"), Column("file_type", "type", align="left"),
    Column("threads"), Column("test", align="left"), Column("tokens"),
    Column("tok_s_mean", "t/s", ".2f"), Column("tok_s_std", "±", _pm, align="right"),
    Column("ratio", "ratio", _ratio), Column("tok_s_best", "best t/s", ".1f"),
    Column("ratio_best", "best ratio", _ratio), Column("ttft_ms_mean", "TTFT ms", ".1f"),
    Column("achieved_GBps", "GB/s", ".2f"),
    Column("bandwidth_share", "% of read BW", lambda v, r: "" if v is None else f"{100 * v:.0f}%"),
]
SYSTEM_COLUMNS = [
    Column("backend", align="left"), Column("load_cold_s", "load cold s", ".3f"),
    Column("ready_cold_s", "+1st token s", ".3f"), Column("load_warm_s", "load warm s", ".3f"),
    Column("load_cold_major_faults", "major faults"), Column("load_cold_read_bytes", "read MB", mb),
    Column("peak_rss_bytes", "peak RSS MB", mb),
]


def format_bench(rep, style="md"):
    """The tables `bench` prints: speed per backend and test, then per-backend system figures."""
    records = rep["records"]
    m = rep["model"]
    s = rep["settings"]
    head = (f"model: {m['name']} ({m['file_type']}, {m['file_bytes'] / 1e6:.1f} MB file, "
            f"{m['bytes_per_token'] / 1e6:.1f} MB weights/token)   threads: {s['threads']}   "
            f"prompt {s['prompt_tokens']} + gen {s['gen_tokens']} tokens, {s['reps']} reps "
            f"after 1 warm-up, backends interleaved")
    ok = [r for r in records if r.get("tok_s_mean") is not None]
    text = head + "\n\n" + report.format_table(ok, MAIN_COLUMNS, style=style)
    seen, sys_rows = set(), []
    for r in ok:
        if r["backend"] not in seen:
            seen.add(r["backend"])
            sys_rows.append(r)
    if sys_rows:
        text += "\n" + report.format_table(sys_rows, SYSTEM_COLUMNS, style=style)
    summ = rep.get("summary", {})
    sysline = []
    if "cpu_freq_mhz_min" in summ:
        sysline.append(f"CPU {summ['cpu_freq_mhz_min']:.0f}-{summ['cpu_freq_mhz_max']:.0f} MHz")
    if "temp_c_min" in summ:
        sysline.append(f"{summ['temp_c_min']:.1f}-{summ['temp_c_max']:.1f} °C")
    if "throttled" in summ:
        sysline.append(f"throttled: {summ['throttled']}")
    if sysline:
        text += "\nsystem during the runs: " + ", ".join(sysline) + "\n"
    energy = [r for r in ok if r.get("energy_J_per_token") is not None]
    for r in energy:
        text += f"energy: {r['backend']} {r['test']}: {r['energy_J_per_token'] * 1e3:.2f} mJ/token\n"
    if rep.get("notes"):
        text += "\n" + "\n".join(f"note: {n}" for n in rep["notes"]) + "\n"
    return text
