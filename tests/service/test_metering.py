"""Metering and billing through their public faces: the library's ``usage``, ``GET /v1/usage``,
``dojo admin invoice`` and the dashboard's usage panel, on SQLite and PostgreSQL.

Runs are driven through the job store's own transitions (claim, finish, preempt, lose), then
their times are set in the database so that every expected figure is plain arithmetic here.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from dojo.cli import main
from dojo.compute.specs import load_family
from dojo.errors import ConfigError
from dojo.service import metering
from dojo.service.sched.dispatch import requeue_preempted
from dojo.service.store import jobstore
from dojo.service.store.schema import Job, JobRun, StorageChange, utcnow

from .conftest import MCAP, Service, upload

T0 = datetime(2025, 3, 10, tzinfo=timezone.utc)
H = 3600
# Watts of one device from the published headlines, not the topology sums metering uses:
# a tile is about 15 kW for 25 D1 (AI Day 2021), a DGX H100 10.2 kW for 8 GPUs.
D1_W = load_family("dojo.toml").headlines["tile_power_kw"] * 1000 / 25
H100_W = load_family("h100.toml").headlines["node_power_kw"] * 1000 / 8


def _submit(svc: Service, h: dict[str, str], **compute: int) -> str:
    r = svc.client.post(
        "/v1/jobs",
        json={"kind": "eval", "spec": {"policy": "expert"}, "compute": compute},
        headers=h,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _claim(svc: Service, job_id: str, agent: str = "host-a") -> None:
    with svc.ctx.db.session() as s:
        job = jobstore.claim_next(s, agent)
        assert job is not None and job.id == job_id


def _finish(svc: Service, job_id: str, status: str) -> None:
    with svc.ctx.db.session() as s:
        assert jobstore.finish(s, job_id, "host-a", status=status)


# (job, chips, gpus, start offset [s], duration [s] or None while open, system) of each run of
# tenant acme, in the order they are opened below
RUNS: list[tuple[str, int, int, int, int | None, str | None]] = [
    ("j1", 25, 0, 0, H, "exapod:2"),  # succeeded
    ("j2", 3, 0, H, 600, None),  # failed
    ("j3", 0, 8, 2 * H, 1200, None),  # cancelled
    ("j4", 10, 0, 3 * H, 900, None),  # preempted
    ("j4", 10, 0, 4 * H, 300, None),  # lost (its agent stopped heartbeating)
    ("j4", 10, 0, 5 * H, None, None),  # still running
]
OUTCOMES = ["succeeded", "failed", "cancelled", "preempted", "lost", None]
NOW = T0 + timedelta(hours=6)  # the open run has run 1 h by then


def _timed(
    svc: Service, rows: list[tuple[int | None, int | None, str | None]], tenant: str
) -> None:
    """Set the tenant's runs (in id order) to start at T0 + offset and last duration s."""
    with svc.ctx.db.session() as s:
        runs = s.scalars(select(JobRun).where(JobRun.tenant_id == tenant).order_by(JobRun.id)).all()
        assert len(runs) == len(rows)
        for run, (offset, duration, system) in zip(runs, rows, strict=True):
            assert offset is not None
            run.started_at = T0 + timedelta(seconds=offset)
            run.ended_at = (
                None if duration is None else run.started_at + timedelta(seconds=duration)
            )
            run.system = system


