"""Sampler thread: achieved rate and its own CPU time, at 1 kHz (the target: >= 95% of the
requested rate, <= 2% of one core) and at the other rates for context.

The main thread sleeps while the sampler runs, so the figure is the sampler's cost on an
otherwise idle process. The machine's load average is printed with the results: on shared
cores other work delays the thread's wake-ups and inflates its CPU time (cache misses).

    python scripts/bench_sampler.py                  # 1 kHz for 5 s, then 100 Hz and 10 kHz
    python scripts/bench_sampler.py --seconds 10 --rates 1000
"""
import argparse
import json
import os
import time

from slmprof.sampler import Sampler


def measure(hz, seconds):
    s = Sampler(hz=hz)
    with s:
        time.sleep(seconds)
    st = s.stats()
    n = max(1, st["n_samples"])
    return {"requested_hz": hz, "achieved_hz": st["achieved_hz"],
            "achieved_fraction": st["achieved_hz"] / hz, "missed_ticks": st["n_missed"],
            "dropped": st["n_dropped"], "cpu_fraction_of_one_core": st["cpu_fraction"],
            "cpu_us_per_sample": st["thread_cpu_ns"] / n / 1e3,
            "sources": sum(x.available for x in s.sources)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rates", default="1000,100,10000", help="comma-separated Hz")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    results = []
    load_before = os.getloadavg()
    for hz in (int(x) for x in args.rates.split(",")):
        r = measure(hz, args.seconds)
        results.append(r)
        target = ""
        if hz == 1000:
            ok_rate = r["achieved_fraction"] >= 0.95
            ok_cpu = r["cpu_fraction_of_one_core"] <= 0.02
            target = (f"   target rate >=95%: {'met' if ok_rate else 'NOT met'}, "
                      f"CPU <=2%: {'met' if ok_cpu else 'NOT met'}")
        print(f"{hz:>6} Hz: achieved {r['achieved_hz']:8.1f} Hz ({r['achieved_fraction'] * 100:5.1f}%), "
              f"missed {r['missed_ticks']}, sampler CPU {r['cpu_fraction_of_one_core'] * 100:5.2f}% of a core "
              f"({r['cpu_us_per_sample']:.1f} us/sample, {r['sources']} sources){target}")
    load = os.getloadavg()
    print(f"load average before/after: {load_before[0]:.2f} / {load[0]:.2f} on {os.cpu_count()} CPUs")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "loadavg": [load_before, load], "cpus": os.cpu_count()}, f, indent=1)


if __name__ == "__main__":
    main()
