# _engine wrappers: filled in by its subject.
