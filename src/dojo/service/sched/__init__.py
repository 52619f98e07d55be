"""Scheduling: the policy, the pass over the job store, traces and the simulator."""
