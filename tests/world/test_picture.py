"""Mosaic layout, PNG and GIF writing, and clear errors for bad inputs and paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dojo.errors import DojoConfigError
from dojo.world.occupancy import EGO, FREE, NOT_DRIVABLE, VEHICLE
from dojo.world.picture import (
    CAMERA_SCALE,
    GRID_COLOURS,
    LABEL_PX,
    grid_rgb,
    mosaic,
    save_gif,
    save_png,
)

NAMES = ["front", "left", "right", "rear"]


def frames(rgb: bool = False) -> np.ndarray:
    """(4, 16, 24[, 3]) frames, each a flat distinct level with one bright pixel at (2, 3)."""
    out = (
        np.zeros((4, 16, 24), dtype=np.uint8)
        + np.array([40, 80, 120, 160], dtype=np.uint8)[:, None, None]
    )
    out[:, 2, 3] = 255
    return np.repeat(out[..., None], 3, axis=-1) if rgb else out


def grid() -> np.ndarray:
    g = np.full((12, 8), NOT_DRIVABLE, dtype=np.uint8)
    g[:, 2:6] = FREE
    g[2:4, 3] = VEHICLE
    g[8, 4] = EGO
    return g


@pytest.mark.parametrize("rgb", [False, True])
def test_mosaic_places_upscaled_cameras_and_the_grid(rgb: bool) -> None:
    img = mosaic(frames(rgb), grid(), NAMES, caption="seed 7")
    assert img.mode == "RGB"
    px = np.asarray(img)
    assert px.shape[1] > 2 * 24 * CAMERA_SCALE and px.shape[0] > 2 * 16 * CAMERA_SCALE
    # each camera level appears as a block of at least (16*3) x (24*3) pixels
    for level in (40, 80, 120, 160):
        assert (px == level).all(axis=-1).sum() >= 16 * 24 * CAMERA_SCALE**2 - 9
    # the bright pixel of a frame becomes a 3 x 3 block
    white = np.argwhere((px == 255).all(axis=-1))
    assert len(white) >= 4 * CAMERA_SCALE**2
    # every class colour of the grid is drawn, the ego's included
    for code in (FREE, VEHICLE, NOT_DRIVABLE, EGO):
        assert (px == GRID_COLOURS[code]).all(axis=-1).any()


def test_first_tile_is_the_first_camera_scaled_nearest() -> None:
    px = np.asarray(mosaic(frames(), grid(), NAMES))
    ys, xs = np.nonzero((px == 40).all(axis=-1))
    top, left = ys.min(), xs.min()
    tile = px[top : top + 16 * CAMERA_SCALE, left : left + 24 * CAMERA_SCALE, 0]
    expected = np.kron(frames()[0], np.ones((CAMERA_SCALE, CAMERA_SCALE), dtype=np.uint8))
    assert np.array_equal(tile, expected)
    assert top >= LABEL_PX  # the name sits above the tile


def test_grid_is_drawn_forward_up() -> None:
    colours = grid_rgb(grid())
    assert tuple(colours[2, 3]) == GRID_COLOURS[VEHICLE]  # row 2 is ahead: near the top
    assert tuple(grid_rgb(np.array([[200]], dtype=np.uint8))[0, 0]) == (255, 0, 255)


def test_single_camera_and_no_caption() -> None:
    img = mosaic(frames()[:1], grid(), ["front"])
    assert img.width > 24 * CAMERA_SCALE


def test_png_and_gif_round_trip(tmp_path: Path) -> None:
    img = mosaic(frames(), grid(), NAMES, caption="a")
    png = save_png(img, tmp_path / "deep" / "er" / "m.png")
    assert Image.open(png).size == img.size
    shots = [mosaic(frames(), grid(), NAMES, caption=f"t={t}") for t in range(3)]
    gif = save_gif(shots, tmp_path / "m.gif", fps=10)
    with Image.open(gif) as anim:
        assert getattr(anim, "n_frames", 1) == 3
        assert anim.info["duration"] == 100


def test_unwritable_paths_name_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    img = mosaic(frames(), grid(), NAMES)
    with pytest.raises(DojoConfigError, match="a_file"):
        save_png(img, blocker / "sub" / "m.png")
    with pytest.raises(DojoConfigError, match="is a folder"):
        save_png(img, tmp_path)
    with pytest.raises(DojoConfigError, match="a_file"):
        save_gif([img], blocker / "m.gif")


def test_bad_inputs() -> None:
    with pytest.raises(DojoConfigError, match="names"):
        mosaic(frames(), grid(), NAMES[:3])
    with pytest.raises(DojoConfigError, match="uint8"):
        mosaic(frames().astype(np.float32), grid(), NAMES)
    with pytest.raises(DojoConfigError, match="grid"):
        mosaic(frames(), np.zeros(5, dtype=np.uint8), NAMES)
    img = mosaic(frames(), grid(), NAMES)
    with pytest.raises(DojoConfigError, match="empty"):
        save_gif([], "x.gif")
    with pytest.raises(DojoConfigError, match="fps=0"):
        save_gif([img], "x.gif", fps=0)
    with pytest.raises(DojoConfigError, match="one size"):
        save_gif([img, img.resize((10, 10))], "x.gif")
