"""The benchmark harness behind `bench` (and the speed half of `compare`): backends run in their
own worker processes, interleaved (A B A B ...) after one warm-up, with the machine watched
while they run and its read bandwidth measured between repetitions.

    rep = benchmark("smollm2-135m", ["slmprof", "llama.cpp"], threads=2, prompt_tokens=128,
                    gen_tokens=128, reps=5)            # a `bench` report (report.make_report)

Records: one per backend and test (prefill, decode) with tokens/s (mean, std, samples, best),
the ratio to the first backend, TTFT, bytes per token and GB/s, energy per token where a
counter exists, and the worker process's load times, page faults and peak RSS.
"""
from __future__ import annotations

import os
import random
import time

import numpy as np

from slmprof import _core
from slmprof.bench import backends
from slmprof.bench.backends import BackendError, Worker
from slmprof.engine import workload
from slmprof.engine.gguf import GGUFFile, describe_model
from slmprof.engine.model import default_threads
from slmprof.measure import calibrate, procfs
from slmprof.measure.sampler import CPUFREQ, RAPL, THERMAL, THROTTLED, Sampler
from slmprof.report import Progress, make_report, mean_std, say


class BackendRun:
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


def model_facts(path):
    """Weight bytes per decoded token, file type and vocabulary size from the GGUF file."""
    with GGUFFile(path) as gf:
        desc = describe_model(gf)
        return {"bytes_per_token": int(desc.weight_bytes_per_token()),
                "weight_bytes": int(desc.weight_bytes()),
                "file_type": desc.file_type,
                "vocab": int(desc.shape.vocab),
                "n_layer": int(desc.shape.n_layer),
                "arch": desc.shape.arch}


