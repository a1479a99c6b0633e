"""Hardware and software counters: which events to count here, why others cannot be, and
readings that say whether they were scaled or never counted.

Policy lives here; the groups, reads and scaling are C (csrc/perf/counters.c). The fallback
chain: the requested (or default) events are probed one by one; those that open are counted,
the others carry a reason (no PMU, paranoid level, unsupported). When no hardware event
opens, the software events are still counted through the same group/read/scale code; when
not even those open, nothing is counted and the reason says so.
"""
import errno
import os
import platform
from dataclasses import dataclass, field

from slmprof import _core

from slmprof.measure import events as ev, procfs
from slmprof.errors import UnavailableError


# ---------------------------------------------------------------- machine facts

@dataclass(frozen=True)
class CoreDetection:
    core: object        # events.CoreInfo or None
    midr: object        # int or None
    source: str         # how it was found: "mrs MIDR_EL1", "/proc/cpuinfo", "sysfs", "none"


def detect_core(roots=procfs.DEFAULT):
    """The Cortex core this runs on: from `mrs MIDR_EL1` when the kernel emulates it
    (HWCAP_CPUID; only meaningful with the real roots), else sysfs midr_el1, else
    /proc/cpuinfo 'CPU part'."""
    if roots == procfs.DEFAULT:
        midr = _core.cpu_midr()
        if midr is not None:
            return CoreDetection(ev.core_for_midr(midr), midr, "mrs MIDR_EL1")
    midr = procfs.midr_from_sysfs(roots)
    if midr is not None:
        return CoreDetection(ev.core_for_midr(midr), midr, "sysfs midr_el1")
    midr = procfs.midr_from_cpuinfo(roots)
    if midr is not None:
        return CoreDetection(ev.core_for_midr(midr), midr, "/proc/cpuinfo")
    return CoreDetection(None, None, "none")


def paranoid(roots=procfs.DEFAULT):
    return procfs.sysctl("kernel.perf_event_paranoid", roots)


def privileged():
    return os.geteuid() == 0


def needs_exclude_kernel(roots=procfs.DEFAULT):
    """perf_event_paranoid >= 2 refuses kernel-mode counting to unprivileged users."""
    level = paranoid(roots)
    return not privileged() and (level is None or level >= 2)


def is_arm64():
    return platform.machine() in ("aarch64", "arm64")


def _arm_roots(roots):
    if roots == procfs.DEFAULT:
        return is_arm64()
    midr = procfs.midr_from_sysfs(roots) or procfs.midr_from_cpuinfo(roots)
    return midr is not None


def user_read_state(roots=procfs.DEFAULT):
    """(allowed, explanation) for user-space counter reads at region edges."""
    if not procfs.hardware_pmus(roots):
        return False, "no hardware PMU: regions read software events with read()"
    if _arm_roots(roots):
        access = procfs.sysctl("kernel.perf_user_access", roots)
        if access is None:
            return False, "kernel.perf_user_access is absent (kernel older than 5.17): regions use read()"
        if access == 0:
            return False, ("kernel.perf_user_access = 0: regions use read(); enable the mrs "
                           "path with `sudo sysctl kernel.perf_user_access=1`")
        return True, "kernel.perf_user_access = 1: hardware groups are read with mrs"
    if platform.machine() in ("x86_64", "i686", "i386"):
        rdpmc = procfs.read_int(roots.s("bus/event_source/devices/cpu/rdpmc"))
        if rdpmc is None:
            return False, "no /sys/bus/event_source/devices/cpu/rdpmc: regions use read()"
        if rdpmc == 0:
            return False, ("rdpmc disabled (/sys/bus/event_source/devices/cpu/rdpmc = 0); enable "
                           "with `echo 1 | sudo tee /sys/bus/event_source/devices/cpu/rdpmc`")
        return True, "rdpmc allowed for processes with open events"
    return False, f"no user-space counter read on {platform.machine()}: regions use read()"


def explain_errno(code, event, roots=procfs.DEFAULT):
    """Why an event cannot be opened, and how to enable it when that is possible."""
    name = "EOPNOTSUPP" if code == errno.EOPNOTSUPP else errno.errorcode.get(code, str(code))
    if code == errno.ENOENT:
        if not event.is_software and not procfs.hardware_pmus(roots):
            return (f"no hardware PMU on this machine ({name}; typical in virtual machines): "
                    "software events still work")
        return f"this PMU does not implement {event.name} ({name})"
    if code in (errno.EACCES, errno.EPERM):
        level = paranoid(roots)
        return (f"not permitted ({name}): kernel.perf_event_paranoid = {level}; allow counting "
                "your own processes with `sudo sysctl kernel.perf_event_paranoid=2` (1 for "
                "kernel-mode counts), or grant CAP_PERFMON")
    if code == errno.EOPNOTSUPP:
        return f"the PMU does not support {event.name} in this mode ({name})"
    if code == errno.EINVAL:
        return f"the kernel rejected {event.name}'s configuration ({name})"
    if code == errno.ENODEV:
        return f"no device for {event.name} on this CPU ({name})"
    if code == errno.ENOSYS:
        return ("this kernel (or emulator, e.g. qemu user mode) has no perf_event_open "
                f"({name}): nothing can be counted")
    if code == errno.EMFILE:
        return f"out of file descriptors ({name}); raise `ulimit -n`"
    return f"{event.name}: {os.strerror(code)} ({name})"


