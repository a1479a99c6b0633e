# _core.pxd: the extension's own types, declared once so that its wrapper files (_kernels.pxi,
# _calib.pxi, _perf.pxi, _engine.pxi) can use each other's classes in any order.
from slm cimport *


cdef class HookSource:
    """Anything the engine can call at region edges: a region table or a trace recorder."""
    cdef const slm_region_hooks *hooks_ptr(self) except NULL


cdef class Weight:
    cdef slm_weight w
    cdef object _data
    cdef readonly int type
    cdef readonly int64_t rows, cols


cdef class TraceRecorder(HookSource):
    cdef slm_trace_recorder *r
    cdef readonly HookSource next_hooks


cdef class CounterSet:
    cdef slm_counters *c
    cdef int n_events
    cdef int users       # region tables that hold this set
    cdef slm_counters *ptr(self) except NULL


cdef class RegionTable(HookSource):
    cdef slm_region_table *t
    cdef readonly object counters
    cdef int n_events
    cdef slm_region_hooks hooks     # the table's hooks, at an address that lives with it


cdef class SamplerCore:
    cdef slm_sampler *s
    cdef object dtype


cdef class Engine:
    cdef slm_model *m
    cdef int vocab
    cdef object keep_alive
    cdef HookSource hooks_owner
    cdef slm_model *_get(self) except NULL
