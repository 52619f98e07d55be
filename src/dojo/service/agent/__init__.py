"""The agent: claims placed jobs from the store, runs them, reports logs, metrics, models."""