# ---------------------------------------------------------------- readings

@dataclass
class Reading:
    """One event's total. value is None when there is no value ('not counted' or
    'unavailable'); scaled is True when multiplexing made it an estimate."""
    name: str
    value: object
    status: str            # exact | scaled | not counted | unavailable
    raw: int = 0
    enabled_ns: int = 0
    running_ns: int = 0
    reason: object = None

    @property
    def scaled(self):
        return self.status == "scaled"

    @property
    def running_fraction(self):
        return self.running_ns / self.enabled_ns if self.enabled_ns else None

    def as_dict(self):
        return {"name": self.name, "value": self.value, "status": self.status, "raw": self.raw,
                "enabled_ns": self.enabled_ns, "running_ns": self.running_ns,
                "running_fraction": self.running_fraction, "reason": self.reason}


def interpret(name, v):
    """A Reading from the C aggregate {raw, scaled, enabled_ns, running_ns, n_scaled,
    n_not_counted}: the one place that decides exact / scaled / not counted."""
    if v["n_not_counted"] and v["running_ns"] == 0:
        return Reading(name, None, "not counted", v["raw"], v["enabled_ns"], v["running_ns"],
                       "enabled but never scheduled on the PMU")
    if v["n_scaled"] or v["n_not_counted"]:
        reason = "multiplexed: value = raw * enabled / running"
        if v["n_not_counted"]:
            reason += f"; {v['n_not_counted']} thread group(s) never counted"
        return Reading(name, v["scaled"], "scaled", v["raw"], v["enabled_ns"], v["running_ns"], reason)
    return Reading(name, float(v["raw"]), "exact", v["raw"], v["enabled_ns"], v["running_ns"])


# ---------------------------------------------------------------- event states and groups

@dataclass
class EventState:
    event: object           # events.EventDef
    available: bool
    reason: object = None   # why not, when not
    errno: object = None
    group: object = None
    config1: int = 0        # arm64: 2 asks for user access (mrs)

    def as_dict(self):
        return {"name": self.event.name, "type": self.event.type, "config": self.event.config,
                "available": self.available, "reason": self.reason, "group": self.group}


def default_event_names(core):
    hw = core.default_events if core else ev.GENERIC_DEFAULT
    return list(hw) + list(ev.SOFTWARE_DEFAULT)


def _is_clock(e):
    return e.type == ev.PERF_TYPE_SOFTWARE and e.config in (0, 1)


def plan_groups(event_defs, counters):
    """Group index per event: the software events in one group, hardware events in groups
    of at most `counters` (the cycle counter is extra on ARM, so cycles rides along).
    Every thread reads one group per index at each region edge, so fewer groups is cheaper."""
    groups, hw_group, hw_fill, next_group = [], None, 0, 0
    sw_group = None
    for e in event_defs:
        if e.is_software:
            if sw_group is None:
                sw_group, next_group = next_group, next_group + 1
            groups.append(sw_group)
            continue
        is_cycles = e.type == ev.PERF_TYPE_HARDWARE and e.config == 0
        if hw_group is None or (not is_cycles and hw_fill >= counters):
            hw_group, hw_fill, next_group = next_group, 0, next_group + 1
        if not is_cycles:
            hw_fill += 1
        groups.append(hw_group)
    return groups


