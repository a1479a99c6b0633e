# _kernels wrappers: filled in by its subject.
