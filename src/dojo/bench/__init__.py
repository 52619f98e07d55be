"""Dojo's benchmarks: the code behind the ``dojo bench ...`` commands."""
