"""Benchmarks: inference backends (this engine and its peers) and the harness that times them."""