@pytest.fixture
def metered(svc: Service) -> dict[str, Any]:
    """acme's six runs (every way a run ends, one still open) and beta's one, at fixed times."""
    acme = svc.tenant("acme", max_chips=100, max_gpus=8)
    beta = svc.tenant("beta")
    ids: dict[str, str] = {}
    ids["j1"] = _submit(svc, acme, tiles=1)
    _claim(svc, ids["j1"])
    _finish(svc, ids["j1"], "succeeded")
    ids["j2"] = _submit(svc, acme, chips=3)
    _claim(svc, ids["j2"])
    _finish(svc, ids["j2"], "failed")
    ids["j3"] = _submit(svc, acme, gpus=8)
    _claim(svc, ids["j3"])
    _finish(svc, ids["j3"], "cancelled")
    ids["j4"] = _submit(svc, acme, chips=10)
    _claim(svc, ids["j4"])
    with svc.ctx.db.session() as s:
        assert requeue_preempted(s, ids["j4"], "host-a")
    _claim(svc, ids["j4"])
    with svc.ctx.db.session() as s:  # the agent goes silent: its heartbeat is 5 minutes old
        s.execute(
            update(Job)
            .where(Job.id == ids["j4"])
            .values(heartbeat_at=utcnow() - timedelta(minutes=5))
        )
    with svc.ctx.db.session() as s:
        assert jobstore.requeue_stale(s, 60) == [ids["j4"]]
    _claim(svc, ids["j4"], "host-b")
    ids["beta"] = _submit(svc, beta, chips=50)
    _claim(svc, ids["beta"])
    _finish(svc, ids["beta"], "succeeded")

    acme_id, beta_id = svc.tenants["acme"]["id"], svc.tenants["beta"]["id"]
    _timed(svc, [(r[3], r[4], r[5]) for r in RUNS], acme_id)
    _timed(svc, [(0, 2 * H, None)], beta_id)
    with svc.ctx.db.session() as s:
        runs = s.scalars(select(JobRun).where(JobRun.tenant_id == acme_id).order_by(JobRun.id))
        got = [(r.job_id, r.chips, r.gpus, r.outcome) for r in runs]
    assert got == [
        (ids[job], chips, gpus, outcome)
        for (job, chips, gpus, *_), outcome in zip(RUNS, OUTCOMES, strict=True)
    ]
    return {"acme": acme, "beta": beta, "acme_id": acme_id, "beta_id": beta_id, "ids": ids}


def _usage(svc: Service, tenant: str, start: datetime, end: datetime) -> metering.UsageReport:
    with svc.ctx.db.session(readonly=True) as s:
        return metering.usage(s, tenant, start, end, now=NOW)


def test_chip_seconds_are_chips_times_run_time_however_runs_ended(
    svc: Service, metered: dict[str, Any]
) -> None:
    r = _usage(svc, metered["acme_id"], T0 - timedelta(days=1), T0 + timedelta(days=1))
    # j1 25 x 1 h, j2 3 x 10 min, j4 10 x (15 min preempted + 5 min lost + 1 h still running)
    chip_s = 25 * H + 3 * 600 + 10 * 900 + 10 * 300 + 10 * H
    assert r.chip_seconds == pytest.approx(chip_s) and chip_s == 139_800
    assert r.gpu_seconds == pytest.approx(8 * 1200)  # j3, cancelled
    assert (r.jobs, r.runs) == (4, 6)
    assert r.energy_kwh == pytest.approx((chip_s * D1_W + 8 * 1200 * H100_W) / 3.6e6)
    assert set(r.by_system) == {"exapod:2", "d1", "gpu"}  # the scheduler's, or no system named
    assert r.by_system["exapod:2"].chip_seconds == pytest.approx(25 * H)
    assert r.by_system["d1"].chip_seconds == pytest.approx(chip_s - 25 * H)
    assert r.by_system["gpu"].gpu_seconds == pytest.approx(8 * 1200)
    prices = metering.packaged_prices()
    assert r.cost == pytest.approx(
        chip_s / H * prices.d1_chip_hour
        + 8 * 1200 / H * prices.gpu_hour
        + r.energy_kwh * prices.kwh
    )
    assert r.storage_gb_hours == 0 and r.currency == prices.currency == "USD"


def test_a_window_clips_runs_and_an_open_run_counts_up_to_now(
    svc: Service, metered: dict[str, Any]
) -> None:
    acme = metered["acme_id"]
    # from half way through j1 to half way through j4's preempted run
    r = _usage(svc, acme, T0 + timedelta(minutes=30), T0 + timedelta(hours=3, seconds=450))
    assert r.chip_seconds == pytest.approx(25 * 1800 + 3 * 600 + 10 * 450)
    assert r.gpu_seconds == pytest.approx(8 * 1200)
    assert (r.jobs, r.runs) == (4, 4)
    # the open run started at 5 h; at 6 h (now) it has run 1 h, half of it in this window
    r = _usage(svc, acme, T0 + timedelta(hours=5, minutes=30), T0 + timedelta(days=30))
    assert r.chip_seconds == pytest.approx(10 * 1800) and r.jobs == 1
    assert r.as_of == NOW
    # a window that ends as j1 begins, and one that begins as j1 ends, exactly
    assert _usage(svc, acme, T0 - timedelta(hours=1), T0).runs == 0
    r = _usage(svc, acme, T0 + timedelta(hours=1), T0 + timedelta(hours=1, minutes=5))
    assert (r.runs, r.chip_seconds) == (1, pytest.approx(3 * 300))  # j2 only
    with pytest.raises(ConfigError, match="before its start"):
        _usage(svc, acme, T0, T0 - timedelta(seconds=1))


