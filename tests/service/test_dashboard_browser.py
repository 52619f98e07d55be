"""The dashboard in a real headless Chromium (Playwright) against a real uvicorn server on loopback.

Needs Debian's ``chromium`` (``apt-get install -y chromium``) and the ``playwright`` package
(``pip install playwright``; no ``playwright install``: the system browser is launched by path,
``$DOJO_CHROMIUM`` or ``/usr/bin/chromium``). Skipped, saying so, when either is missing.
``DOJO_SCREENSHOT=1`` also writes the map to ``docs/img/dashboard.png``.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from dojo.service.api import admin
from dojo.service.api.app import create_app
from dojo.service.config import ServiceConfig
from dojo.service.store import jobstore
from dojo.service.store.schema import Job
from dojo.service.web.svg import BUSY_FILL, FREE_FILL

from .test_dashboard import HOSTILE, mount

CHROMIUM = os.environ.get("DOJO_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]

if not Path(CHROMIUM).is_file():
    pytest.skip(
        f"Chromium is not installed ({CHROMIUM} missing): apt-get install -y chromium",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="the playwright package is not installed: "
    "pip install playwright (no `playwright install` needed)",
)


@dataclass
class World:
    url: str
    app: Any
    alpha: str  # tokens
    bravo: str
    jobs: dict[str, str]  # name -> id

    def api(self, token: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )

    def set(self, job_id: str, **values: Any) -> None:
        with self.app.state.ctx.db.session() as s:
            job = s.get(Job, job_id)
            for k, v in values.items():
                setattr(job, k, v)


def _tile(cab: int, tray: int, tile: int) -> str:
    return f"exapod0/cabinet{cab}/tray{tray}/tile{tile}"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A server with tenants alpha and bravo and a few placed jobs."""
    tmp = tmp_path_factory.mktemp("dash")
    db_url = f"sqlite:///{tmp / 'svc.db'}"
    app = create_app(ServiceConfig(db_url=db_url, data_dir=tmp / "data", min_free_bytes=0))
    mount(app)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.01)
    url = f"http://127.0.0.1:{srv.servers[0].sockets[0].getsockname()[1]}"
    root = admin.token_create(db_url, None, "browser test")
    tokens = {}
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {root}"}, timeout=10) as c:
        for name in ("alpha", "bravo"):
            r = c.post("/v1/tenants", json={"name": name})
            assert r.status_code == 201, r.text
            tokens[name] = r.json()["token"]["token"]
    w = World(url=url, app=app, alpha=tokens["alpha"], bravo=tokens["bravo"], jobs={})
    plan = [  # tenant, name, compute, placement
        ("alpha", "cut-ins-train", {"tiles": 4}, {"blocks": [_tile(0, 0, t) for t in range(4)]}),
        ("alpha", "nightly-eval", {"tiles": 6}, {"block": "exapod0/cabinet2/tray1"}),
        ("alpha", HOSTILE, {"chips": 10}, {"resource": "chips", "chip_ranges": [[100, 110]]}),
        ("bravo", "bravo-secret-run", {"tiles": 12}, {"block": "exapod0/cabinet5"}),
        ("bravo", "bravo-small", {"chips": 10}, {"chips": [[110, 120]]}),
    ]
    for tenant, name, compute, placement in plan:
        with w.api(tokens[tenant]) as c:
            r = c.post(
                "/v1/jobs",
                json={
                    "kind": "eval",
                    "name": name,
                    "compute": compute,
                    "spec": {"policy": "expert"},
                },
            )
            assert r.status_code == 201, r.text
        w.jobs[name] = r.json()["id"]
        w.set(r.json()["id"], placement=placement, status="running", agent="host-1", attempt=1)
    with w.api(w.alpha) as c:
        job = w.jobs[HOSTILE]
        c.post(
            f"/v1/jobs/{job}/logs",
            content=f"starting\n{HOSTILE}\n<img src=x onerror=alert(2)>\n".encode(),
        )
        rows = [{"step": 100 * i, "loss": 2.5 * 0.8**i} for i in range(1, 21)]
        rows += [
            {
                "step": 1000 * k,
                "nines": 1.5 + 0.3 * k,
                "nines_low": 1.2 + 0.3 * k,
                "nines_high": 1.8 + 0.3 * k,
            }
            for k in (1, 2)
        ]
        assert c.post(f"/v1/jobs/{job}/metrics", json={"rows": rows}).status_code == 200
    yield w
    srv.should_exit = True
    thread.join(5)
    app.state.ctx.db.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[tuple[Any, list[str], list[str]]]:
    """A fresh browser context and page; with the dialogs that opened and CSP complaints."""
    context = browser.new_context(viewport={"width": 1260, "height": 900})
    context.set_default_timeout(10_000)
    pg = context.new_page()
    dialogs: list[str] = []
    console: list[str] = []

    def on_dialog(d: Any) -> None:
        dialogs.append(d.message)
        d.dismiss()

    pg.on("dialog", on_dialog)
    pg.on("console", lambda m: console.append(m.text))
    pg.on("pageerror", lambda e: console.append(str(e)))
    yield pg, dialogs, console
    context.close()


def _login(pg: Any, world: World, token: str, start: str = "/dashboard") -> None:
    pg.goto(world.url + start)
    assert "/dashboard/login" in pg.url
    pg.fill("#token", token)
    pg.click("#login")
    pg.wait_for_load_state()


