"""Event tables: generic hardware, software, and the raw ARMv8 PMU events per Cortex core.

Numbers: perf_event_open(2) for the generic and software ids; include/linux/perf/arm_pmuv3.h
(ARMv8 common architectural and microarchitectural events) for the raw ARM codes; which
events each core implements from its Technical Reference Manual, as transcribed in the
kernel's tools/perf/pmu-events/arch/arm64/arm/<core>/*.json.
"""
from dataclasses import dataclass, field

PERF_TYPE_HARDWARE = 0
PERF_TYPE_SOFTWARE = 1
PERF_TYPE_HW_CACHE = 3
PERF_TYPE_RAW = 4


@dataclass(frozen=True)
class EventDef:
    name: str
    type: int
    config: int
    description: str

    @property
    def is_software(self):
        return self.type == PERF_TYPE_SOFTWARE


def _table(type_, rows):
    return {name: EventDef(name, type_, config, desc) for name, config, desc in rows}


GENERIC_HARDWARE = _table(PERF_TYPE_HARDWARE, [
    ("cycles", 0, "CPU cycles"),
    ("instructions", 1, "instructions retired"),
    ("cache-references", 2, "cache accesses (ARM: L1D_CACHE; x86: last-level cache)"),
    ("cache-misses", 3, "cache misses (ARM: L1D_CACHE_REFILL; x86: last-level cache)"),
    ("branches", 4, "branch instructions retired"),
    ("branch-misses", 5, "mispredicted branches"),
    ("bus-cycles", 6, "bus cycles"),
    ("stalled-cycles-frontend", 7, "cycles the front end delivered nothing"),
    ("stalled-cycles-backend", 8, "cycles the back end could not accept work"),
    ("ref-cycles", 9, "reference cycles (unaffected by frequency scaling)"),
])

SOFTWARE = _table(PERF_TYPE_SOFTWARE, [
    ("cpu-clock", 0, "CPU clock, ns"),
    ("task-clock", 1, "CPU time of the measured threads, ns"),
    ("page-faults", 2, "page faults"),
    ("context-switches", 3, "context switches"),
    ("cpu-migrations", 4, "moves to another CPU"),
    ("minor-faults", 5, "page faults served without I/O"),
    ("major-faults", 6, "page faults that needed I/O"),
])

# ARMv8 PMUv3 common event numbers (arm_pmuv3.h, ARMV8_PMUV3_PERFCTR_*), perf-style names.
ARMV8_EVENTS = {
    "sw_incr": 0x00, "l1i_cache_refill": 0x01, "l1i_tlb_refill": 0x02, "l1d_cache_refill": 0x03,
    "l1d_cache": 0x04, "l1d_tlb_refill": 0x05, "ld_retired": 0x06, "st_retired": 0x07,
    "inst_retired": 0x08, "exc_taken": 0x09, "exc_return": 0x0A, "cid_write_retired": 0x0B,
    "pc_write_retired": 0x0C, "br_immed_retired": 0x0D, "br_return_retired": 0x0E,
    "unaligned_ldst_retired": 0x0F, "br_mis_pred": 0x10, "cpu_cycles": 0x11, "br_pred": 0x12,
    "mem_access": 0x13, "l1i_cache": 0x14, "l1d_cache_wb": 0x15, "l2d_cache": 0x16,
    "l2d_cache_refill": 0x17, "l2d_cache_wb": 0x18, "bus_access": 0x19, "memory_error": 0x1A,
    "inst_spec": 0x1B, "ttbr_write_retired": 0x1C, "bus_cycles": 0x1D,
    "l1d_cache_allocate": 0x1F, "l2d_cache_allocate": 0x20, "br_retired": 0x21,
    "br_mis_pred_retired": 0x22, "stall_frontend": 0x23, "stall_backend": 0x24,
    "l1d_tlb": 0x25, "l1i_tlb": 0x26, "l2i_cache": 0x27, "l2i_cache_refill": 0x28,
    "l3d_cache_allocate": 0x29, "l3d_cache_refill": 0x2A, "l3d_cache": 0x2B,
    "l3d_cache_wb": 0x2C, "l2d_tlb_refill": 0x2D, "l2i_tlb_refill": 0x2E, "l2d_tlb": 0x2F,
    "l2i_tlb": 0x30, "remote_access": 0x31, "ll_cache": 0x32, "ll_cache_miss": 0x33,
    "dtlb_walk": 0x34, "itlb_walk": 0x35, "ll_cache_rd": 0x36, "ll_cache_miss_rd": 0x37,
    "l1d_cache_rd": 0x40, "l1d_cache_wr": 0x41, "l1d_cache_refill_rd": 0x42,
    "l1d_cache_refill_wr": 0x43, "l2d_cache_rd": 0x50, "l2d_cache_wr": 0x51,
    "l2d_cache_refill_rd": 0x52, "l2d_cache_refill_wr": 0x53, "l2d_cache_wb_victim": 0x56,
    "l2d_cache_wb_clean": 0x57, "bus_access_rd": 0x60, "bus_access_wr": 0x61,
    "mem_access_rd": 0x66, "mem_access_wr": 0x67, "ld_spec": 0x70, "st_spec": 0x71,
    "ldst_spec": 0x72, "dp_spec": 0x73, "ase_spec": 0x74, "vfp_spec": 0x75, "crypto_spec": 0x77,
    "l3d_cache_rd": 0xA0,
}