def test_another_tenants_usage_never_shows(svc: Service, metered: dict[str, Any]) -> None:
    window = {"from": "2025-03-09", "to": "2025-03-11T00:00:00Z"}
    a = svc.client.get("/v1/usage", params=window, headers=metered["acme"])
    b = svc.client.get("/v1/usage", params=window, headers=metered["beta"])
    assert a.status_code == b.status_code == 200, (a.text, b.text)
    # to lies in the past, so acme's open run counts up to it: 19 h
    assert a.json()["chip_seconds"] == pytest.approx(
        25 * H + 3 * 600 + 10 * 900 + 10 * 300 + 10 * 19 * H
    )
    assert a.json()["jobs"] == 4 and a.json()["tenant_id"] == metered["acme_id"]
    assert b.json()["chip_seconds"] == pytest.approx(50 * 2 * H)
    assert b.json()["gpu_seconds"] == 0 and b.json()["jobs"] == 1
    assert b.json()["tenant_id"] == metered["beta_id"]
    assert metered["ids"]["j1"] not in b.text and metered["acme_id"] not in b.text
    # a new tenant has used nothing, and an admin token owns no usage
    c = svc.client.get("/v1/usage", params=window, headers=svc.tenant("gamma")).json()
    assert (c["chip_seconds"], c["gpu_seconds"], c["jobs"], c["cost"]) == (0, 0, 0, 0)
    assert svc.client.get("/v1/usage", headers=svc.admin).status_code == 403
    assert svc.client.get("/v1/usage").status_code == 401


def test_usage_api_keys_and_default_window(svc: Service, metered: dict[str, Any]) -> None:
    r = svc.client.get("/v1/usage", headers=metered["acme"])
    assert r.status_code == 200, r.text
    body = r.json()
    for key in (
        "chip_seconds",
        "gpu_seconds",
        "storage_gb_hours",
        "energy_kwh",
        "cost",
        "currency",
        "jobs",
        "from",
        "to",
        "by_system",
        "lines",
    ):
        assert key in body, key
    now = utcnow()
    assert body["from"] == f"{now.year:04d}-{now.month:02d}-01T00:00:00Z"  # this month, to now
    # of acme's runs (March 2025) only the one still open reaches this month: 10 chips since
    # the month began, up to now
    since = datetime.fromisoformat(body["from"].replace("Z", "+00:00"))
    as_of = datetime.fromisoformat(body["as_of"].replace("Z", "+00:00"))
    assert body["chip_seconds"] == pytest.approx(10 * (as_of - since).total_seconds())
    assert body["jobs"] == 1 and body["gpu_seconds"] == 0
    assert body["cost"] == pytest.approx(sum(line["amount"] for line in body["lines"]))
    spec = svc.client.get("/openapi.json").json()
    assert "/v1/usage" in spec["paths"]


@pytest.mark.parametrize(
    "params, words",
    [
        ({"from": "yesterday"}, "from='yesterday' is not an ISO 8601 date"),
        ({"to": "2025-02-30"}, "to='2025-02-30' is not an ISO 8601 date"),
        ({"from": "2025-03-10", "to": "2025-03-01"}, "is before from=2025-03-10"),
        ({"to": "2000-01-01"}, "to=2000-01-01 is before from="),
        ({"to": "9999-12-31T23:59:59-01:00"}, "is outside the years 1 to 9999 in UTC"),
    ],
)
def test_bad_windows_are_422_with_one_sentence(
    svc: Service, params: dict[str, str], words: str
) -> None:
    r = svc.client.get("/v1/usage", params=params, headers=svc.tenant("acme"))
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and words in detail and not re.search(r"\.\s+[A-Z]", detail), (
        detail
    )


