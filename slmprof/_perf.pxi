# _perf wrappers: filled in by its subject.
