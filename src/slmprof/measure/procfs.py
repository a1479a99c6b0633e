"""Parsers for /proc and /sys files, with overridable roots (tests use fake trees).

`Roots(proc="/proc", sys="/sys")` names where to look; every reader takes one. The C sampler
parses the per-tick files itself; this module reads what is read once (cpuinfo, sysctls,
board model, thermal zone names) and finds which sampler sources exist.
"""
import glob
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Roots:
    proc: str = "/proc"
    sys: str = "/sys"

    def p(self, *parts):
        return os.path.join(self.proc, *parts)

    def s(self, *parts):
        return os.path.join(self.sys, *parts)


DEFAULT = Roots()


def read_text(path, default=None):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return default


def read_int(path, default=None, base=10):
    text = read_text(path)
    if text is None:
        return default
    try:
        return int(text.strip().split()[0], base)
    except (ValueError, IndexError):
        return default


def parse_key_values(text, sep=":"):
    """'Key: value unit' lines -> {key: first token of value as int when it parses}."""
    out = {}
    for line in (text or "").splitlines():
        key, found, rest = line.partition(sep)
        if not found:
            continue
        tok = rest.split()
        if not tok:
            out[key.strip()] = ""
            continue
        try:
            out[key.strip()] = int(tok[0])
        except ValueError:
            out[key.strip()] = rest.strip()
    return out


def meminfo(roots=DEFAULT):
    """/proc/meminfo in bytes: {'MemTotal': ..., 'MemAvailable': ...}."""
    kv = parse_key_values(read_text(roots.p("meminfo"), ""))
    return {k: v * 1024 for k, v in kv.items() if isinstance(v, int)}


def process_status(pid="self", roots=DEFAULT):
    """/proc/PID/status: sizes in bytes (VmRSS, VmHWM, ...), counts as ints."""
    kv = parse_key_values(read_text(roots.p(str(pid), "status"), ""))
    return {k: v * 1024 if k.startswith("Vm") and isinstance(v, int) else v for k, v in kv.items()}


def process_io(pid="self", roots=DEFAULT):
    """/proc/PID/io as ints ({} where it is closed to us)."""
    return {k: v for k, v in parse_key_values(read_text(roots.p(str(pid), "io"), "")).items()
            if isinstance(v, int)}


def processes_mapping(path, roots=DEFAULT):
    """PIDs of other processes that have `path` mapped (from /proc/PID/maps)."""
    real = os.path.realpath(path)
    pids = []
    for entry in os.listdir(roots.proc):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        maps = read_text(roots.p(entry, "maps"))
        if maps and any(line.rstrip().endswith(real) for line in maps.splitlines()):
            pids.append(int(entry))
    return pids


def drop_page_cache(roots=DEFAULT):
    """Ask the kernel to drop clean page-cache pages (root only); raises OSError otherwise."""
    with open(roots.p("sys", "vm", "drop_caches"), "w") as f:
        f.write("1\n")


def cpuinfo(roots=DEFAULT):
    """(list of per-processor dicts, dict of the fields outside processor blocks)."""
    procs, common, cur = [], {}, None
    for line in (read_text(roots.p("cpuinfo"), "") or "").splitlines():
        key, found, val = line.partition(":")
        if not found:
            cur = None
            continue
        key, val = key.strip(), val.strip()
        if key == "processor":
            cur = {"processor": val}
            procs.append(cur)
        elif cur is not None:
            cur[key] = val
        else:
            common[key] = val
    return procs, common


def midr_from_cpuinfo(roots=DEFAULT):
    """MIDR assembled from 'CPU implementer' / 'CPU part' / variant / revision, or None."""
    procs, _ = cpuinfo(roots)
    for p in procs:
        if "CPU implementer" in p and "CPU part" in p:
            try:
                impl = int(p["CPU implementer"], 0)
                part = int(p["CPU part"], 0)
                var = int(p.get("CPU variant", "0"), 0)
                rev = int(p.get("CPU revision", "0"), 0)
            except ValueError:
                return None
            return (impl << 24) | (var << 20) | (0xF << 16) | (part << 4) | rev
    return None


