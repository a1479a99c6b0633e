"""`slmprof sysinfo`: what this machine offers: CPU and core, ISA path, memory, kernel,
governor, board, thermal zones, counters (with reasons and how to enable), sensors."""
import argparse
import io
import os
import sys

from slmprof import report
from slmprof.measure import procfs, sysinfo

NAME = "sysinfo"
HELP = "what this machine offers: CPU, ISA path, memory, counters, sensors"
DESCRIPTION = (
    "Print the CPU model and core type (from MIDR on ARM), the ISA features and the kernel "
    "path slmprof will use, memory, kernel, cpufreq governor, board model, thermal zones, "
    "which performance counters open here (and, for those that do not, why and how to "
    "enable them), and the /proc and sysfs sources the sampler finds.")
EXAMPLES = """examples:
  python -m slmprof sysinfo
  python -m slmprof sysinfo --json machine.json     # the table, and the JSON in a file
  python -m slmprof sysinfo --json > machine.json   # JSON instead of the table
  python -m slmprof sysinfo --all-events          # every raw event of this core, one per line
  python -m slmprof sysinfo --proc-root /mnt/pi/proc --sys-root /mnt/pi/sys   # a copied tree
"""


def _directory(value):
    if not os.path.isdir(value):
        raise argparse.ArgumentTypeError(f"{value} is not a directory")
    return value


def add_arguments(p):
    report.add_json_argument(p, "the machine's description as JSON")
    p.add_argument("--all-events", action="store_true",
                   help="list every event with its state (default: a summary)")
    p.add_argument("--output", "-o", metavar="FILE", default=None, type=report.output_file,
                   help="write standard output's content to FILE instead")
    for name, default in (("--proc-root", "/proc"), ("--sys-root", "/sys")):
        p.add_argument(name, default=default, type=_directory,
                       help="read this tree instead of the live one (counters are then not probed)")


def _gib(v):
    return report.format_bytes(v, binary=True, digits=1, unit="GiB", missing="n/a")


def print_text(info, all_events, out=sys.stdout):
    w = out.write
    cpu, k = info["cpu"], info["kernel"]
    w(f"board          {info['board'] or 'unknown'}\n")
    w(f"machine        {info['machine'] or 'unknown'}, {cpu['logical_cpus']} logical CPUs\n")
    core = cpu["core"] or "not an Arm Cortex core in slmprof's tables"
    src = f" (MIDR {cpu['midr']} via {cpu['core_source']})" if cpu["midr"] else ""
    w(f"cpu            {cpu['model']}\n")
    w(f"core           {core}{src}\n")
    if cpu["core_boards"]:
        w(f"               as in: {cpu['core_boards']}; {cpu['counters_per_core']} counters + cycle counter\n")
    w(f"isa features   {' '.join(cpu['features']) or 'none of interest'}\n")
    if cpu["isa_path"]:
        w(f"kernel path    {cpu['isa_path']} (available: {', '.join(cpu['isas_available'])})\n")
    else:
        w(f"kernel path    unknown: {cpu['isa_note']}\n")
    m = info["memory"]
    w(f"memory         {_gib(m['total_bytes'])} total, {_gib(m['available_bytes'])} available\n")
    w(f"kernel         {k['release']}; perf_event_paranoid={k['perf_event_paranoid']}"
      f", perf_user_access={k['perf_user_access'] if k['perf_user_access'] is not None else 'n/a'}\n")
    w(f"pmus           {', '.join(k['pmus']) or 'none'}"
      f" (hardware: {', '.join(k['hardware_pmus']) or 'none'})\n")
    w(f"region reads   {'user space' if k['user_read'] else 'read()'}: {k['user_read_reason']}\n")
    cf = info["cpufreq"]
    if cf["per_cpu"]:
        cur = [v["cur_khz"] for v in cf["per_cpu"].values() if v["cur_khz"]]
        mx = [v["max_khz"] for v in cf["per_cpu"].values() if v["max_khz"]]
        w(f"cpufreq        governor {', '.join(cf['governors']) or '?'}; now "
          f"{min(cur) / 1e3:.0f}-{max(cur) / 1e3:.0f} MHz, max {max(mx) / 1e3:.0f} MHz\n" if cur and mx
          else f"cpufreq        governor {', '.join(cf['governors']) or '?'}\n")
    else:
        w(f"cpufreq        {cf['note']}\n")
    if info["thermal_zones"]:
        for z in info["thermal_zones"]:
            t = "n/a" if z["celsius"] is None else f"{z['celsius']:.1f} °C"
            w(f"thermal        zone{z['zone']} {z['type']}: {t}\n")
    else:
        w("thermal        no thermal zones\n")
    if info["throttled"]:
        th = info["throttled"]
        w(f"throttling     {th['value']}: {', '.join(th['meaning']) or 'none'} ({th['path']})\n")
    for h in info["hwmon"]:
        w(f"sensor         hwmon {h['name']}: {', '.join(h['attributes']) or 'no inputs'}\n")

    counters = info.get("counters")
    if counters is None:
        w("\ncounters       not probed (another /proc or /sys tree was given)\n")
    else:
        ok = [c for c in counters if c["available"]]
        w(f"\ncounters       {len(ok)} of {len(counters)} events open here\n")
        if all_events:
            for c in counters:
                state = "yes" if c["available"] else f"no: {c['reason']}"
                w(f"  {c['kind']:<9}{c['name']:<26}{state}\n")
        else:
            for kind in ("hardware", "raw", "software"):
                group = [c for c in counters if c["kind"] == kind]
                if not group:
                    continue
                good = [c["name"] for c in group if c["available"]]
                w(f"  {kind:<9}{len(good)}/{len(group)} available"
                  + (f": {', '.join(good[:8])}{' ...' if len(good) > 8 else ''}" if good else "") + "\n")
                reasons = {}
                for c in group:
                    if not c["available"]:
                        reasons.setdefault(c["reason"], []).append(c["name"])
                for reason, names in reasons.items():
                    shown = ", ".join(names[:6]) + (" ..." if len(names) > 6 else "")
                    w(f"           not {shown}: {reason}\n")
    if cpu["dram_estimate"]:
        d = cpu["dram_estimate"]
        w(f"dram estimate  ({' + '.join(d['events'])}) x {d['line_bytes']} bytes: {d['note']}\n")
    if info["how_to_enable"]:
        w("\nto enable more:\n")
        for step in info["how_to_enable"]:
            w(f"  - {step}\n")
    w("\nsampler sources:\n")
    for s in info["sampler_sources"]:
        state = "found" if s["found"] else f"missing: {s['reason'] or 'not found'}"
        w(f"  {s['name']:<28}{state}\n")


def run(args):
    roots = procfs.Roots(proc=args.proc_root, sys=args.sys_root)
    info = sysinfo.collect(roots, probe=roots == procfs.DEFAULT)
    if report.stdout_format(args, default="text") == "json":
        report.emit_output(report.to_json(info), args)
        return
    text = io.StringIO()
    print_text(info, args.all_events, text)
    report.emit_output(text.getvalue(), args, info)
