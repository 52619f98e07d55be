"""A small HTTP client of the service (httpx), used by the ``dojo`` commands.

An error answer, or no answer, is a :class:`~dojo.errors.ServiceError` carrying the server's
one-sentence reason (and its HTTP status), so the command line prints one clear line; bad input
on this side (no token, a bad URL, a missing file) is a :class:`~dojo.errors.ConfigError`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from dojo.errors import DojoConfigError, ServiceError

DEFAULT_URL = "http://127.0.0.1:8000"


def _refused(response: httpx.Response) -> ServiceError:
    return ServiceError(
        f"{_detail(response)} (HTTP {response.status_code})", status=response.status_code
    )


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):  # FastAPI's validation errors
        return "; ".join(
            f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg')}" for d in detail
        )
    return str(detail) if detail else response.reason_phrase


class Client:
    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = (url or os.environ.get("DOJO_URL") or DEFAULT_URL).rstrip("/")
        self.token = token or os.environ.get("DOJO_TOKEN")
        if not self.url.startswith(("http://", "https://")):
            raise DojoConfigError(f"Service URL {self.url!r} must start with http:// or https://.")
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout_s, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        if not self.token:
            raise DojoConfigError("No token: pass --token or set DOJO_TOKEN.")
        try:
            response = self._http.request(method, path, **kw)
        except httpx.TransportError as e:
            raise ServiceError(
                f"Cannot reach the Dojo service at {self.url} ({e}); start it with "
                "`dojo serve` or set DOJO_URL."
            ) from None
        if response.status_code >= 400:
            raise _refused(response)
        return response

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        return self._request(method, path, **kw).json()

    # jobs
    def submit(
        self,
        kind: str,
        spec: dict[str, Any],
        compute: dict[str, int],
        priority: int = 0,
        name: str = "",
        time_limit_s: int | None = None,
    ) -> dict[str, Any]:
        body = {"kind": kind, "spec": spec, "compute": compute, "priority": priority, "name": name}
        if time_limit_s is not None:
            body["time_limit_s"] = time_limit_s
        return dict(self._json("POST", "/v1/jobs", json=body))

    def jobs(
        self, status: str | None = None, kind: str | None = None, limit: int = 100
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        if kind:
            params["kind"] = kind
        return dict(self._json("GET", "/v1/jobs", params=params))

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/v1/jobs/{_seg(job_id)}"))

    def cancel(self, job_id: str) -> dict[str, Any]:
        return dict(self._json("POST", f"/v1/jobs/{_seg(job_id)}/cancel"))

    def logs(self, job_id: str, offset: int = 0, follow: bool = False) -> Iterator[bytes]:
        path = f"/v1/jobs/{_seg(job_id)}/logs"
        params: dict[str, str | int] = {"offset": offset, "follow": str(follow).lower()}
        while not follow:  # the server sends at most 1 MiB at a time
            response = self._request("GET", path, params=params)
            if not response.content:
                return
            yield response.content
            params["offset"] = int(
                response.headers.get("x-log-offset", offset + len(response.content))
            )
        if not self.token:
            raise DojoConfigError("No token: pass --token or set DOJO_TOKEN.")
        try:
            with self._http.stream("GET", path, params=params, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _refused(response)
                yield from response.iter_bytes()
        except httpx.TransportError as e:
            raise ServiceError(f"Lost the log stream from {self.url} ({e}).") from None

    def metrics(self, job_id: str, after: int = 0) -> dict[str, Any]:
        return dict(self._json("GET", f"/v1/jobs/{_seg(job_id)}/metrics", params={"after": after}))

    # datasets, code and models
    def create_dataset(
        self, name: str, uri: str | None = None, kind: str = "drive_logs"
    ) -> dict[str, Any]:
        body = {"name": name, "uri": uri, "kind": kind}
        return dict(self._json("POST", "/v1/datasets", json=body))

    def datasets(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/v1/datasets"))

    def upload_code(self, archive: bytes, name: str) -> dict[str, Any]:
        """Upload a code archive (the bytes of a .tar.gz or .zip) under ``name``."""
        headers = {"Content-Type": "application/octet-stream"}
        return dict(
            self._json("POST", "/v1/code", params={"name": name}, content=archive, headers=headers)
        )

    def code(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/v1/code"))

    def models(self, job_id: str | None = None) -> list[dict[str, Any]]:
        params = {"job_id": job_id} if job_id else {}
        return list(self._json("GET", "/v1/models", params=params))

    def download_model(self, model_id: str, out: Path) -> Path:
        """Stream a model's file to ``out``, checked against its SHA-256 (a model may be larger
        than memory); nothing is left at ``out`` unless it arrived whole."""
        if not self.token:
            raise DojoConfigError("No token: pass --token or set DOJO_TOKEN.")
        part = out.with_name(f".{out.name}.part")
        digest = hashlib.sha256()
        try:
            with self._http.stream("GET", f"/v1/models/{_seg(model_id)}/download") as response:
                if response.status_code >= 400:
                    response.read()
                    raise _refused(response)
                with open(part, "wb") as f:
                    for chunk in response.iter_bytes():
                        digest.update(chunk)
                        f.write(chunk)
                expected = response.headers.get("x-sha256")
            if expected is not None and digest.hexdigest() != expected:
                raise ServiceError(
                    f"Model {model_id} arrived damaged (SHA-256 {digest.hexdigest()[:12]}...)."
                )
            part.replace(out)
        except httpx.TransportError as e:
            raise ServiceError(f"Lost the download from {self.url} ({e}).") from None
        finally:
            part.unlink(missing_ok=True)
        return out

    def upload(self, dataset_id: str, path: Path, name: str | None = None) -> dict[str, Any]:
        try:
            with open(path, "rb") as f:
                return dict(
                    self._json(
                        "POST",
                        f"/v1/datasets/{_seg(dataset_id)}/files",
                        params={"name": name or path.name},
                        content=f,
                        headers={"Content-Type": "application/octet-stream"},
                    )
                )
        except FileNotFoundError:
            raise DojoConfigError(f"File {path} does not exist.") from None

    def me(self) -> dict[str, Any]:
        return dict(self._json("GET", "/v1/me"))


def _seg(ident: str) -> str:
    """An id as one URL path segment (a hostile id cannot walk to another route)."""
    return quote(ident, safe="")
