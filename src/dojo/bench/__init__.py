"""Dojo's benchmarks: each part beside its reference, measured in the same run (``dojo bench ...``).

Benchmarks import the library parts; no library part imports this package.
"""