_A72 = ["l1i_cache_refill", "l1i_tlb_refill", "l1d_cache_refill", "l1d_cache", "l1d_tlb_refill",
        "inst_retired", "exc_taken", "exc_return", "cid_write_retired", "br_mis_pred",
        "cpu_cycles", "br_pred", "mem_access", "l1i_cache", "l1d_cache_wb", "l2d_cache",
        "l2d_cache_refill", "l2d_cache_wb", "bus_access", "memory_error", "inst_spec",
        "ttbr_write_retired", "bus_cycles", "l1d_cache_rd", "l1d_cache_wr",
        "l1d_cache_refill_rd", "l1d_cache_refill_wr", "l2d_cache_rd", "l2d_cache_wr",
        "l2d_cache_refill_rd", "l2d_cache_refill_wr", "l2d_cache_wb_victim",
        "l2d_cache_wb_clean", "bus_access_rd", "bus_access_wr", "mem_access_rd",
        "mem_access_wr", "ld_spec", "st_spec", "ldst_spec", "dp_spec", "ase_spec", "vfp_spec",
        "crypto_spec"]
_A76 = _A72 + ["l2d_cache_allocate", "br_retired", "br_mis_pred_retired", "stall_frontend",
               "stall_backend", "l1d_tlb", "l1i_tlb", "l3d_cache_allocate", "l3d_cache_refill",
               "l3d_cache", "l2d_tlb_refill", "l2d_tlb", "dtlb_walk", "itlb_walk",
               "ll_cache_rd", "ll_cache_miss_rd", "l3d_cache_rd"]
_A53 = ["l1i_cache_refill", "l1i_tlb_refill", "l1d_cache_refill", "l1d_cache", "l1d_tlb_refill",
        "ld_retired", "st_retired", "inst_retired", "exc_taken", "exc_return",
        "pc_write_retired", "br_immed_retired", "unaligned_ldst_retired", "br_mis_pred",
        "cpu_cycles", "br_pred", "mem_access", "l1i_cache", "l1d_cache_wb", "l2d_cache",
        "l2d_cache_refill", "l2d_cache_wb", "bus_access", "memory_error", "bus_cycles"]
_A55 = _A53 + ["inst_spec", "l2d_cache_allocate", "br_retired", "br_mis_pred_retired",
               "stall_frontend", "stall_backend", "l1d_tlb", "l1i_tlb", "l3d_cache_allocate",
               "l3d_cache_refill", "l3d_cache", "l2d_tlb_refill", "l2d_tlb", "dtlb_walk",
               "itlb_walk", "ll_cache_rd", "ll_cache_miss_rd", "l1d_cache_rd", "l1d_cache_wr",
               "l1d_cache_refill_rd", "l1d_cache_refill_wr", "l2d_cache_rd", "l2d_cache_wr",
               "l2d_cache_refill_rd", "l2d_cache_refill_wr", "l3d_cache_rd"]


@dataclass(frozen=True)
class DramEstimate:
    """DRAM bytes estimated as (sum of these events) * line_bytes."""
    events: tuple
    line_bytes: int
    note: str


