import json

import pytest
from PIL import GifImagePlugin, Image

from dojo.cli import main


def test_survey_json_reports_each_family_and_driver(capsys):
    assert (
        main(
            [
                "world",
                "survey",
                "--families",
                "stalled,cut_in",
                "--worlds",
                "4",
                "--seconds",
                "5",
                "--json",
            ]
        )
        == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert [(r["family"], r["driver"]) for r in rows] == [
        (f, d) for f in ("stalled", "cut_in") for d in ("naive", "human", "expert")
    ]
    assert all(r["decisions"] > 0 and 0.0 <= r["critical_rate"] <= 1.0 for r in rows)


@pytest.mark.parametrize(
    "argv, word",
    [
        (["world", "survey", "--families", "autobahn"], "autobahn"),
        (["world", "survey", "--worlds", "0"], "--worlds 0"),
        (["world", "survey", "--drivers", "robot"], "robot"),
        (["world", "render", "--scenario", "nope", "--out", "x.png"], "nope"),
        (["world", "render", "--seed", "-3", "--out", "x.png"], "-3"),
    ],
)
def test_bad_values_exit_2_with_one_clear_line(argv, word, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dojo: error:") and word in err and "\n" not in err
    assert not (tmp_path / "x.png").exists()


def test_render_writes_a_mosaic_png(tmp_path):
    out = tmp_path / "frame.png"
    assert main(["world", "render", "--scenario", "cut_in", "--seed", "3", "--out", str(out)]) == 0
    img = Image.open(out)
    assert img.format == "PNG" and img.width > 400 and img.height > 150


def test_render_gif_has_one_frame_per_step(tmp_path):
    out = tmp_path / "clip.gif"
    assert (
        main(
            [
                "world",
                "render",
                "--scenario",
                "stalled",
                "--seed",
                "1",
                "--out",
                str(out),
                "--gif",
                "--seconds",
                "1",
            ]
        )
        == 0
    )
    gif = Image.open(out)
    assert isinstance(gif, GifImagePlugin.GifImageFile)
    assert gif.n_frames == 10


def test_bench_world_prints_ours_beside_highway_env(capsys):
    pytest.importorskip("highway_env")
    assert main(["bench", "world", "--seconds", "0.3", "--worlds", "8", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in (
        "ours_vehicle_steps_per_s",
        "highway_env_vehicle_steps_per_s",
        "ratio",
        "camera_frames_per_s",
    ):
        assert result[key] > 0, key
    assert result["ratio"] == pytest.approx(
        result["ours_vehicle_steps_per_s"] / result["highway_env_vehicle_steps_per_s"]
    )
