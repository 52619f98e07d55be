"""Alembic revision scripts of the job store, one per schema version (the revision id is it)."""
