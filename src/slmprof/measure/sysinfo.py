"""What this machine offers slmprof: CPU and core type, ISA features and the kernel path in
use, memory, kernel, governor, board model, thermal zones, counter availability per event
(with reasons and how to enable), sampler sources found."""
import os
import platform

from slmprof import _core
from slmprof.engine import quant
from slmprof.errors import SlmprofError
from slmprof.measure import counters as cnt, events as ev, procfs
from slmprof.measure.sampler import discover
from slmprof.measure.schema import SCHEMA


def _isa_info():
    """(active ISA path, available ISAs, note): the note says why there is no active path
    (SLMPROF_ISA names one this machine cannot run)."""
    try:
        return quant.active_isa(), list(quant.available_isas()), None
    except SlmprofError as e:
        return None, list(quant.available_isas()), str(e)


def cpu_features(roots=procfs.DEFAULT):
    """ISA feature flags from /proc/cpuinfo ('flags' on x86, 'Features' on ARM)."""
    procs, _ = procfs.cpuinfo(roots)
    for p in procs:
        for key in ("flags", "Features"):
            if key in p:
                return p[key].split()
    return []


INTERESTING_FEATURES = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vnni",
                        "avxvnni", "asimd", "asimddp", "asimdhp", "i8mm", "sve", "fphp", "cpuid")


def cpu_model(roots=procfs.DEFAULT):
    procs, common = procfs.cpuinfo(roots)
    for p in procs:
        if "model name" in p:
            return p["model name"]
    det = cnt.detect_core(roots)
    if det.core:
        return f"ARM {det.core.name}"
    return common.get("Model") or platform.processor() or platform.machine()


def counter_availability(roots=procfs.DEFAULT):
    """Every event of this core's table (generic hardware, its raw events or none, software):
    [{'name', 'kind', 'available', 'reason'}], probed on this thread."""
    det = cnt.detect_core(roots)
    flags = _core.PERF_EXCLUDE_KERNEL if cnt.needs_exclude_kernel(roots) else 0
    table = ev.available_events(det.core)
    out = []
    for name, d in table.items():
        rc = _core.perf_probe(d.type, d.config, 0, flags)
        kind = {ev.PERF_TYPE_HARDWARE: "hardware", ev.PERF_TYPE_SOFTWARE: "software",
                ev.PERF_TYPE_RAW: "raw"}.get(d.type, str(d.type))
        out.append({"name": name, "kind": kind, "available": rc == 0,
                    "reason": None if rc == 0 else cnt.explain_errno(-rc, d, roots)})
    return out


def how_to_enable(roots=procfs.DEFAULT):
    """Concrete steps that would make more counters available here."""
    steps = []
    level = cnt.paranoid(roots)
    if level is not None and level > 2:
        steps.append(f"kernel.perf_event_paranoid = {level} forbids unprivileged counting: "
                     "`sudo sysctl kernel.perf_event_paranoid=2`")
    elif level == 2:
        steps.append("kernel.perf_event_paranoid = 2: user-mode counts of your own processes only "
                     "(slmprof sets exclude_kernel); `sudo sysctl kernel.perf_event_paranoid=1` "
                     "adds kernel-mode time")
    if not procfs.hardware_pmus(roots):
        steps.append("no hardware PMU is registered (/sys/bus/event_source/devices has no cpu or "
                     "armv8_* entry): in a VM enable the virtual PMU (e.g. KVM -cpu host,pmu=on); "
                     "on a Raspberry Pi use a 64-bit kernel with the arm-pmu device-tree node")
    allowed, why = cnt.user_read_state(roots)
    if not allowed and procfs.hardware_pmus(roots):
        steps.append(why)
    return steps


def collect(roots=procfs.DEFAULT, probe=True):
    """Everything `slmprof sysinfo` shows, as a JSON-ready dict. probe=False skips opening
    perf events (for fake roots, where the probes would describe the real machine)."""
    det = cnt.detect_core(roots)
    mem = procfs.meminfo(roots)
    freq = procfs.cpufreq(roots)
    governors = sorted({v["governor"] for v in freq.values() if v["governor"]})
    live = roots == procfs.DEFAULT
    active_isa, isas, isa_note = _isa_info() if live else (
        None, [], "not shown for another /proc or /sys tree")
    feats = cpu_features(roots)
    throttled_path = procfs.throttled_path(roots)
    throttled = procfs.read_int(throttled_path, base=16) if throttled_path else None
    user_read, user_read_why = cnt.user_read_state(roots)
    sources = discover(0, roots)
    info = {
        "schema": SCHEMA,
        "kind": "sysinfo",
        "machine": platform.machine() if live else ("aarch64" if det.midr is not None else None),
        "board": procfs.board_model(roots),
        "cpu": {
            "model": cpu_model(roots),
            "core": det.core.name if det.core else None,
            "core_boards": det.core.boards if det.core else None,
            "midr": None if det.midr is None else f"0x{det.midr:08x}",
            "core_source": det.source,
            "logical_cpus": len(procfs.cpu_dirs(roots)) or os.cpu_count(),
            "features": [f for f in INTERESTING_FEATURES if f in feats],
            "isa_path": active_isa, "isas_available": isas, "isa_note": isa_note,
            "counters_per_core": (det.core.counters if det.core else None),
            "dram_estimate": ({"events": list(det.core.dram.events),
                               "line_bytes": det.core.dram.line_bytes,
                               "note": det.core.dram.note} if det.core else None),
        },
        "memory": {"total_bytes": mem.get("MemTotal"), "available_bytes": mem.get("MemAvailable")},
        "kernel": {"release": procfs.kernel_release(roots),
                   "perf_event_paranoid": cnt.paranoid(roots),
                   "perf_user_access": procfs.sysctl("kernel.perf_user_access", roots),
                   "pmus": procfs.pmu_devices(roots),
                   "hardware_pmus": procfs.hardware_pmus(roots),
                   "user_read": user_read, "user_read_reason": user_read_why},
        "cpufreq": {"governors": governors,
                    "per_cpu": {str(k): v for k, v in freq.items()},
                    "note": (None if freq else "no cpufreq in sysfs (virtual machine, or no "
                             "cpufreq driver)")},
        "thermal_zones": [{"zone": i, "type": t, "celsius": c}
                          for i, t, _, c in procfs.thermal_zones(roots)],
        "throttled": (None if throttled is None else
                      {"value": f"0x{throttled:x}", "path": throttled_path,
                       "meaning": procfs.decode_throttled(throttled)}),
        "hwmon": [{"name": n, "attributes": a} for n, a in procfs.hwmon_sensors(roots)],
        "sampler_sources": [{"name": s.name, "path": s.path,
                             "found": s.found and (s.path is None or os.path.exists(s.path)),
                             "reason": s.reason} for s in sources],
        "how_to_enable": how_to_enable(roots),
    }
    if probe:
        info["counters"] = counter_availability(roots)
    return info