@dataclass(frozen=True)
class CoreInfo:
    name: str
    midr_part: int
    boards: str
    counters: int          # programmable counters; the cycle counter comes on top
    events: tuple          # raw event names this core implements
    default_events: tuple  # what `stat` and `layers` count by default (fits one group)
    dram: DramEstimate = field(default=None)

    def raw_events(self):
        return {n: EventDef(n, PERF_TYPE_RAW, ARMV8_EVENTS[n], f"ARMv8 event 0x{ARMV8_EVENTS[n]:02X}")
                for n in self.events}


ARM_IMPLEMENTER = 0x41
CORES = {c.midr_part: c for c in [
    CoreInfo("cortex-a72", 0xD08, "Raspberry Pi 4 / 400 / CM4", 6, tuple(_A72),
             ("cycles", "instructions", "l1d_cache", "l1d_cache_refill", "l2d_cache_refill",
              "l2d_cache_wb", "ase_spec"),
             DramEstimate(("l2d_cache_refill", "l2d_cache_wb"), 64,
                          "L2 is the last level on the A72: refills read DRAM, write-backs write it")),
    CoreInfo("cortex-a76", 0xD0B, "Raspberry Pi 5 / CM5", 6, tuple(_A76),
             ("cycles", "instructions", "stall_backend", "l2d_cache_refill", "l3d_cache_refill",
              "ll_cache_miss_rd", "ase_spec"),
             DramEstimate(("l3d_cache_refill",), 64,
                          "L3D_CACHE_REFILL counts lines from outside the cluster (DRAM reads)")),
    CoreInfo("cortex-a53", 0xD03, "Raspberry Pi 3 / Zero 2 W", 6, tuple(_A53),
             ("cycles", "instructions", "l1d_cache", "l1d_cache_refill", "l2d_cache_refill",
              "l2d_cache_wb", "mem_access"),
             DramEstimate(("l2d_cache_refill", "l2d_cache_wb"), 64,
                          "the cluster L2 is the last level on the A53")),
    CoreInfo("cortex-a55", 0xD05, "RK3566/RK3568 and similar boards", 6, tuple(_A55),
             ("cycles", "instructions", "stall_backend", "l2d_cache_refill", "l3d_cache_refill",
              "l1d_cache_refill", "inst_spec"),
             DramEstimate(("l3d_cache_refill",), 64,
                          "assumes a DSU L3; without one the event is not implemented")),
]}

# x86 and unknown cores: generic events only. 4 general-purpose counters is the safe
# assumption (Intel with SMT; the NMI watchdog may take one more).
GENERIC_COUNTERS = 4
GENERIC_DEFAULT = ("cycles", "instructions", "cache-references", "cache-misses", "branches",
                   "branch-misses")
SOFTWARE_DEFAULT = ("task-clock", "context-switches", "cpu-migrations", "page-faults",
                    "minor-faults", "major-faults")


def core_for_midr(midr):
    """CoreInfo for a MIDR_EL1 value (implementer Arm), or None."""
    if midr is None or (midr >> 24) & 0xFF != ARM_IMPLEMENTER:
        return None
    return CORES.get((midr >> 4) & 0xFFF)


def available_events(core=None):
    """All event names usable on `core` (CoreInfo or None): name -> EventDef."""
    table = dict(GENERIC_HARDWARE)
    table.update(SOFTWARE)
    if core is not None:
        table.update(core.raw_events())
    return table


def resolve(names, core=None):
    """EventDefs for names (perf spellings; rNN for a raw hex code). Raises ValueError naming
    the valid names when one is unknown."""
    table = available_events(core)
    out = []
    for name in names:
        name = name.strip()
        if not name:
            continue
        if name in table:
            out.append(table[name])
        elif len(name) > 1 and name[0] == "r" and all(ch in "0123456789abcdefABCDEF" for ch in name[1:]):
            out.append(EventDef(name, PERF_TYPE_RAW, int(name[1:], 16), "raw event"))
        else:
            where = f" on {core.name}" if core else ""
            raise ValueError(f"unknown event {name!r}{where}; valid events: "
                             + ", ".join(sorted(table)) + ", or rNN for a raw hex code")
    return out