def token_ids(seed, n, vocab):
    # Token ids away from the low ids where vocabularies keep their special tokens.
    lo = min(vocab - 1, max(3, vocab // 16))
    rng = random.Random(seed)
    return [rng.randrange(lo, vocab) for _ in range(n)]


def ctx_for(prompt, gen):
    need = prompt + gen + 8
    return max(256, (need + 255) // 256 * 256)


class SystemWatch:
    """CPU frequency, temperature, Pi throttling state and energy counters while the backends
    run, from the measurement core's C sampler thread (the backends run in other processes, so
    it takes no time from them). Each figure missing on a machine comes with the reason."""

    def __init__(self, hz=20, roots=None):
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
        if len(self.energy) < 2:
            return None
        t = np.array([e[0] for e in self.energy], dtype=np.float64)
        j = np.array([e[1] for e in self.energy], dtype=np.float64)
        if t0 < t[0] or t1 > t[-1]:
            return None
        return float(np.interp(t1, t, j) - np.interp(t0, t, j))

    def _energy_series(self, data):
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
            flags = procfs.decode_throttled(bits)
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


class ReadBandwidth:
    """This machine's read bandwidth at the bench's thread count, measured between the
    repetitions (the calibrate kernel: a streaming read far larger than the last-level cache),
    so the share of it that decode achieves compares figures taken under the same conditions."""

    def __init__(self, threads):
        self.threads = threads
        self.array_bytes = calibrate.default_array_bytes()
        self.samples = []

    def measure(self):
        r = _core.calib_memory("read", self.threads, self.array_bytes, 0.25, 20)
        self.samples.append(r["median_per_s"])

    def median(self):
        xs = sorted(self.samples)
        return xs[len(xs) // 2] if xs else None


def records(runs, model, facts, threads, P, G, system, read_bw=None):
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
                mean, std = mean_std(samples)
                # The best repetition too: on a shared machine the least disturbed run is the
                # one that says most about the engine.
                rec.update({"tok_s_mean": mean, "tok_s_std": std, "tok_s_samples": samples,
                            "tok_s_best": max(samples) if samples else None})
                if test == "prefill":
                    rec["bytes_per_token"] = facts["weight_bytes"] / P   # weights read once per batch
                    t_mean, t_std = mean_std(ttft_ms)
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


def summary(runs, records, system):
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



def benchmark(model_name, backend_names, threads=None, prompt_tokens=128, gen_tokens=128, reps=5,
              cold=True, bandwidth=True, seed=1234, quiet=False):
    """Run the benchmark and return its report (kind "bench"). `backend_names` are canonical
    (backends.canonical_name); the first is the reference of the ratios. A backend that is not
    installed or cannot run the model has no numbers and a note saying why; the report's
    "backends" field holds each one's error (None when it ran)."""
    def tell(text):
        say(f"slmprof bench: {text}", quiet)

    threads = threads or default_threads()
    model, notes = workload.resolve(model_name)
    notes = list(notes)
    for n in notes:
        tell(n)
    facts = model_facts(model.path)
    P, G = prompt_tokens, gen_tokens
    ctx = ctx_for(P, G)

    runs = [BackendRun(n) for n in backend_names]
    for r in runs:
        reason = backends.unavailable_reason(r.name)
        if reason:
            r.error = f"not installed: {reason}"
            tell(f"{r.name}: {reason}")

    total_steps = sum(1 for r in runs if r.ok) * (2 + (reps + 1))
    prompt = token_ids(seed, P, facts["vocab"])
    gen = token_ids(seed + 1, G, facts["vocab"])
    with Progress(total=total_steps, what="bench", quiet=quiet) as bar:
        # Cold loads one backend at a time, each unloaded again: a backend that keeps the file
        # mapped would stop the next one's page-cache drop.
        for r in runs:
            if not r.ok:
                continue
            bar.set_status(f"{r.name}: cold load")
            try:
                r.worker = Worker(r.name)
                if cold:
                    r.cold = r.worker.load(model.path, threads, ctx, max(P, 1), cold=True)
                    r.worker.unload()
            except BackendError as e:
                r.fail(e)
                tell(f"{r.name} cannot run {model.name}: {r.error}")
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
                tell(f"{r.name} cannot run {model.name}: {r.error}")
            bar.advance()
        read_bandwidth = ReadBandwidth(threads) if G and bandwidth else None
        watch = SystemWatch()
        watch.start()
        # Warm-up (not recorded), then the repetitions, interleaved across backends.
        for rep in range(-1, reps):
            for r in runs:
                if not r.ok:
                    continue
                bar.set_status(f"{r.name}: {'warm-up' if rep < 0 else f'rep {rep + 1}/{reps}'}")
                t0 = time.monotonic_ns()
                try:
                    out = r.worker.run(prompt, gen)
                except BackendError as e:
                    r.fail(e)
                    tell(f"{r.name} failed: {r.error}")
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
            if rep >= 0 and read_bandwidth is not None:
                bar.set_status("read bandwidth")
                read_bandwidth.measure()
        system = watch.stop()
        for r in runs:
            if r.worker is not None:
                try:
                    r.stats = r.worker.stats()
                except BackendError as e:
                    r.fail(e)
                if r.worker is not None:
                    r.worker.close()

    read_bw = read_bandwidth.median() if read_bandwidth is not None else None
    if read_bw:
        notes.append(f"read bandwidth measured between the repetitions ({threads} threads, "
                     f"{read_bandwidth.array_bytes >> 20} MiB buffer): median {read_bw / 1e9:.2f} "
                     f"GB/s of {len(read_bandwidth.samples)}")
    rows = records(runs, model, facts, threads, P, G, system, read_bw)
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
    if not cold:
        notes.append("cold load skipped (--no-cold)")
    return make_report(
        "bench", rows,
        model={"name": model.name, "path": str(model.path), "synthetic": model.synthetic,
               "description": model.description, "file_type": facts["file_type"],
               "file_bytes": os.path.getsize(model.path), "weight_bytes": facts["weight_bytes"],
               "bytes_per_token": facts["bytes_per_token"], "arch": facts["arch"],
               "n_layer": facts["n_layer"], "vocab": facts["vocab"]},
        settings={"threads": threads, "prompt_tokens": P, "gen_tokens": G, "reps": reps,
                  "backends": list(backend_names), "ctx": ctx, "seed": seed, "cold": cold},
        summary=summary(runs, rows, system), notes=notes,
        backends={r.name: {"version": r.version, "error": r.error} for r in runs})


def time_engine(path, threads, prompt_tokens, gen_tokens, reps, seed=1, on_step=lambda: None):
    """This engine's prefill and decode tokens/s on one model file, in its own worker process
    after one warm-up: {"prefill_tok_s": [...], "decode_tok_s": [...], "peak_rss_bytes"}.
    Raises BackendError when the worker cannot run it."""
    facts = model_facts(path)
    P, G = prompt_tokens, gen_tokens
    with Worker("slmprof") as w:
        w.load(path, threads, ctx_for(P, G), max(P, 1))
        prompt = token_ids(seed, P, facts["vocab"])
        gen = token_ids(seed + 1, G, facts["vocab"])
        w.run(prompt, gen)                      # warm-up
        on_step()
        pre, dec = [], []
        for _ in range(reps):
            o = w.run(prompt, gen)
            if o["prefill_s"]:
                pre.append(P / o["prefill_s"])
            if o["decode_s"]:
                dec.append(G / sum(o["decode_s"]))
            on_step()
        return {"prefill_tok_s": pre, "decode_tok_s": dec, "peak_rss_bytes": w.stats()["peak_rss"]}