def test_storage_gb_hours_of_an_upload_then_a_delete(svc: Service) -> None:
    h = svc.tenant("acme")
    tenant = svc.tenants["acme"]["id"]
    ds = svc.client.post("/v1/datasets", json={"name": "logs"}, headers=h).json()["id"]
    assert upload(svc, h, ds, "drive.mcap").status_code == 201
    assert svc.client.delete(f"/v1/datasets/{ds}", headers=h).status_code == 204
    with svc.ctx.db.session() as s:
        changes = s.scalars(
            select(StorageChange)
            .where(StorageChange.tenant_id == tenant)
            .order_by(StorageChange.id)
        ).all()
        assert [c.delta_bytes for c in changes] == [len(MCAP), -len(MCAP)]
        changes[0].at, changes[1].at = T0, T0 + timedelta(hours=2)  # stored for 2 h
    n = len(MCAP)
    r = _usage(svc, tenant, T0 - timedelta(hours=1), T0 + timedelta(hours=3))
    assert r.storage_gb_hours == pytest.approx(n * 2 / 1e9)
    # a window opening after the upload still counts what was stored before it
    r = _usage(svc, tenant, T0 + timedelta(hours=1), T0 + timedelta(hours=3))
    assert r.storage_gb_hours == pytest.approx(n * 1 / 1e9)
    assert r.lines[2].item == "storage_gb_hour"
    assert r.lines[2].amount == pytest.approx(n / 1e9 * metering.packaged_prices().storage_gb_hour)
    assert (
        _usage(svc, tenant, T0 + timedelta(hours=2), T0 + timedelta(hours=3)).storage_gb_hours == 0
    )


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_invoice_lines_add_up_to_the_total(
    svc: Service, metered: dict[str, Any], db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _cli(
        capsys, "admin", "invoice", "acme", "--month", "2025-03", "--db", db_url, "--json"
    )
    assert code == 0, err
    inv = json.loads(out)
    assert inv["tenant"]["name"] == "acme" and inv["currency"] == "USD"
    assert (inv["from"], inv["to"]) == ("2025-03-01T00:00:00Z", "2025-04-01T00:00:00Z")
    by_item = {line["item"]: line for line in inv["lines"]}
    assert set(by_item) == {"d1_chip_hour", "gpu_hour", "storage_gb_hour", "kwh"}
    # the open run has been running since 2025-03-10 05:00 and the month has ended: it counts
    # up to the month's end
    open_s = (datetime(2025, 4, 1, tzinfo=timezone.utc) - (T0 + timedelta(hours=5))).total_seconds()
    chip_s = 25 * H + 3 * 600 + 10 * 900 + 10 * 300 + 10 * open_s
    assert by_item["d1_chip_hour"]["quantity"] == pytest.approx(chip_s / H)
    assert by_item["gpu_hour"]["quantity"] == pytest.approx(8 * 1200 / H)
    for line in inv["lines"]:
        assert line["amount"] == pytest.approx(line["quantity"] * line["unit_price"], abs=0.005)
    assert inv["total"] == pytest.approx(sum(line["amount"] for line in inv["lines"]), abs=1e-9)
    assert inv["total"] > 0 and (inv["jobs"], inv["runs"]) == (4, 6)
    # the human table: the same lines and the same total
    code, out, _ = _cli(capsys, "admin", "invoice", "acme", "--month", "2025-03", "--db", db_url)
    assert code == 0 and "Invoice for acme" in out
    total_line = next(line for line in out.splitlines() if line.startswith("total USD"))
    assert float(total_line.split()[-1].replace(",", "")) == pytest.approx(inv["total"])
    # beta's month holds beta's run only, and February holds nothing of acme's
    code, out, _ = _cli(
        capsys, "admin", "invoice", "beta", "--month", "2025-03", "--db", db_url, "--json"
    )
    beta = {line["item"]: line for line in json.loads(out)["lines"]}
    assert beta["d1_chip_hour"]["quantity"] == pytest.approx(50 * 2)
    code, out, _ = _cli(
        capsys, "admin", "invoice", "acme", "--month", "2025-02", "--db", db_url, "--json"
    )
    assert json.loads(out)["total"] == 0


@pytest.mark.parametrize(
    "argv, words",
    [
        (["acme", "--month", "2025-13"], "--month '2025-13' must be a month as YYYY-MM"),
        (["acme", "--month", "March"], "--month 'March' must be a month as YYYY-MM"),
        (["nobody", "--month", "2025-03"], "Tenant 'nobody' not found"),
    ],
)
def test_invoice_bad_input_is_one_clear_line(
    svc: Service,
    db_url: str,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    words: str,
) -> None:
    svc.tenant("acme")
    code, out, err = _cli(capsys, "admin", "invoice", *argv, "--db", db_url)
    assert code == 2 and out == "" and words in err and err.count("\n") == 1, err


GOOD_PRICES = """currency = "EUR"
[prices]
d1_chip_hour = { value = 1.0, source = "test" }
gpu_hour = { value = 2.0, source = "test" }
storage_gb_hour = { value = 0.5, source = "test" }
kwh = { value = 0.25, source = "test" }
"""


@pytest.mark.parametrize(
    "text, words",
    [
        (GOOD_PRICES.replace("0.25", "-1"), "prices.kwh = -1 must be a number >= 0"),
        (GOOD_PRICES.replace("0.25", '"cheap"'), "prices.kwh = 'cheap' must be a number"),
        (GOOD_PRICES.replace("0.25", "nan"), "prices.kwh = nan must be a number"),
        (GOOD_PRICES.replace('"EUR"', '"euro"'), "currency = 'euro' must be a three-letter"),
        (GOOD_PRICES.replace("gpu_hour", "gpu_hours"), "prices.gpu_hours is not a price"),
        (
            GOOD_PRICES.replace('gpu_hour = { value = 2.0, source = "test" }\n', ""),
            "prices.gpu_hour is missing",
        ),
        (GOOD_PRICES.replace('source = "test" }\nkwh', 'source = "" }\nkwh'), "needs a source"),
        (
            GOOD_PRICES.replace('kwh = { value = 0.25, source = "test" }', "kwh = 0.25"),
            "prices.kwh must be",
        ),
        ("currency = ", "is not valid TOML"),
    ],
)
def test_a_broken_price_file_is_a_clear_error(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(words)) as e:
        metering.load_prices(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_the_price_list_a_service_uses(
    svc: Service,
    db_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    packaged = metering.packaged_prices()
    assert packaged.currency == "USD" and set(packaged.sources) == set(metering.PRICE_ITEMS)
    assert all(packaged.sources[k] for k in metering.PRICE_ITEMS)
    h = svc.tenant("acme")
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text(GOOD_PRICES, encoding="utf-8")
    bad.write_text(GOOD_PRICES.replace("0.25", "-1"), encoding="utf-8")
    code, out, err = _cli(
        capsys,
        "admin",
        "invoice",
        "acme",
        "--month",
        "2025-03",
        "--db",
        db_url,
        "--prices",
        str(bad),
    )
    assert code == 2 and "prices.kwh = -1" in err and err.count("\n") == 1
    monkeypatch.setenv(metering.PRICES_ENV, str(good))
    assert svc.client.get("/v1/usage", headers=h).json()["currency"] == "EUR"
    code, out, _ = _cli(
        capsys, "admin", "invoice", "acme", "--month", "2025-03", "--db", db_url, "--json"
    )
    assert code == 0 and json.loads(out)["currency"] == "EUR"
    monkeypatch.setenv(metering.PRICES_ENV, str(bad))
    r = svc.client.get("/v1/usage", headers=h)
    assert r.status_code == 503 and "price list" in r.json()["detail"] and str(bad) not in r.text


def test_the_dashboard_shows_this_months_usage(svc: Service) -> None:
    h = svc.tenant("acme")
    job = _submit(svc, h, tiles=1)
    _claim(svc, job)
    _finish(svc, job, "succeeded")
    start = metering.month_start()
    ended = min(utcnow(), start + timedelta(seconds=1000))
    with svc.ctx.db.session() as s:
        s.execute(
            update(JobRun).where(JobRun.job_id == job).values(started_at=start, ended_at=ended)
        )
    page = svc.client.get("/dashboard", headers=h)
    assert page.status_code == 200
    panel = re.search(r'<dl class="facts" id="usage">(.*?)</dl>', page.text, re.S)
    assert panel, page.text[-2000:]
    facts = dict(re.findall(r"<dt>([^<]+)</dt><dd>([^<]+)</dd>", panel.group(1)))
    assert facts["chip-seconds"] == f"{25 * (ended - start).total_seconds():,.0f}"
    assert facts["GPU-seconds"] == "0" and facts["jobs"] == "1"
    assert facts["cost"].endswith(" USD") and "kWh" in facts["energy"]
    assert "GB-hours" in facts["storage"]
    # an admin's map shows every tenant's jobs but no one tenant's bill
    assert 'id="usage"' not in svc.client.get("/dashboard", headers=svc.admin).text
