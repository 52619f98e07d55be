"""The FastAPI application: routers, limits, error answers and the health check."""

from __future__ import annotations

import gc
import json
import logging
import os
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, OperationalError

from dojo.errors import DojoConfigError
from dojo.service.api import (
    routes_admin,
    routes_code,
    routes_datasets,
    routes_jobs,
    routes_me,
    routes_models,
    routes_usage,
)
from dojo.service.api.deps import Context, Ctx
from dojo.service.api.limits import BodyLimit
from dojo.service.api.models import Health
from dojo.service.api.problems import ApiError
from dojo.service.config import ServiceConfig
from dojo.service.store.db import Database, masked
from dojo.service.store.storage import Storage
from dojo.service.web import routes as dashboard

log = logging.getLogger("dojo.service")
CONFIG_ENV = "DOJO_SERVE_CONFIG"  # how `dojo serve --workers N` hands its settings to each worker


def build_context(config: ServiceConfig) -> Context:
    """Open and migrate the job store and the data folder; a DojoConfigError if either fails."""
    try:
        Path(config.data_dir).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DojoConfigError(
            f"--data-dir {config.data_dir} cannot be created ({e.strerror})."
        ) from None
    db = Database(config.resolved_db_url)
    db.migrate()
    return Context(
        config=config, db=db, storage=Storage(Path(config.data_dir), config.min_free_bytes)
    )


def create_app(config: ServiceConfig, ctx: Context | None = None) -> FastAPI:
    ctx = ctx or build_context(config)
    app = FastAPI(
        title="Dojo",
        version="1",
        description="Multi-tenant training service: datasets, code, jobs (drive, ingest, train, "
        "eval, loop, script), logs, metrics, models and usage. "
        "Authenticate with 'Authorization: Bearer TOKEN'.",
    )
    app.state.ctx = ctx
    for module in (routes_admin, routes_me, routes_datasets, routes_jobs, routes_models, dashboard):
        app.include_router(module.router)
    app.include_router(routes_usage.router)
    app.include_router(routes_code.router)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(
            {"detail": exc.detail, **exc.extra}, status_code=exc.status, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own answer echoes the input, which may not even be JSON (NaN): loc/msg/type only
        errors = [
            {
                "loc": [str(p) for p in e.get("loc", ())],
                "msg": str(e.get("msg", "")),
                "type": str(e.get("type", "")),
            }
            for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(DataError)
    async def _bad_value(_: Request, exc: DataError) -> JSONResponse:
        return JSONResponse(
            {
                "detail": "A value in the request cannot be stored or looked up "
                "(a NUL character, or a number out of range)."
            },
            status_code=422,
        )

    @app.exception_handler(OperationalError)
    async def _db_down(_: Request, exc: OperationalError) -> JSONResponse:
        log.error("job store error: %s", exc)
        return JSONResponse(
            {"detail": "The job store is unavailable; try again shortly."}, status_code=503
        )

    @app.get("/healthz", response_model=Health, tags=["health"])
    def health(c: Ctx) -> Health:
        return Health(ok=True, schema_version=c.db.version(), database=masked(c.db.url))

    app.add_middleware(
        BodyLimit, max_json_bytes=config.max_json_bytes, max_upload_bytes=config.max_upload_bytes
    )
    return app


def config_to_env(config: ServiceConfig) -> str:
    """``config``'s settings as the JSON that :func:`app_from_env` reads back in a worker process."""
    return json.dumps(
        {
            "db_url": config.db_url,
            "data_dir": str(config.data_dir),
            "max_upload_bytes": config.max_upload_bytes,
        }
    )


def app_from_env() -> FastAPI:
    """The app for one of `dojo serve --workers N`'s processes (uvicorn's ``factory``)."""
    raw = os.environ.get(CONFIG_ENV)
    if not raw:
        raise DojoConfigError(
            f"{CONFIG_ENV} is not set; start workers with `dojo serve --workers N`."
        )
    settings = json.loads(raw)
    app = create_app(
        ServiceConfig(
            db_url=settings["db_url"],
            data_dir=Path(settings["data_dir"]),
            max_upload_bytes=int(settings["max_upload_bytes"]),
        )
    )
    gc.freeze()  # see `dojo serve`: start-up's objects out of the collector's walk
    return app