def test_unauthenticated_visit_goes_to_login_and_login_sets_a_cookie_scripts_cannot_read(
    world: World, page: tuple[Any, list[str], list[str]]
) -> None:
    pg, dialogs, console = page
    pg.goto(world.url + "/dashboard/jobs")
    assert pg.url.startswith(world.url + "/dashboard/login")
    pg.fill("#token", "dojo_not-a-real-token")
    pg.click("#login")
    assert pg.locator("#login-error").inner_text() == "Invalid or revoked token."
    pg.fill("#token", world.alpha)
    pg.click("#login")
    pg.wait_for_url(world.url + "/dashboard/jobs")
    assert pg.locator("#who").inner_text() == "alpha"
    (cookie,) = pg.context.cookies()
    assert (
        cookie["name"] == "dojo_dashboard" and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    )
    assert cookie["path"] == "/dashboard"
    assert pg.evaluate("document.cookie") == ""
    pg.click("text=Log out")
    pg.wait_for_url(world.url + "/dashboard/login")
    pg.goto(world.url + "/dashboard")
    assert "/dashboard/login" in pg.url
    assert not dialogs and not [m for m in console if "Content Security Policy" in m]


def test_the_map_colours_own_tiles_and_shows_others_as_busy(
    world: World, page: tuple[Any, list[str], list[str]]
) -> None:
    pg, dialogs, console = page
    _login(pg, world, world.alpha)
    assert pg.url == world.url + "/dashboard"
    tiles = pg.locator("svg.map g.tile")
    assert tiles.count() == 120
    train = world.jobs["cut-ins-train"]
    for t in range(4):
        tile = pg.locator(f'g.tile[data-block="{_tile(0, 0, t)}"]')
        assert tile.get_attribute("data-owner") == train
        fill = tile.locator("rect").first.get_attribute("fill")
        assert fill not in (FREE_FILL, BUSY_FILL)
    evals = pg.locator(f'g.tile[data-owner="{world.jobs["nightly-eval"]}"]')
    assert evals.count() == 6
    busy = pg.locator('g.tile[data-owner="busy"]')
    assert busy.count() == 12  # bravo's cabinet, anonymous
    assert busy.first.locator("rect").get_attribute("fill") == BUSY_FILL
    shared = pg.locator('g.tile[data-block="exapod0/cabinet0/tray0/tile4"]')
    assert shared.get_attribute("data-owner") == "mixed"
    assert shared.locator('rect[data-owner="busy"]').count() == 10
    text = pg.content()
    assert "bravo" not in text and world.jobs["bravo-secret-run"] not in text
    assert (
        pg.locator("#map-summary")
        .inner_text()
        .startswith("1 ExaPOD: 3,000 D1 chips; 260 held by your jobs, 310 by other tenants")
    )
    # a tile links to its job
    pg.locator(f'g.tile[data-block="{_tile(0, 0, 0)}"] a').click()
    pg.wait_for_url(world.url + f"/dashboard/jobs/{train}")
    pg.go_back()
    pg.locator("svg.map").wait_for()
    out = ROOT / "docs" / "img" / "dashboard.png" if os.environ.get("DOJO_SCREENSHOT") else None
    top, bottom = pg.locator("h1").bounding_box(), pg.locator("#legend").bounding_box()
    right = pg.locator(".map-wrap").bounding_box()
    assert top and bottom and right
    clip = {
        "x": 0,
        "y": top["y"] - 8,
        "width": right["x"] + right["width"] + 10,
        "height": bottom["y"] + bottom["height"] + 8 - top["y"],
    }
    shot = pg.screenshot(path=str(out) if out else None, clip=clip)
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
    assert not dialogs and not [m for m in console if "Content Security Policy" in m], console
    if os.environ.get("DOJO_SCREENSHOT"):  # the job page, to look at
        pg.goto(world.url + f"/dashboard/jobs/{world.jobs[HOSTILE]}")
        pg.screenshot(path="/tmp/dojo-dashboard-job.png", full_page=True)


def test_job_page_shows_hostile_text_as_text_charts_and_follows_the_log(
    world: World, page: tuple[Any, list[str], list[str]]
) -> None:
    pg, dialogs, console = page
    job = world.jobs[HOSTILE]
    _login(pg, world, world.alpha, f"/dashboard/jobs/{job}")
    assert pg.url == world.url + f"/dashboard/jobs/{job}"
    assert pg.locator("#job-name").inner_text() == HOSTILE
    assert pg.locator("#job-status").inner_text() == "running"
    log = pg.locator("#log")
    assert HOSTILE in log.inner_text() and "<img src=x onerror=alert(2)>" in log.inner_text()
    assert pg.locator("#log img, #log script, main script").count() == 0
    assert pg.locator("#chart-loss circle.point").count() == 20
    assert pg.locator("#chart-nines circle.point").count() == 2
    assert pg.locator("#chart-nines polygon.band").count() == 1
    # the log is followed while the job runs; the status and charts follow when it ends
    with world.api(world.alpha) as c:
        c.post(f"/v1/jobs/{job}/logs", content=b"step 2100 loss 0.02\n")
        c.post(f"/v1/jobs/{job}/metrics", json={"rows": [{"step": 2100, "loss": 0.02}]})
    expect = (
        sync_api.expect
    )  # (wait_for_function would eval a string, which the page's CSP refuses)
    expect(log).to_contain_text("step 2100 loss 0.02", timeout=10_000)
    with world.app.state.ctx.db.session() as s:
        assert jobstore.finish(s, job, "host-1", status="succeeded", exit_code=0)
    expect(pg.locator("#job-status")).to_have_text("succeeded", timeout=10_000)
    expect(pg.locator("#chart-loss circle.point")).to_have_count(21, timeout=10_000)
    # another tenant's job: the same page as a job that does not exist
    theirs = pg.goto(world.url + f"/dashboard/jobs/{world.jobs['bravo-small']}")
    assert theirs is not None and theirs.status == 404
    assert not dialogs, dialogs
    assert not [m for m in console if "Content Security Policy" in m], console
