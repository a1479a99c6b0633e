"""Measurement: counters and their event tables, region profiling, the /proc and sysfs sampler,
this machine's facts and its calibrated ceilings, and traces of every region edge."""
