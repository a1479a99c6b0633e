"""`python -m slmprof bench`: tokens per second of slmprof's engine and its peers, side by side."""
from __future__ import annotations

import os
import random
import time

from slmprof import report
from slmprof.report import Column

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

DEFAULT_MODEL = "smollm2-135m"


def add_arguments(p):
    p.add_argument("--model", "-m", default=DEFAULT_MODEL,
                   help=f"model name or GGUF path (default {DEFAULT_MODEL})")
    p.add_argument("--threads", "-t", type=int, default=None,
                   help="threads per backend (default: usable cores)")
    p.add_argument("--prompt-tokens", "-p", type=int, default=128, metavar="P",
                   help="prefill length (default 128; 0 skips the prefill test)")
    p.add_argument("--gen-tokens", "-n", type=int, default=128, metavar="G",
                   help="tokens decoded one at a time after the prefill (default 128; 0 skips)")
    p.add_argument("--reps", "-r", type=int, default=5, help="repetitions after the warm-up (default 5)")
    p.add_argument("--backend", "-b", nargs="+", action="extend", default=None,
                   metavar="NAME", help="slmprof, llama.cpp, ctransformers (several: interleaved; "
                   "the first is the reference for ratios). Default: slmprof")
    p.add_argument("--no-cold", action="store_true",
                   help="skip the cold load (the model file is not dropped from the page cache)")
    p.add_argument("--no-bandwidth", action="store_true",
                   help="do not measure the read bandwidth between repetitions (for %% of read BW)")
    p.add_argument("--seed", type=int, default=1234, help="seed of the token ids fed in (default 1234)")
    report.add_output_arguments(p)


# --------------------------------------------------------------------------------------------

class _Run:
    """One backend's state through a bench call."""

    def __init__(self, name):
        self.name = name
        self.worker = None
        self.error = None       # why it produced no numbers
        self.version = None
        self.cold = None
        self.warm = None
        self.prefill_s = []     # one per repetition
        self.decode_s = []      # one list of per-token seconds per repetition
        self.windows = {"prefill": [], "decode": []}   # (t0, t1) monotonic ns, for energy
        self.stats = None

    @property
    def ok(self):
        return self.error is None

    def fail(self, err):
        self.error = getattr(err, "reason", None) or str(err)
        if self.worker is not None:
            try:
                self.worker.close()
            except Exception:  # noqa: BLE001  (already failing; keep the first reason)
                pass
            self.worker = None


def _model_facts(path):
    """Weight bytes per decoded token, file type and vocabulary size from the GGUF file."""
    from slmprof.engine.gguf import GGUFFile, describe_model
    with GGUFFile(path) as gf:
        desc = describe_model(gf)
        return {"bytes_per_token": int(desc.weight_bytes_per_token()),
                "weight_bytes": int(desc.weight_bytes()),
                "file_type": desc.file_type,
                "vocab": int(desc.shape.vocab),
                "n_layer": int(desc.shape.n_layer),
                "arch": desc.shape.arch}


