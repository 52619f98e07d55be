"""Benchmarks: what Dojo's parts cost, measured the same way each time."""
