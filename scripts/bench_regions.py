"""Cost of one region begin+end pair, per counter read path (pyperf).

Each value runs `loops` begin+end pairs inside C (RegionTable.bench_pairs), so Python call
overhead is not in the figure. Configurations:
  time-only        no counters: wall and thread CPU clock (a system call) at each edge
  wall-only        a region marked wall-only (the engine's operations): one vDSO clock read
  read-sw-1thread  software events (task-clock, faults+switches groups), this thread only
  read-sw-5threads the same with 4 more (idle) threads attached: read() per thread group
  user-hw          hardware events read with rdpmc (x86) / mrs (arm64) on the calling thread,
                   when the PMU and the kernel allow it; otherwise reported as unavailable

    python scripts/bench_regions.py                 # pyperf defaults of this script
    python scripts/bench_regions.py -o regions.json --fast
"""
import threading

import pyperf

from slmprof import _core
from slmprof.measure.counters import Counters

SW_EVENTS = ["task-clock", "page-faults", "context-switches"]


def make_table(config):
    if config == "time-only":
        return _core.RegionTable(16), None, []
    if config == "wall-only":
        t = _core.RegionTable(16)
        t.set_wall_only([1])
        return t, None, []
    if config.startswith("read-sw"):
        extra = 4 if config.endswith("5threads") else 0
        stop = threading.Event()
        threads = [threading.Thread(target=stop.wait, daemon=True) for _ in range(extra)]
        for t in threads:
            t.start()
        c = Counters(SW_EVENTS, user_read=False)
        c.attach_threads()
        return _core.RegionTable(16, c.counter_set), c, threads
    c = Counters(["cycles", "instructions"])
    if c.mode != "hardware":
        raise RuntimeError(c.mode_reason)
    c.attach_threads()
    if c.read_path == "read":
        raise RuntimeError(f"hardware counters open, but user-space reads are off: {c.user_read_reason}")
    return _core.RegionTable(16, c.counter_set), c, []


def bench(loops, table):
    return table.bench_pairs(1, loops) / 1e9


def main():
    runner = pyperf.Runner(values=5, processes=6, warmups=1)
    runner.metadata["description"] = "one region begin+end pair (C loop), per read path"
    for config in ("time-only", "wall-only", "read-sw-1thread", "read-sw-5threads", "user-hw"):
        try:
            table, counters, keep = make_table(config)
        except Exception as e:  # noqa: BLE001 - reported, not fatal
            if not runner.args.worker:
                print(f"{config}: unavailable here: {e}")
            continue
        name = config
        if counters is not None:
            name += f" [{counters.read_path}, {counters.n_threads} thread(s)]"
        runner.bench_time_func(name, bench, table)


if __name__ == "__main__":
    main()
