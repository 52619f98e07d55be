"""The data engine: ingest drive logs into the clip store, catalog, mine, version datasets, load."""
