"""Closed-loop evaluation in nines: exact intervals (nines), held-out suites (evaluate), `dojo eval`."""
