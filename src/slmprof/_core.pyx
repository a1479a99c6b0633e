# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The only boundary between Python and slmprof's C core.

C returns 0 or a negative errno-style status; `check()` below is the one place that turns a
status into an exception. The C declarations are in slm.pxd, this module's classes in
_core.pxd; each subject keeps its wrappers in its own include file.
"""
import os
import threading

from cpython.exc cimport PyErr_CheckSignals
from cpython.pythread cimport PyThread_get_thread_ident
cimport numpy as cnp
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset
import numpy as np

from slmprof import errors

cnp.import_array()

cdef int check(int status, str what) except -1:
    """Raise the exception that matches a C status; `what` says what was being done."""
    if status >= 0:
        return status
    if status == SLM_ENOMEM:
        raise MemoryError(f"{what}: out of memory")
    if status == SLM_EUNSUPPORTED_TYPE:
        raise errors.UnsupportedError(f"{what}: tensor type has no kernel")
    if status == SLM_ESHAPE:
        raise errors.ShapeError(f"{what}: shapes do not agree")
    if status == SLM_ECTX:
        raise errors.ContextOverflowError(f"{what}: context length exceeded")
    if status == SLM_ERANGE:
        raise ValueError(f"{what}: value out of range")
    if status == SLM_EINVAL:
        raise ValueError(f"{what}: invalid argument")
    if status == SLM_ENOSYS:
        raise errors.UnavailableError(f"{what}: not available on this machine or build")
    if status == SLM_EINTR:
        raise KeyboardInterrupt(what)
    raise OSError(-status, f"{what}: {os.strerror(-status)}")


cdef class HookSource:
    """Anything the engine can call at region edges (a RegionTable, a TraceRecorder): hand it
    to Engine.set_hooks."""
    cdef const slm_region_hooks *hooks_ptr(self) except NULL:
        raise NotImplementedError


include "_kernels.pxi"
include "_calib.pxi"
include "_perf.pxi"
include "_engine.pxi"
