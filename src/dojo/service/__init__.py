"""Dojo as a service: a multi-tenant REST API over a job store (SQLite or PostgreSQL).

Subpackages, each one subject:

- :mod:`~dojo.service.api`: the FastAPI application (``app``), its routes (``routes_*``),
  request and response bodies (``models``), tokens and roles (``auth``), dependencies
  (``deps``), problem answers (``problems``), body limits (``limits``), uploads and the
  operator actions behind ``dojo admin`` (``admin``);
- :mod:`~dojo.service.store`: the job store: tables (``schema``), engines, sessions and
  migrations (``db``, ``migrations/``), jobs (``jobstore``), tenants and quotas (``tenants``)
  and the tenant folders on disk (``storage``);
- :mod:`~dojo.service.sched`: the scheduling policy (``scheduler``), the pass over the job store
  (``dispatch``), traces and the simulator (``trace``, ``simulate``) and ``dojo sched``;
- :mod:`~dojo.service.agent`: the agent that runs placed jobs (``runner``) and stores the drive
  logs they write (``drive_logs``);
- :mod:`~dojo.service.web`: the dashboard (pages, login, the compute map, SVG charts).

Shared by all of them, here: :mod:`config` (settings and limits), :mod:`constants` (statuses and
kinds), :mod:`specs` (job specs), :mod:`placement` (where a job runs), :mod:`client` (the HTTP
client) and :mod:`commands` (the ``dojo serve/admin/submit/jobs`` subcommands).

Importing this package imports nothing heavy; FastAPI and SQLAlchemy load on first use.
"""
