"""What a report's numbers were measured on: CPU, cores, memory, kernel, the kernel path in use.
Read through measure/procfs (the one reader of /proc and /sys) and the engine's ISA table."""
import os
import platform

from slmprof.engine import quant
from slmprof.errors import SlmprofError
from slmprof.measure import procfs


def _cpu_model(procs, common):
    for key in ("model name", "Model", "Hardware", "Processor"):
        for fields in [*procs, common]:
            if fields.get(key):
                return fields[key]
    return None


def machine_info() -> dict:
    """Cheap (a few small /proc reads); never raises."""
    procs, common = procfs.cpuinfo()
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    info = {
        "hostname": platform.node(),
        "arch": platform.machine(),
        "cpu_model": _cpu_model(procs, common),
        "board": procfs.board_model(),
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "mem_total_bytes": procfs.meminfo().get("MemTotal"),
        "kernel": platform.release(),
        "os": platform.platform(terse=True),
        "python": platform.python_version(),
        "isa_available": list(quant.available_isas()),
    }
    try:
        info["isa_active"] = quant.active_isa()
    except SlmprofError as e:       # SLMPROF_ISA names a path this machine cannot run
        info["isa_active"] = None
        info["isa_note"] = str(e)
    return info
