"""Dojo as a service: a multi-tenant REST API over a job store (SQLite or PostgreSQL).

Modules: :mod:`config` (settings and limits), :mod:`schema` (tables), :mod:`db` (engines,
sessions, migrations), :mod:`auth` (tokens and roles), :mod:`storage` (tenant folders, safe
names, atomic uploads), :mod:`specs` and :mod:`api_models` (request and response bodies),
:mod:`jobstore` (submit, cancel, logs, metrics, and the claim/heartbeat/finish calls a scheduler
or agent uses), :mod:`routes_*` (HTTP endpoints), :mod:`app` (the FastAPI application),
:mod:`client` (HTTP client) and :mod:`commands` (the ``dojo`` subcommands).

Importing this package imports nothing heavy; FastAPI and SQLAlchemy load on first use.
"""
