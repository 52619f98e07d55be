"""The dashboard through HTTP (FastAPI's TestClient): login and cookies, the map's colours and
who sees what, job pages with logs and charts, escaping, security headers, placements."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi import FastAPI

from dojo.service.placement import Placement
from dojo.service.store.schema import Job
from dojo.service.web import queries, view
from dojo.service.web import routes as dashboard
from dojo.service.web.svg import BUSY_FILL, FREE_FILL, job_charts, nice_ticks
from dojo.service.web.view import exapods, units_needed

from .conftest import Service

HOSTILE = "<script>alert(1)</script>"
TILE = "exapod0/cabinet3/tray1/tile{}"


def mount(app: FastAPI) -> None:
    """Mount the dashboard unless app.py already does."""
    if not any(getattr(r, "path", "").startswith(dashboard.ROOT) for r in app.routes):
        app.include_router(dashboard.router)


@pytest.fixture
def dash(svc: Service) -> Service:
    mount(svc.client.app)  # type: ignore[arg-type]
    return svc


def token_of(headers: dict[str, str]) -> str:
    return headers["Authorization"].split(" ", 1)[1]


def submit(svc: Service, headers: dict[str, str], name: str = "", **body: Any) -> str:
    r = svc.client.post(
        "/v1/jobs",
        json={"kind": "eval", "spec": {"policy": "expert"}, "name": name, **body},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def place(svc: Service, job_id: str, placement: Any, status: str = "running") -> None:
    """What the scheduler (and an agent) would do: write the placement, mark the job."""
    with svc.ctx.db.session() as s:
        job = s.get(Job, job_id)
        assert job is not None
        job.placement, job.status, job.agent = placement, status, "host-1"


def owners(html: str) -> dict[str, str]:
    """data-block -> data-owner of every tile on the map."""
    return dict(re.findall(r'<g class="tile" data-block="([^"]+)" data-owner="([^"]+)"', html))


def tile_fill(html: str, block: str) -> str:
    m = re.search(
        rf'data-block="{re.escape(block)}" data-owner="[^"]+">(?:<a [^>]+>)?<rect [^>]*fill="([^"]+)"',
        html,
    )
    assert m, block
    return m.group(1)


def login(svc: Service, token: str, next_: str = "") -> Any:
    return svc.client.post(
        f"{dashboard.ROOT}/login", data={"token": token, "next": next_}, follow_redirects=False
    )


# --- auth ------------------------------------------------------------------------------------


def test_pages_need_a_token_and_send_browsers_to_login(dash: Service) -> None:
    c = dash.client
    r = c.get("/dashboard/jobs?status=running", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/dashboard/login?next=%2Fdashboard%2Fjobs%3Fstatus%3Drunning"
    assert "Content-Security-Policy" in r.headers
    page = c.get(r.headers["location"])
    assert page.status_code == 200 and 'name="token"' in page.text
    assert 'value="/dashboard/jobs?status=running"' in page.text
    bad = c.get(
        "/dashboard", headers={"Cookie": "dojo_dashboard=dojo_nope"}, follow_redirects=False
    )
    assert bad.status_code == 303 and "dojo_dashboard=" in bad.headers["set-cookie"]  # cleared
    # what the page's script fetches answers 401, not a redirect
    assert c.get("/dashboard/jobs/job_x/log").status_code == 401
    assert c.get("/dashboard/jobs/job_x/charts").status_code == 401


def test_login_sets_a_strict_httponly_cookie_and_the_api_keeps_bearer_only(dash: Service) -> None:
    h = dash.tenant("acme")
    c = dash.client
    wrong = login(dash, "dojo_wrong")
    assert wrong.status_code == 401 and "Invalid or revoked token." in wrong.text
    assert "set-cookie" not in wrong.headers and "dojo_wrong" not in wrong.text
    r = login(dash, token_of(h), "/dashboard/jobs")
    assert r.status_code == 303 and r.headers["location"] == "/dashboard/jobs"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"dojo_dashboard={token_of(h)};")
    for part in ("HttpOnly", "Path=/dashboard", "SameSite=strict"):
        assert part.lower() in cookie.lower()
    assert "secure" not in cookie.lower()  # plain HTTP on loopback; set over HTTPS
    page = c.get("/dashboard/jobs")
    assert page.status_code == 200 and "acme" in page.text
    # the API does not take the cookie (no ambient authority there), Bearer still works
    api_cookie = c.get("/v1/jobs", headers={"Cookie": f"dojo_dashboard={token_of(h)}"})
    assert api_cookie.status_code == 401
    assert c.get("/v1/jobs", headers=h).status_code == 200
    # Bearer works on the pages too
    c.cookies.clear()
    assert c.get("/dashboard", headers=h, follow_redirects=False).status_code == 200
    out = c.post("/dashboard/logout", follow_redirects=False)
    assert out.status_code == 303 and 'dojo_dashboard=""' in out.headers["set-cookie"]


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/x",
        "/v1/tenants",
        "/dashboard/../v1/jobs",
        "/dashboard\\@evil",
        "javascript:alert(1)",
    ],
)
def test_login_never_redirects_off_the_dashboard(dash: Service, target: str) -> None:
    h = dash.tenant("acme")
    r = login(dash, token_of(h), target)
    assert r.status_code == 303 and r.headers["location"] == "/dashboard"


def test_login_and_logout_refuse_other_origins(dash: Service) -> None:
    h = dash.tenant("acme")
    c = dash.client
    for headers in (
        {"Origin": "http://evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "null"},
    ):
        r = c.post(
            "/dashboard/login", data={"token": token_of(h)}, headers=headers, follow_redirects=False
        )
        assert r.status_code == 403 and "set-cookie" not in r.headers
        assert (
            c.post("/dashboard/logout", headers=headers, follow_redirects=False).status_code == 403
        )
    ok = c.post(
        "/dashboard/login",
        data={"token": token_of(h)},
        follow_redirects=False,
        headers={"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"},
    )
    assert ok.status_code == 303


def test_expired_revoked_and_disabled(dash: Service) -> None:
    h = dash.tenant("acme")
    c = dash.client
    short = c.post("/v1/tokens", json={"name": "short", "expires_in_s": 3600}, headers=h).json()
    r = login(dash, short["token"])
    assert r.status_code == 303 and "max-age=" in r.headers["set-cookie"].lower()
    assert c.delete(f"/v1/tokens/{short['id']}", headers=h).status_code in (200, 204)
    assert c.get("/dashboard", follow_redirects=False).status_code == 303  # revoked: log in again
    assert (
        c.patch("/v1/tenants/acme", json={"disabled": True}, headers=dash.admin).status_code == 200
    )
    r = c.get("/dashboard", headers=h, follow_redirects=False)
    assert r.status_code == 403 and "disabled" in r.text


# --- the map -------------------------------------------------------------------------------


def test_map_colours_own_jobs_and_hides_other_tenants(dash: Service) -> None:
    a, b = dash.tenant("alpha"), dash.tenant("bravo")
    mine = submit(dash, a, "alpha-train", compute={"tiles": 2})
    theirs = submit(dash, b, "bravo-secret", compute={"tiles": 1})
    queued = submit(dash, a, "still-queued")
    place(dash, mine, {"blocks": [TILE.format(0), TILE.format(1)]})
    place(dash, theirs, {"block": "exapod0/cabinet7/tray0/tile5"}, status="placed")
    html = dash.client.get("/dashboard", headers=a).text
    tiles = owners(html)
    assert len(tiles) == 120  # one ExaPOD: 10 cabinets x 2 trays x 6 tiles
    assert tiles[TILE.format(0)] == tiles[TILE.format(1)] == mine
    assert tiles["exapod0/cabinet7/tray0/tile5"] == "busy"
    assert sum(v == "free" for v in tiles.values()) == 117
    assert tile_fill(html, TILE.format(0)) not in (FREE_FILL, BUSY_FILL)
    assert tile_fill(html, "exapod0/cabinet7/tray0/tile5") == BUSY_FILL
    assert tile_fill(html, TILE.format(2)) == FREE_FILL
    assert f'href="/dashboard/jobs/{mine}"' in html and "alpha-train" in html
    assert theirs not in html and "bravo-secret" not in html and "bravo" not in html
    assert "50 held by your jobs, 25 by other tenants" in html
    assert queued in html  # the active job list below the map
    # bravo sees the reverse
    html_b = dash.client.get("/dashboard", headers=b).text
    assert (
        owners(html_b)[TILE.format(0)] == "busy"
        and mine not in html_b
        and "alpha-train" not in html_b
    )
    # the admin sees every job, named, with tenants
    html_admin = dash.client.get("/dashboard", headers=dash.admin).text
    tiles_admin = owners(html_admin)
    assert (
        tiles_admin[TILE.format(0)] == mine
        and tiles_admin["exapod0/cabinet7/tray0/tile5"] == theirs
    )
    assert (
        "bravo-secret" in html_admin
        and "alpha" in html_admin
        and "busy" not in tiles_admin.values()
    )
    assert tile_fill(html_admin, TILE.format(0)) != tile_fill(
        html_admin, "exapod0/cabinet7/tray0/tile5"
    )


def test_a_shared_tile_shows_its_chips_and_other_jobs_stay_anonymous(dash: Service) -> None:
    a, b = dash.tenant("alpha"), dash.tenant("bravo")
    j1 = submit(dash, a, "small", compute={"chips": 10})
    j2 = submit(dash, b, "other", compute={"chips": 5})
    j3 = submit(dash, b, "other2", compute={"chips": 5})
    place(dash, j1, {"chips": [[0, 10]], "block": "exapod0/cabinet0/tray0/tile0"})
    place(dash, j2, {"chips": [10, 11, 12, 13, 14]})
    place(dash, j3, {"chips": [[15, 20]]})
    html = dash.client.get("/dashboard", headers=a).text
    assert owners(html)["exapod0/cabinet0/tray0/tile0"] == "mixed"
    chips = re.findall(
        r'<rect [^>]*data-owner="([^"]+)"><title>exapod0/cabinet0/tray0/tile0/chip(\d+)', html
    )
    by_chip = {int(n): o for o, n in chips}
    assert [by_chip[i] for i in range(25)] == [j1] * 10 + ["busy"] * 10 + ["free"] * 5
    assert j2 not in html and j3 not in html


def test_gpu_hosts_bad_placements_and_more_exapods(dash: Service) -> None:
    a, b = dash.tenant("alpha"), dash.tenant("bravo")
    gpu = submit(dash, a, "gpu-job", compute={"gpus": 8})
    other_gpu = submit(dash, b, "their-gpu", compute={"gpus": 8})
    broken = submit(dash, a, "broken")
    far = submit(dash, a, "far", compute={"tiles": 1})
    place(dash, gpu, {"resource": "gpus", "count": 8, "hosts": ["h100-node-3"]})
    place(dash, other_gpu, {"hosts": [{"host": "h100-node-4"}]})
    place(dash, broken, {"blocks": ["exapod0/cabinet99"]})
    place(dash, far, {"tiles": ["exapod1/cabinet0/tray0/tile0"]})
    r = dash.client.get("/dashboard", headers=a)
    assert r.status_code == 200
    gpu_rows = re.search(r'<table class="jobs" id="gpu-jobs">.*?</table>', r.text, re.S)
    assert gpu_rows and "h100-node-3" in gpu_rows.group(0) and "gpu-job" in gpu_rows.group(0)
    assert "h100-node-4" in gpu_rows.group(0) and "busy" in gpu_rows.group(0)
    assert ">8 GPUs<" in dash.client.get("/dashboard/jobs", headers=a).text
    assert "their-gpu" not in r.text and other_gpu not in r.text
    assert "1 placement could not be drawn." in r.text
    tiles = owners(r.text)
    assert len(tiles) == 240 and tiles["exapod1/cabinet0/tray0/tile0"] == far


def test_the_schedulers_placements_are_drawn(dash: Service) -> None:
    """The placement column as the scheduler (dojo.service.sched.dispatch) writes it."""
    dispatch = pytest.importorskip("dojo.service.sched.dispatch")
    from dojo.compute.placement import Allocator

    a, b = dash.tenant("alpha"), dash.tenant("bravo")
    topology = exapods(1)
    alloc = Allocator(topology)
    jobs = {}
    for name, headers, size in (("big", a, 50), ("small", a, 10), ("theirs", b, 300)):
        jobs[name] = submit(dash, headers, name, compute={"chips": size})
        got = alloc.allocate(jobs[name], size)
        assert got is not None
        place(dash, jobs[name], dispatch.placement_json(topology, got))
    with dash.ctx.db.session() as s:
        job = s.get(Job, jobs["small"])
        assert job is not None
        job.placement = {**job.placement, "preempt": True}
    html = dash.client.get("/dashboard", headers=a).text
    on_map = owners(html)
    chips = re.findall(r'<rect [^>]*data-owner="([^"]+)"><title>', html)
    tiles_of = {name: sum(v == jobs[name] for v in on_map.values()) for name in jobs}
    assert tiles_of["big"] == 2 and tiles_of["theirs"] == 0
    assert sum(v == "busy" for v in on_map.values()) == 12 and "theirs" not in html
    assert chips.count(jobs["small"]) == 10  # on a shared tile
    assert "preempting" in html
    assert "60 held by your jobs, 300 by other tenants" in html


def placement_chips(stored: Any, topology: Any) -> list[int] | None:
    """A stored placement read as the dashboard reads it: typed, then found on the topology."""
    return view.placement_chips(Placement.from_dict(stored), topology)


def needed(*stored: Any) -> int:
    return units_needed(Placement.from_dict(p) for p in stored)


def test_placement_formats() -> None:
    pod = exapods(1)
    assert placement_chips({"chips": [0, 1, [5, 7]]}, pod) == [0, 1, 5, 6]
    assert placement_chips(
        {
            "chip_ranges": [[0, 2], [7, 8]],
            "tiles": ["exapod0/cabinet0/tray0/tile0"],
            "block": "exapod0/cabinet0/tray0/tile0",
        },
        pod,
    ) == [0, 1, 7]
    assert placement_chips({"resource": "gpus", "count": 8}, pod) is None
    assert placement_chips({"blocks": ["exapod0/cabinet0/tray0/tile1"]}, pod) == list(range(25, 50))
    assert placement_chips(["exapod0/cabinet1"], pod) == list(range(300, 600))
    assert placement_chips({"tiles": [2]}, pod) == list(range(50, 75))
    assert placement_chips({"blocks": [{"name": "exapod0/cabinet0/tray0/tile0/chip3"}]}, pod) == [3]
    assert placement_chips({"hosts": ["node-1"]}, pod) is None
    assert Placement.from_dict({"hosts": ["node-1"]}).gpu  # hosts and no chips: a GPU job
    for bad in (
        {"chip_ranges": [[0, 3001]]},
        {"chip_ranges": [5]},
        {"chips": [3000]},
        {"chips": [[10, 5]]},
        {"chips": ["x"]},
        {"chips": 5},
        {"blocks": ["tile4"]},
        {"blocks": [7]},
        {"block": "exapod1"},
        "exapod0",
        {"chips": [True]},
    ):
        with pytest.raises(ValueError):  # from the shape, or from the topology
            placement_chips(bad, pod)
    assert needed({"chips": [[5990, 6000]]}, {"blocks": ["exapod0/cabinet1"]}) == 2
    assert needed({"block": "exapod3/cabinet0"}, {"tiles": ["tile9"]}) == 4
    assert needed({"block": "exapod99999"}) == view.MAX_PODS
    assert needed({"system": "exapod:3", "chip_ranges": [[0, 5]]}) == 3
    assert needed({"chip_ranges": [[3000, 3005]]}) == 2


def test_the_typed_placement_writes_back_what_the_scheduler_wrote() -> None:
    from dojo.compute.placement import Allocator
    from dojo.service.sched.dispatch import placement_json, placement_of

    topology = exapods(2)
    alloc = Allocator(topology)
    for name, size in (("one", 30), ("spans", 3100), ("tile", 25)):
        got = alloc.allocate(name, size)
        assert got is not None
        stored = placement_json(topology, got)
        typed = Placement.from_dict(stored)
        assert typed == placement_of(topology, got) and typed.to_dict() == stored
        assert typed.chips == sorted(got.chips) and typed.count == size
        preempting = {**stored, "preempt": True}  # what a preemption wrote before the type
        assert Placement.from_dict(preempting).to_dict() == preempting
        assert typed.preempting().to_dict() == preempting
    for stored in ({"resource": "gpus", "count": 8}, {"resource": "chips", "count": 4}):
        assert Placement.from_dict(stored).to_dict() == stored
    assert Placement.for_gpus(8).to_dict() == {"resource": "gpus", "count": 8}


# --- jobs, logs, charts ------------------------------------------------------------------------


def test_job_list_and_page_with_log_and_charts(dash: Service) -> None:
    a = dash.tenant("alpha")
    c = dash.client
    job = submit(dash, a, "nightly", compute={"tiles": 1})
    done = submit(dash, a, "old")
    c.post(f"/v1/jobs/{done}/cancel", headers=a)
    place(dash, job, {"blocks": [TILE.format(3)]})
    c.post(f"/v1/jobs/{job}/logs", content=b"step 1 loss 2.0\nstep 2 loss 1.5\n", headers=a)
    rows = [{"step": i, "loss": 2.0 / i} for i in range(1, 11)] + [
        {"step": 10, "nines": 2.1, "nines_low": 1.8, "nines_high": 2.5},
        {"step": 20, "nines": 2.6, "nines_low": 2.2, "nines_high": 3.0},
    ]
    assert c.post(f"/v1/jobs/{job}/metrics", json={"rows": rows}, headers=a).status_code == 200
    listing = c.get("/dashboard/jobs", headers=a).text
    assert job in listing and done in listing and "cancelled" in listing
    running = c.get("/dashboard/jobs", params={"status": "running"}, headers=a).text
    assert job in running and done not in running
    page = c.get(f"/dashboard/jobs/{job}", headers=a)
    assert page.status_code == 200
    assert "step 2 loss 1.5" in page.text and TILE.format(3) in page.text
    loss = re.search(r'<svg [^>]*id="chart-loss".*?</svg>', page.text, re.S)
    nines = re.search(r'<svg [^>]*id="chart-nines".*?</svg>', page.text, re.S)
    assert loss and nines
    assert loss.group(0).count('class="point"') == 10
    assert nines.group(0).count('class="point"') == 2 and 'class="band"' in nines.group(0)
    assert 'data-offset="32"' in page.text  # the page's script follows on from here
    # the log endpoint the page's script follows
    more = c.post(f"/v1/jobs/{job}/logs", content=b"step 3\n", headers=a)
    assert more.status_code == 200
    r = c.get(f"/dashboard/jobs/{job}/log", params={"offset": 32}, headers=a)
    assert r.content == b"step 3\n" and r.headers["x-log-offset"] == "39"
    assert r.headers["x-job-status"] == "running" and r.headers["content-type"].startswith(
        "text/plain"
    )
    assert r.headers["x-content-type-options"] == "nosniff"
    frag = c.get(f"/dashboard/jobs/{job}/charts", headers=a).text
    assert 'id="chart-loss"' in frag and "<html" not in frag
    # no metrics: a note instead of charts
    assert 'id="no-charts"' in c.get(f"/dashboard/jobs/{done}", headers=a).text


def test_charts_of_a_long_job_read_every_kth_row(
    dash: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = dash.tenant("alpha")
    job = submit(dash, a, "long")
    rows = [{"step": i, "loss": 1.0 / i} for i in range(1, 13)]
    assert (
        dash.client.post(f"/v1/jobs/{job}/metrics", json={"rows": rows}, headers=a).status_code
        == 200
    )
    monkeypatch.setattr(queries, "MAX_CHART_ROWS", 5)  # 12 rows: every 3rd (3, 6, 9, 12)
    svg = dash.client.get(f"/dashboard/jobs/{job}/charts", headers=a).text
    assert svg.count('class="point"') == 4 and "loss 0.0833 at 12" in svg


def test_another_tenants_job_is_not_found_like_a_missing_one(dash: Service) -> None:
    a, b = dash.tenant("alpha"), dash.tenant("bravo")
    job = submit(dash, a, "secret-name")
    dash.client.post(f"/v1/jobs/{job}/logs", content=b"secret log\n", headers=a)
    for path in (
        f"/dashboard/jobs/{job}",
        f"/dashboard/jobs/{job}/log",
        f"/dashboard/jobs/{job}/charts",
    ):
        theirs = dash.client.get(path, headers=b)
        missing = dash.client.get(path.replace(job, "job_0000000000000000"), headers=b)
        assert theirs.status_code == missing.status_code == 404
        assert theirs.text.replace(job, "X") == missing.text.replace("job_0000000000000000", "X")
        assert "secret" not in theirs.text
    assert job not in dash.client.get("/dashboard/jobs", headers=b).text
    admin = dash.client.get(f"/dashboard/jobs/{job}", headers=dash.admin)
    assert admin.status_code == 200 and "secret log" in admin.text and "alpha" in admin.text
    assert "alpha" in dash.client.get("/dashboard/jobs", headers=dash.admin).text


def test_hostile_names_and_logs_are_text(dash: Service) -> None:
    a = dash.tenant("alpha")
    job = submit(dash, a, HOSTILE, compute={"tiles": 1})
    place(dash, job, {"blocks": [TILE.format(0)]})
    dash.client.post(
        f"/v1/jobs/{job}/logs", content=f'{HOSTILE}\n" onmouseover="x\n'.encode(), headers=a
    )
    dash.client.post(
        f"/v1/jobs/{job}/metrics",
        json={"rows": [{"step": 1, "loss": 1.0, "note": HOSTILE}]},
        headers=a,
    )
    for path in ("/dashboard", "/dashboard/jobs", f"/dashboard/jobs/{job}"):
        html = dash.client.get(path, headers=a).text
        assert HOSTILE not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path
        assert '" onmouseover="' not in html


def test_security_headers_and_no_inline_script_or_style(dash: Service) -> None:
    a = dash.tenant("alpha")
    job = submit(dash, a, "x", compute={"tiles": 1})
    place(dash, job, {"blocks": [TILE.format(0)]})
    dash.client.post(
        f"/v1/jobs/{job}/metrics",
        json={"rows": [{"step": 1, "loss": 1.0, "nines": 2.0}]},
        headers=a,
    )
    for path in (
        "/dashboard",
        "/dashboard/jobs",
        f"/dashboard/jobs/{job}",
        "/dashboard/login",
        "/dashboard/static/dashboard.js",
        "/dashboard/static/dashboard.css",
    ):
        r = dash.client.get(path, headers=a)
        assert r.status_code == 200, path
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "unsafe" not in csp
        assert "frame-ancestors 'none'" in csp and r.headers["x-frame-options"] == "DENY"
        if r.headers["content-type"].startswith("text/html"):
            assert not re.search(r"<script(?![^>]*\bsrc=)", r.text), path  # no inline script
            assert not re.search(r"\sstyle=|<style", r.text), path  # no inline style
            assert not re.search(r"\son[a-z]+=", r.text), path  # no inline handlers
            assert "http://" not in r.text.replace('xmlns="http://www.w3.org/2000/svg"', "")
            assert "https://" not in r.text
    assert dash.client.get("/dashboard/static/../app.py", headers=a).status_code == 404
    # the dashboard stays out of the API's OpenAPI spec
    assert not any(
        p.startswith("/dashboard") for p in dash.client.get("/openapi.json").json()["paths"]
    )


def test_charts_from_rows() -> None:
    assert job_charts([]) == [] and job_charts([(1, {"step": 1, "epoch": 3})]) == []
    # whatever else a tenant's script reports gets a chart of its own, its name escaped
    own = job_charts(
        [(i, {"step": i, "accuracy": i / 10, "<script>x": 1.0, "epoch": i}) for i in range(1, 4)]
    )
    assert len(own) == 2 and 'id="chart-accuracy"' in own[1]
    assert "<script>" not in "".join(own) and "&lt;script&gt;x" in own[0]
    assert len(job_charts([(1, {"step": 1, **{f"m{k}": 1.0 for k in range(20)}})])) == 6
    charts = job_charts([(i, {"loss": 10.0**-i}) for i in range(1, 6)])  # no step: x is the row
    assert len(charts) == 1 and "log scale" in charts[0] and charts[0].count('class="point"') == 5
    band_only = job_charts(
        [
            (1, {"step": 5, "nines_low": 1.0, "nines_high": 2.0}),
            (2, {"step": 6, "nines_low": 1.5, "nines_high": 2.5}),
        ]
    )
    assert len(band_only) == 1 and 'class="band"' in band_only[0]
    many = job_charts([(i, {"step": i, "loss": 1.0 + (i % 7)}) for i in range(1, 5001)])
    assert many[0].count('class="point"') <= 300
    ignored = job_charts(
        [(1, {"step": 1, "loss": "NaN"}), (2, {"step": 2, "loss": True}), (3, {"step": 3})]
    )
    assert ignored == []
    assert nice_ticks(0, 1) == [0, 0.25, 0.5, 0.75, 1.0] and nice_ticks(3, 3)
