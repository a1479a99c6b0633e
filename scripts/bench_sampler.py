"""Sampler thread: achieved rate and its own CPU time, at 1 kHz (the target: >= 95% of the
requested rate, <= 2% of one core) and at the other rates for context.

For each rate it runs, one after the other (alternating, --repeat times; medians printed):
  floor    the sampler thread with no sources: wake up on the deadline, stamp and store an
           empty record, sleep. What the loop costs before it reads anything.
  sampler  slmprof.measure.sampler.Sampler with every source this machine has, at its own rates.
The main thread sleeps meanwhile, so the figures are the sampler's cost on an otherwise idle
process. Printed with them: the machine's load (1-minute load average, and how busy all the
CPUs were during the run from /proc/stat): on shared cores other work delays the thread's
wake-ups and makes each one dearer (cold caches). On a small VM the floor alone is 1.2-2.6%
of a core at 1 kHz and moves with the host; what the sources add is the difference to it. There
a wake-up onto an idle CPU costs more than one that preempts a running task (~15-25 us against
~12 us here), so an idle machine is the dear case; --busy measures the usual one, the sampler
beside a run that keeps every core busy (one spinning process per CPU).

    python scripts/bench_sampler.py --seconds 5 --rates 1000,100
    python scripts/bench_sampler.py --seconds 3 --rates 1000 --repeat 3 --json out.json
    python scripts/bench_sampler.py --seconds 5 --rates 1000 --busy
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

from slmprof import _core, report
from slmprof.measure.sampler import NO_FILE, SAMPLE_DTYPE, Sampler


def machine_busy():
    """(busy, total) jiffies of all CPUs, from the 'cpu' line of /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return sum(v) - v[3] - v[4], sum(v)


def run(core, seconds, n_sources):
    b0 = machine_busy()
    core.start()
    time.sleep(seconds)
    core.stop()
    b1 = machine_busy()
    st = core.stats()
    n = max(1, st["n_samples"])
    el = st["elapsed_ns"]
    return {"achieved_hz": st["n_samples"] / (el / 1e9), "missed_ticks": st["n_missed"],
            "cpu_fraction_of_one_core": st["thread_cpu_ns"] / el,
            "cpu_us_per_tick": st["thread_cpu_ns"] / n / 1e3, "sources": n_sources,
            "machine_busy_fraction": (b1[0] - b0[0]) / max(1, b1[1] - b0[1]),
            "loadavg_1min": os.getloadavg()[0]}


def measure(hz, seconds):
    floor = _core.SamplerCore(hz, 0, max(1024, int(hz * (seconds + 1))), SAMPLE_DTYPE)
    f = run(floor, seconds, 0)
    s = Sampler(hz=hz, seconds_buffered=seconds + 1)
    r = run(s._core, seconds, sum(x.available for x in s.sources))
    r["rates_hz"] = {x.name: x.rate_hz for x in s.sources if x.available}
    r["file_reads_per_s"] = sum(x.rate_hz for x in s.sources if x.available and x.kind not in NO_FILE)
    return f, r


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=5.0, help="per run (default 5)")
    p.add_argument("--rates", default="1000,100,10000", help="comma-separated Hz")
    p.add_argument("--repeat", type=int, default=3,
                   help="runs per rate, alternating floor and sampler; medians printed (default 3)")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--busy", action="store_true",
                   help="keep every CPU busy meanwhile (one spinning process per CPU), as a model run does")
    args = p.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    spinners = []
    if args.busy:
        spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                    for _ in range(os.cpu_count() or 1)]
        print(f"busy: {len(spinners)} spinning processes, one per CPU")
    try:
        results = measure_rates(args)
    finally:
        for sp in spinners:
            sp.kill()
            sp.wait()
    if args.json:
        report.write_json(report.stamp("bench-sampler", {"results": results, "cpus": os.cpu_count(),
                                                         "busy": args.busy}), args.json)


def measure_rates(args):
    results = []
    for hz in (int(x) for x in args.rates.split(",")):
        runs = [measure(hz, args.seconds) for _ in range(args.repeat)]
        med = lambda which, k: statistics.median(r[which][k] for r in runs)  # noqa: E731
        f = {k: med(0, k) for k in runs[0][0]}
        r = {k: med(1, k) for k in runs[0][1] if k != "rates_hz"}
        r["rates_hz"] = runs[0][1]["rates_hz"]
        results.append({"requested_hz": hz, "floor": f, "sampler": r, "runs": runs})
        frac = r["achieved_hz"] / hz
        verdict = ""
        if hz == 1000:
            verdict = (f"  [target rate >= 95%: {'met' if frac >= 0.95 else 'NOT met'}, "
                       f"CPU <= 2%: {'met' if r['cpu_fraction_of_one_core'] <= 0.02 else 'NOT met'}]")
        print(f"{hz:>6} Hz: achieved {r['achieved_hz']:8.1f} Hz ({frac * 100:5.1f}%), missed {r['missed_ticks']:.0f}, "
              f"sampler CPU {r['cpu_fraction_of_one_core'] * 100:5.2f}% of a core, "
              f"{r['cpu_us_per_tick']:5.1f} us/tick ({r['sources']:.0f} sources, "
              f"{r['file_reads_per_s']:.0f} file reads/s){verdict}")
        print(f"{'':>10}floor (no sources): {f['cpu_fraction_of_one_core'] * 100:5.2f}% of a core, "
              f"{f['cpu_us_per_tick']:5.1f} us/tick (the sources add "
              f"{r['cpu_us_per_tick'] - f['cpu_us_per_tick']:+.1f}), achieved {f['achieved_hz']:.1f} Hz; "
              f"machine load during the runs: {r['machine_busy_fraction'] * 100:.0f}% of all CPUs busy, "
              f"load average {r['loadavg_1min']:.2f}")
    rates = results[0]["sampler"]["rates_hz"] if results else {}
    print("source rates at " + (f"{results[0]['requested_hz']} Hz: " if results else "") +
          ", ".join(f"{k} {v:.4g}" for k, v in rates.items()))
    return results


if __name__ == "__main__":
    main()