def midr_from_sysfs(roots=DEFAULT):
    return read_int(roots.s("devices/system/cpu/cpu0/regs/identification/midr_el1"), base=16)


def board_model(roots=DEFAULT):
    """Device-tree model ('Raspberry Pi 5 Model B Rev 1.0'), else DMI product name, else None."""
    for path in (roots.p("device-tree/model"), roots.s("firmware/devicetree/base/model")):
        text = read_text(path)
        if text:
            return text.rstrip("\x00\n ")
    vendor = (read_text(roots.s("class/dmi/id/sys_vendor")) or "").strip()
    product = (read_text(roots.s("class/dmi/id/product_name")) or "").strip()
    return " ".join(x for x in (vendor, product) if x) or None


def sysctl(name, roots=DEFAULT):
    """An integer sysctl such as kernel.perf_event_paranoid, or None if absent."""
    return read_int(roots.p("sys", *name.split(".")))


def cpu_dirs(roots=DEFAULT):
    """[(cpu index, /sys/devices/system/cpu/cpuN)] sorted by index."""
    out = []
    for d in glob.glob(roots.s("devices/system/cpu/cpu[0-9]*")):
        tail = os.path.basename(d)[3:]
        if tail.isdigit():
            out.append((int(tail), d))
    return sorted(out)


def cpufreq(roots=DEFAULT):
    """{cpu: {'cur_khz', 'min_khz', 'max_khz', 'governor'}} for CPUs that have cpufreq."""
    out = {}
    for cpu, d in cpu_dirs(roots):
        f = os.path.join(d, "cpufreq")
        if not os.path.isdir(f):
            continue
        out[cpu] = {"cur_khz": read_int(os.path.join(f, "scaling_cur_freq")),
                    "min_khz": read_int(os.path.join(f, "scaling_min_freq")),
                    "max_khz": read_int(os.path.join(f, "cpuinfo_max_freq")),
                    "governor": (read_text(os.path.join(f, "scaling_governor")) or "").strip() or None}
    return out


def thermal_zones(roots=DEFAULT):
    """[(zone index, type, path of temp, temperature in °C or None)]."""
    out = []
    for d in glob.glob(roots.s("class/thermal/thermal_zone[0-9]*")):
        idx = int(os.path.basename(d)[len("thermal_zone"):])
        temp = read_int(os.path.join(d, "temp"))
        out.append((idx, (read_text(os.path.join(d, "type")) or "").strip(),
                    os.path.join(d, "temp"), None if temp is None else temp / 1000.0))
    return sorted(out)


# Raspberry Pi firmware throttling state. The rpi kernels expose the mailbox's
# GET_THROTTLED value as a hex bit field at soc:firmware/get_throttled (Pi 4; on Pi 5 the
# firmware node sits under the soc@107c000000 bus); newer kernels also report under-voltage
# through the rpi_volt hwmon device (in0_lcrit_alarm).
THROTTLE_GLOBS = ("devices/platform/soc/soc:firmware/get_throttled",
                  "devices/platform/*/*:firmware/get_throttled",
                  "devices/platform/*firmware*/get_throttled")
THROTTLE_BITS = {0: "under-voltage now", 1: "ARM frequency capped now", 2: "throttled now",
                 3: "soft temperature limit now", 16: "under-voltage has occurred",
                 17: "frequency capping has occurred", 18: "throttling has occurred",
                 19: "soft temperature limit has occurred"}


def throttled_path(roots=DEFAULT):
    for pattern in THROTTLE_GLOBS:
        hits = sorted(glob.glob(roots.s(pattern)))
        if hits:
            return hits[0]
    return None


def undervolt_path(roots=DEFAULT):
    for d in sorted(glob.glob(roots.s("class/hwmon/hwmon*"))):
        if (read_text(os.path.join(d, "name")) or "").strip() == "rpi_volt":
            p = os.path.join(d, "in0_lcrit_alarm")
            if os.path.exists(p):
                return p
    return None


