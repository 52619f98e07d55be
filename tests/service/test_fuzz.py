"""Schemathesis over the service's OpenAPI spec: generated requests to every operation, with a
tenant's or an admin's token, never get a 5xx.

12 examples an operation in the suite; a deeper run: ``DOJO_FUZZ_EXAMPLES=200 pytest tests/service/test_fuzz.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Err, Ok

from dojo.service.api import admin
from dojo.service.api.app import create_app
from dojo.service.config import MiB, ServiceConfig

ADMIN_PATHS = ("/v1/tenants", "/v1/tokens")
EXAMPLES = int(os.environ.get("DOJO_FUZZ_EXAMPLES", "12"))  # per operation


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Any, dict[str, str], dict[str, str]]]:
    root: Path = tmp_path_factory.mktemp("fuzz")
    url = f"sqlite:///{root / 'jobs.db'}"
    app = create_app(
        ServiceConfig(
            db_url=url,
            data_dir=root / "data",
            max_json_bytes=64 * 1024,
            max_upload_bytes=1 * MiB,
            min_free_bytes=0,
        )
    )
    tenant = admin.tenant_create(url, "fuzz", {})
    admin_token = admin.token_create(url, None, "fuzz admin")
    yield (
        app,
        {"Authorization": f"Bearer {tenant['token']}"},
        {"Authorization": f"Bearer {admin_token}"},
    )
    app.state.ctx.db.dispose()


def test_no_generated_request_gets_a_server_error(
    service: tuple[Any, dict[str, str], dict[str, str]],
) -> None:
    app, tenant, admin_headers = service
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    results = list(schema.get_all_operations())
    invalid = [result.err() for result in results if isinstance(result, Err)]
    assert not invalid, invalid
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) >= 20  # every route made it into the spec
    failures: list[str] = []
    calls = 0
    for op in operations:
        headers = admin_headers if op.path.startswith(ADMIN_PATHS) else tenant

        @given(case=op.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def call(case: Any) -> None:
            nonlocal calls
            calls += 1
            response = case.call(headers=headers)  # noqa: B023 (called at once, in this iteration)
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
                )

        call()
    print(
        f"schemathesis: {calls} generated requests over {len(operations)} operations"
    )  # shown with -s
    assert calls >= min(EXAMPLES, 5) * len(operations)
    assert not failures, "\n".join(failures[:10])