def _tokens(seed, n, vocab):
    # Token ids away from the low ids where vocabularies keep their special tokens.
    lo = min(vocab - 1, max(3, vocab // 16))
    rng = random.Random(seed)
    return [rng.randrange(lo, vocab) for _ in range(n)]


def _ctx_for(prompt, gen):
    need = prompt + gen + 8
    return max(256, (need + 255) // 256 * 256)


def _default_threads():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class SystemWatch:
    """CPU frequency, temperature, Pi throttling state and energy counters while the backends
    run, from the measurement core's C sampler thread (the backends run in other processes, so
    it takes no time from them). Each figure missing on a machine comes with the reason."""

    def __init__(self, hz=20, roots=None):
        from slmprof.measure import procfs
        from slmprof.measure.sampler import CPUFREQ, RAPL, THERMAL, THROTTLED, Sampler
        self.procfs = procfs
        every_tick = {CPUFREQ: None, THERMAL: None, THROTTLED: None, RAPL: None}
        self.sampler = Sampler(hz=hz, roots=roots or procfs.DEFAULT, slow_hz=1, rates=every_tick)
        self.kinds = {"cpufreq": CPUFREQ, "thermal": THERMAL, "throttled": THROTTLED, "rapl": RAPL}
        self.energy = []          # (monotonic ns, cumulative joules), filled by stop()

    def _sources(self, kind):
        return [s for s in self.sampler.sources if s.kind == self.kinds[kind]]

    def _available(self, kind):
        return [s for s in self._sources(kind) if s.available]

    def _reason(self, kind, default):
        reasons = [s.reason for s in self._sources(kind) if s.reason]
        return reasons[0] if reasons else default

    def start(self):
        self.sampler.start()

    def energy_between(self, t0, t1):
        """Joules used between two monotonic ns times (interpolated), or None."""
        import numpy as np
        if len(self.energy) < 2:
            return None
        t = np.array([e[0] for e in self.energy], dtype=np.float64)
        j = np.array([e[1] for e in self.energy], dtype=np.float64)
        if t0 < t[0] or t1 > t[-1]:
            return None
        return float(np.interp(t1, t, j) - np.interp(t0, t, j))

    def _energy_series(self, data):
        import numpy as np
        rapl = self._available("rapl")
        if not rapl or not len(data):
            return
        total = np.zeros(len(data))
        ok = np.ones(len(data), dtype=bool)
        for src in rapl:
            v = self.sampler.series("rapl_uj", src.slot, data)
            ok &= ~np.isnan(v)
            v = np.where(np.isnan(v), 0.0, v)
            # A counter that wrapped: keep the sum growing by what it had reached.
            drops = np.where(np.diff(v) < 0, v[:-1], 0.0)
            total += v + np.concatenate([[0.0], np.cumsum(drops)])
        t = data["t_ns"].astype(np.float64)
        self.energy = [(float(a), b / 1e6) for a, b, good in zip(t, total, ok) if good]

    def stop(self):
        import numpy as np
        self.sampler.stop()
        data = self.sampler.samples()
        out = {"notes": []}
        freqs = []
        for src in self._available("cpufreq"):
            v = self.sampler.series("cpufreq_khz", src.slot, data)
            freqs.extend(v[~np.isnan(v)].tolist())
        if freqs:
            out["cpu_freq_mhz_min"], out["cpu_freq_mhz_max"] = min(freqs) / 1e3, max(freqs) / 1e3
        else:
            out["notes"].append("CPU frequency: " + self._reason(
                "cpufreq", "no cpufreq in sysfs (a VM, or no cpufreq driver loaded)"))
        temps = []
        for src in self._available("thermal"):
            v = self.sampler.series("thermal_mc", src.slot, data)
            temps.extend((v[~np.isnan(v)] / 1e3).tolist())
        if temps:
            out["temp_c_min"], out["temp_c_max"] = min(temps), max(temps)
        else:
            out["notes"].append("temperature: " + self._reason("thermal", "no thermal zones in sysfs"))
        if self._available("throttled"):
            v = self.sampler.series("throttled", data=data)
            bits = 0
            for x in v[~np.isnan(v)]:
                bits |= int(x)
            flags = self.procfs.decode_throttled(bits)
            out["throttled"] = ", ".join(flags) if flags else "no"
        else:
            out["notes"].append("throttling: " + self._reason(
                "throttled", "no Raspberry Pi firmware get_throttled node (not a Pi)"))
        self._energy_series(data)
        if len(self.energy) >= 2:
            out["energy_J"] = True
            out["energy_between"] = self.energy_between
            out["energy_source"] = "RAPL " + ", ".join(s.name for s in self._available("rapl"))
        else:
            out["notes"].append("energy per token: " + self._reason(
                "rapl", "no readable energy counter") + "; boards like the Pi have no energy counter")
        self.sampler.close()
        return out


def _system_watch():
    return SystemWatch()


def run(args):
    from slmprof.bench.backends import BACKENDS, BackendError, Worker, canonical_name, unavailable_reason
    from slmprof.errors import ModelNotFoundError
    from slmprof.engine.registry import resolve

    quiet = args.quiet
    names = []
    for b in args.backend or ["slmprof"]:
        try:
            n = canonical_name(b)
        except ValueError as e:
            report.say(f"slmprof bench: error: {e}", False)
            return 2
        if n not in names:
            names.append(n)
    for what, v, lo in (("--prompt-tokens", args.prompt_tokens, 0), ("--gen-tokens", args.gen_tokens, 0),
                        ("--reps", args.reps, 1)):
        if v < lo:
            report.say(f"slmprof bench: error: {what} must be >= {lo} (got {v})", False)
            return 2
    if args.prompt_tokens == 0 and args.gen_tokens == 0:
        report.say("slmprof bench: error: nothing to time (--prompt-tokens and --gen-tokens are 0)", False)
        return 2
    threads = args.threads or _default_threads()
    if threads < 1:
        report.say("slmprof bench: error: --threads must be >= 1", False)
        return 2

    notes = []
    try:
        model = resolve(args.model)
    except ModelNotFoundError as e:
        if args.model != DEFAULT_MODEL:
            raise
        model = resolve("synth:" + DEFAULT_MODEL)
        notes.append(f"{DEFAULT_MODEL} unavailable ({e}); benchmarked {model.name} instead")
        report.say(f"slmprof bench: {notes[-1]}", quiet)
    facts = _model_facts(model.path)
    P, G = args.prompt_tokens, args.gen_tokens
    ctx = _ctx_for(P, G)
    if model.synthetic:
        notes.append(f"{model.name} is synthetic: random weights in the real model's shapes "
                     "(speed is meaningful, text is not)")

    runs = [_Run(n) for n in names]
    for r in runs:
        reason = unavailable_reason(r.name)
        if reason:
            r.error = f"not installed: {reason}"
            report.say(f"slmprof bench: {r.name}: {reason}", quiet)

    total_steps = sum(1 for r in runs if r.ok) * (2 + (args.reps + 1))
    prompt = _tokens(args.seed, P, facts["vocab"])
    gen = _tokens(args.seed + 1, G, facts["vocab"])
    watch = None
    with report.Progress(total=total_steps, what="bench", quiet=quiet) as bar:
        # Cold loads one backend at a time, each unloaded again: a backend that keeps the file
        # mapped would stop the next one's page-cache drop.
        for r in runs:
            if not r.ok:
                continue
            bar.set_status(f"{r.name}: cold load")
            try:
                r.worker = Worker(r.name)
                if not args.no_cold:
                    r.cold = r.worker.load(model.path, threads, ctx, max(P, 1), cold=True)
                    r.worker.unload()
            except BackendError as e:
                r.fail(e)
                report.say(f"slmprof bench: {r.name} cannot run {model.name}: {r.error}", quiet)
            bar.advance()
        for r in runs:
            if not r.ok:
                continue
            bar.set_status(f"{r.name}: load")
            try:
                r.warm = r.worker.load(model.path, threads, ctx, max(P, 1))
                r.version = r.warm.get("version")
            except BackendError as e:
                r.fail(e)
                report.say(f"slmprof bench: {r.name} cannot run {model.name}: {r.error}", quiet)
            bar.advance()
        bandwidth = None
        if G and not args.no_bandwidth:
            try:
                bandwidth = ReadBandwidth(threads)
            except (ImportError, AttributeError) as e:
                notes.append(f"read bandwidth not measured: {e}")
        watch = _system_watch()
        watch.start()
        # Warm-up (not recorded), then the repetitions, interleaved across backends.
        for rep in range(-1, args.reps):
            for r in runs:
                if not r.ok:
                    continue
                bar.set_status(f"{r.name}: {'warm-up' if rep < 0 else f'rep {rep + 1}/{args.reps}'}")
                t0 = time.monotonic_ns()
                try:
                    out = r.worker.run(prompt, gen)
                except BackendError as e:
                    r.fail(e)
                    report.say(f"slmprof bench: {r.name} failed: {r.error}", quiet)
                    continue
                t1 = time.monotonic_ns()
                if rep >= 0:
                    if out["prefill_s"] is not None:
                        r.prefill_s.append(out["prefill_s"])
                        r.windows["prefill"].append((t0, t0 + int(out["prefill_s"] * 1e9)))
                    if out["decode_s"]:
                        r.decode_s.append(out["decode_s"])
                        r.windows["decode"].append((t1 - int(sum(out["decode_s"]) * 1e9), t1))
                bar.advance()
            if rep >= 0 and bandwidth is not None:
                bar.set_status("read bandwidth")
                bandwidth.measure()
        system = watch.stop()
        for r in runs:
            if r.worker is not None:
                try:
                    r.stats = r.worker.stats()
                except BackendError as e:
                    r.fail(e)
                if r.worker is not None:
                    r.worker.close()

    read_bw = bandwidth.median() if bandwidth is not None else None
    if read_bw:
        notes.append(f"read bandwidth measured between the repetitions ({threads} threads, "
                     f"{bandwidth.array_bytes >> 20} MiB buffer): median {read_bw / 1e9:.2f} GB/s "
                     f"of {len(bandwidth.samples)}")
    records = _records(runs, model, facts, threads, P, G, system, read_bw)
    summary = _summary(runs, records, system)
    notes.extend(system.get("notes", []))
    for r in runs:
        if not r.ok:
            notes.append(f"{r.name}: no results: {r.error}")
        elif r.cold is not None:
            ev = r.cold.get("evict", {})
            after = ev.get("cached_after")
            if after is not None and after > 0.05:
                who = ev.get("mapped_by")
                why = (f"; mapped by other processes: pid {', '.join(map(str, who))}" if who else "")
                notes.append(f"{r.name}: cold load was not fully cold: {after:.0%} of the file "
                             f"stayed in the page cache ({ev.get('method')}{why})")
    if args.no_cold:
        notes.append("cold load skipped (--no-cold)")

    rep = report.make_report(
        "bench", records,
        model={"name": model.name, "path": str(model.path), "synthetic": model.synthetic,
               "description": model.description, "file_type": facts["file_type"],
               "file_bytes": os.path.getsize(model.path), "weight_bytes": facts["weight_bytes"],
               "bytes_per_token": facts["bytes_per_token"], "arch": facts["arch"],
               "n_layer": facts["n_layer"], "vocab": facts["vocab"]},
        settings={"threads": threads, "prompt_tokens": P, "gen_tokens": G, "reps": args.reps,
                  "backends": names, "ctx": ctx, "seed": args.seed, "cold": not args.no_cold},
        summary=summary, notes=notes,
        backends={r.name: {"version": r.version, "error": r.error} for r in runs})
    if args.json_file:
        report.write_json(rep, args.json_file)
    if args.format in ("md", "plain"):
        report.write_text(format_bench(rep, args.format), args.output)
    else:
        report.emit(rep, args.format, args.output)

    if not any(r.ok for r in runs):
        return 3 if all((r.error or "").startswith("not installed") for r in runs) else 1
    return 0


class ReadBandwidth:
    """This machine's read bandwidth at the bench's thread count, measured between the
    repetitions (the calibrate kernel: a streaming read far larger than the last-level cache),
    so the share of it that decode achieves compares figures taken under the same conditions."""

    def __init__(self, threads):
        from slmprof import _core
        from slmprof.measure import calibrate
        self.core = _core
        self.threads = threads
        llc = _core.calib_llc_bytes()
        self.array_bytes = max(calibrate.MIN_ARRAY_BYTES, calibrate.LLC_MULTIPLE * llc)
        self.samples = []

    def measure(self):
        r = self.core.calib_memory("read", self.threads, self.array_bytes, 0.25, 20)
        self.samples.append(r["median_per_s"])

    def median(self):
        xs = sorted(self.samples)
        return xs[len(xs) // 2] if xs else None


def _records(runs, model, facts, threads, P, G, system, read_bw=None):
    records = []
    ref = {}
    for r in runs:
        for test, tokens in (("prefill", P), ("decode", G)):
            if tokens == 0:
                continue
            rec = {"backend": r.name, "backend_version": r.version, "model": model.name,
                   "file_type": facts["file_type"], "threads": threads, "test": test,
                   "tokens": tokens}
            if r.ok:
                if test == "prefill":
                    samples = [P / s for s in r.prefill_s]
                    ttft_ms = [s * 1e3 for s in r.prefill_s]
                else:
                    samples = [G / sum(d) for d in r.decode_s]
                    ttft_ms = None
                mean, std = report.mean_std(samples)
                # The best repetition too: on a shared machine the least disturbed run is the
                # one that says most about the engine.
                rec.update({"tok_s_mean": mean, "tok_s_std": std, "tok_s_samples": samples,
                            "tok_s_best": max(samples) if samples else None})
                if test == "prefill":
                    rec["bytes_per_token"] = facts["weight_bytes"] / P   # weights read once per batch
                    t_mean, t_std = report.mean_std(ttft_ms)
                    rec.update({"ttft_ms_mean": t_mean, "ttft_ms_std": t_std})
                else:
                    rec["bytes_per_token"] = facts["bytes_per_token"]
                    rec["achieved_GBps"] = facts["bytes_per_token"] * mean / 1e9
                    if read_bw:
                        rec["read_bandwidth_GBps"] = read_bw / 1e9
                        rec["bandwidth_share"] = rec["achieved_GBps"] * 1e9 / read_bw
                ref.setdefault(test, (mean, rec["tok_s_best"]))
                rec["ratio"] = mean / ref[test][0] if ref[test][0] else None
                rec["ratio_best"] = (rec["tok_s_best"] / ref[test][1]) if ref[test][1] else None
                if system is not None:
                    energy = system.get("energy_J") and _energy_in(system, r.windows[test])
                    if energy:
                        rec["energy_J_per_token"] = energy / (tokens * len(r.windows[test]))
                _add_process_figures(rec, r)
            else:
                rec["error"] = r.error
            records.append(rec)
    return records


def _energy_in(system, windows):
    fn = system.get("energy_between")
    if not fn:
        return None
    total = 0.0
    for t0, t1 in windows:
        e = fn(t0, t1)
        if e is None:
            return None
        total += e
    return total


def _add_process_figures(rec, r):
    if r.stats:
        rec["peak_rss_bytes"] = r.stats.get("peak_rss")
    if r.warm:
        rec["load_warm_s"] = r.warm["load_s"]
        rec["ready_warm_s"] = r.warm["ready_s"]
    if r.cold:
        rec["load_cold_s"] = r.cold["load_s"]
        rec["ready_cold_s"] = r.cold["ready_s"]
        rec["load_cold_major_faults"] = r.cold["major_faults"]
        rec["load_cold_read_bytes"] = r.cold["read_bytes"]
        rec["page_cache_before_cold"] = r.cold.get("evict", {}).get("cached_after")


def _summary(runs, records, system):
    out = {}
    for rec in records:
        if rec.get("tok_s_mean") is not None:
            out[f"{rec['backend']}_{rec['test']}_tok_s"] = rec["tok_s_mean"]
            if rec.get("ratio") is not None:
                out[f"{rec['backend']}_{rec['test']}_ratio"] = rec["ratio"]
    if system is not None:
        for k in ("cpu_freq_mhz_min", "cpu_freq_mhz_max", "temp_c_min", "temp_c_max", "throttled"):
            if k in system:
                out[k] = system[k]
    return out


def _mb(v, rec=None):
    return "" if v is None else f"{v / 1e6:.1f}"


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
    Column("load_cold_major_faults", "major faults"), Column("load_cold_read_bytes", "read MB", _mb),
    Column("peak_rss_bytes", "peak RSS MB", _mb),
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