def decode_throttled(value):
    return [text for bit, text in sorted(THROTTLE_BITS.items()) if value >> bit & 1]


def rapl_domains(roots=DEFAULT):
    """[(name, energy_uj path)] for top-level powercap RAPL zones."""
    out = []
    for d in sorted(glob.glob(roots.s("class/powercap/intel-rapl:[0-9]*"))):
        if ":" in os.path.basename(d)[len("intel-rapl:"):]:
            continue  # subzones are inside their package's count
        name = (read_text(os.path.join(d, "name")) or os.path.basename(d)).strip()
        out.append((name, os.path.join(d, "energy_uj")))
    return out


def hwmon_sensors(roots=DEFAULT):
    """[(hwmon name, [attribute files])] found under /sys/class/hwmon."""
    out = []
    for d in sorted(glob.glob(roots.s("class/hwmon/hwmon*"))):
        name = (read_text(os.path.join(d, "name")) or "?").strip()
        attrs = sorted(os.path.basename(p) for p in glob.glob(os.path.join(d, "*_input")))
        attrs += sorted(os.path.basename(p) for p in glob.glob(os.path.join(d, "*_alarm")))
        out.append((name, attrs))
    return out


def pmu_devices(roots=DEFAULT):
    """Names under /sys/bus/event_source/devices (cpu, armv8_cortex_a76, software, ...)."""
    d = roots.s("bus/event_source/devices")
    try:
        return sorted(os.listdir(d))
    except OSError:
        return []


def hardware_pmus(roots=DEFAULT):
    return [n for n in pmu_devices(roots) if n == "cpu" or n.startswith(("armv8", "armv7", "cpu_"))]


def kernel_release(roots=DEFAULT):
    return (read_text(roots.p("sys/kernel/osrelease")) or os.uname().release).strip()


# /proc/stat "cpu" line fields, in USER_HZ ticks (proc(5)); steal is time a hypervisor ran
# something else while this VM's CPU wanted to run (0 on bare metal; absent on old kernels).
CPU_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest",
              "guest_nice")


def cpu_times(roots=DEFAULT):
    """The machine's CPU time by kind from /proc/stat, in seconds summed over CPUs: {'user',
    'nice', 'system', 'idle', 'iowait', 'irq', 'softirq', 'steal', ...}; fields this kernel
    does not report are absent. {} when the file cannot be read."""
    text = read_text(roots.p("stat"), "") or ""
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            out = {}
            for name, value in zip(CPU_FIELDS, parts[1:]):
                try:
                    out[name] = int(value) / hz
                except ValueError:
                    break
            return out
    return {}


def busy_seconds(times):
    """CPU seconds spent running something (guest time is inside user already)."""
    return sum(times.get(k, 0.0) for k in ("user", "nice", "system", "irq", "softirq"))


def task_ids(pid="self", roots=DEFAULT):
    """Thread ids of a process (/proc/PID/task)."""
    try:
        return sorted(int(t) for t in os.listdir(roots.p(str(pid), "task")) if t.isdigit())
    except OSError:
        return []


def thread_schedstat(tid, pid="self", roots=DEFAULT):
    """(ns on a CPU, ns runnable but waiting for one, timeslices) of one thread from
    /proc/PID/task/TID/schedstat, or None (no such thread, or no schedstats in this kernel)."""
    text = read_text(roots.p(str(pid), "task", str(tid), "schedstat"))
    try:
        run, wait, slices = (int(x) for x in text.split()[:3])
    except (AttributeError, ValueError):
        return None
    return run, wait, slices


def transparent_hugepages(roots=DEFAULT):
    """The kernel's transparent huge page mode ('always', 'madvise', 'never') or None."""
    text = read_text(roots.s("kernel/mm/transparent_hugepage/enabled"))
    if not text or "[" not in text:
        return None
    return text.split("[", 1)[1].split("]", 1)[0]