class Counters:
    """Counters for this process (every thread, existing ones included) or for a child.

        c = Counters()                     # default events for this core
        c.attach_threads()                 # again after new threads appear
        readings = c.read()                # {name: Reading}

    events: names (perf spellings, core raw names, rNN); None: the core's defaults plus
    the software events. Unknown names raise ValueError listing the valid ones.
    inherit/enable_on_exec: for counting a child process from exec on (see `stat`).
    exclude_kernel: None counts kernel mode too when perf_event_paranoid allows it; True
    counts user mode only (what a program's own instructions are)."""

    def __init__(self, events=None, *, roots=procfs.DEFAULT, inherit=False,
                 enable_on_exec=False, user_read=True, exclude_kernel=None):
        self.roots = roots
        self.detection = detect_core(roots)
        core = self.detection.core
        explicit = events is not None
        names = list(events) if explicit else default_event_names(core)
        defs = ev.resolve(names, core)
        if not defs:
            raise ValueError("no events given")
        if len(defs) > _core.PERF_MAX_EVENTS:
            raise ValueError(f"{len(defs)} events: at most {_core.PERF_MAX_EVENTS} at once")
        self.exclude_kernel = bool(exclude_kernel) or needs_exclude_kernel(roots)
        flags = _core.PERF_EXCLUDE_KERNEL if self.exclude_kernel else 0
        self.user_read, self.user_read_reason = user_read_state(roots) if user_read else (
            False, "user-space reads not requested")
        if inherit or enable_on_exec:
            self.user_read, self.user_read_reason = False, "counting another process: read() only"
        self.states = []
        for d in defs:
            cfg1 = 2 if (self.user_read and is_arm64() and not d.is_software) else 0
            rc = _core.perf_probe(d.type, d.config, cfg1, flags)
            if rc < 0 and cfg1:  # user access refused for this event: count it without
                cfg1 = 0
                rc = _core.perf_probe(d.type, d.config, 0, flags)
            st = EventState(d, rc == 0, None if rc == 0 else explain_errno(-rc, d, roots),
                            None if rc == 0 else -rc, config1=cfg1)
            self.states.append(st)
        active = [s for s in self.states if s.available]
        hw_active = [s for s in active if not s.event.is_software]
        hw_wanted = [s for s in self.states if not s.event.is_software]
        if hw_active:
            self.mode = "hardware"
            self.mode_reason = None
        elif active:
            self.mode = "software"
            first = next((s for s in hw_wanted if not s.available), None)
            self.mode_reason = ("software events only: " + first.reason) if first else None
        else:
            self.mode = "none"
            first = next((s for s in self.states if not s.available), None)
            self.mode_reason = "nothing can be counted: " + (first.reason if first else "no events")
        counters_per_group = core.counters if core else ev.GENERIC_COUNTERS
        for s, g in zip(active, plan_groups([s.event for s in active], counters_per_group)):
            s.group = g
        # Leaders: cycles for hardware groups, task-clock (or cpu-clock) for software.
        active.sort(key=lambda s: (s.group, 0 if (_is_clock(s.event) or (
            s.event.type == ev.PERF_TYPE_HARDWARE and s.event.config == 0)) else 1))
        self.active = active
        self._set = None
        if active:
            if self.user_read and hw_active:
                flags |= _core.PERF_USER_READ
            if inherit:
                flags |= _core.PERF_INHERIT
            if enable_on_exec:
                flags |= _core.PERF_ENABLE_ON_EXEC
            self._set = _core.CounterSet(
                [(s.event.type, s.event.config, s.config1, s.group) for s in active], flags)

    # -- attaching
    def _check_attach(self, rc, what):
        if rc >= 0:
            return rc
        code = -rc
        if code == errno.EMFILE:
            raise OSError(code, f"{what}: too many open files: {len(self.active)} events per "
                                f"thread on {self.n_threads} threads already use {self.n_fds} "
                                "descriptors; raise the limit (`ulimit -n`) or count fewer events")
        if code in (errno.EACCES, errno.EPERM):
            raise UnavailableError(f"{what}: " + explain_errno(code, self.active[0].event, self.roots))
        raise OSError(code, f"{what}: {os.strerror(code)}")

    def attach_threads(self, pid=0):
        """Open groups on every thread of pid (0: this process) not yet attached."""
        if self._set is None:
            return 0
        return self._check_attach(self._set.attach_threads(pid), "attaching counters to threads")

    def attach_task(self, tid):
        if self._set is None:
            return 0
        return self._check_attach(self._set.attach_task(tid), f"attaching counters to task {tid}")

    def enable(self):
        if self._set is not None:
            self._set.enable()

    def disable(self):
        if self._set is not None:
            self._set.disable()

    # -- reading
    def read(self):
        """{name: Reading} for every requested event, unavailable ones included."""
        out = {}
        values = self._set.read() if self._set is not None else []
        by_name = {s.event.name: v for s, v in zip(self.active, values)}
        for s in self.states:
            if s.available:
                out[s.event.name] = interpret(s.event.name, by_name[s.event.name])
            else:
                out[s.event.name] = Reading(s.event.name, None, "unavailable", reason=s.reason)
        return out

    @property
    def names(self):
        return [s.event.name for s in self.active]

    @property
    def counter_set(self):
        """The C CounterSet (None when nothing could be opened); regions read it."""
        return self._set

    @property
    def n_threads(self):
        return self._set.n_threads if self._set is not None else 0

    @property
    def n_fds(self):
        return self._set.n_fds if self._set is not None else 0

    @property
    def read_path(self):
        """read / rdpmc / mrs: how the calling thread's groups are read at region edges."""
        return self._set.read_path if self._set is not None else "none"

    @property
    def read_stats(self):
        """How (thread, group) reads were served so far: user (rdpmc/mrs), syscall (read()),
        user_fallback (user path tried, group not on the PMU then, read() used)."""
        if self._set is None:
            return {"user": 0, "syscall": 0, "user_fallback": 0}
        return self._set.read_stats()

    def describe(self):
        return {"mode": self.mode, "mode_reason": self.mode_reason,
                "core": self.detection.core.name if self.detection.core else None,
                "core_source": self.detection.source,
                "midr": None if self.detection.midr is None else f"0x{self.detection.midr:08x}",
                "exclude_kernel": self.exclude_kernel, "read_path": self.read_path,
                "user_read_reason": self.user_read_reason, "threads": self.n_threads,
                "events": [s.as_dict() for s in self.states]}

    def close(self):
        if self._set is not None:
            self._set.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
