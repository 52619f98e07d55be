"""Pictures of what the ego senses: camera views beside the occupancy grid, as PNG or GIF.

A mosaic shows the cameras in a grid of tiles (each upscaled 3x, nearest neighbour, with its name
above it) and, to their right, the bird's-eye occupancy grid with the ego driving up the page,
coloured by class (see :mod:`dojo.world.occupancy`), and an optional caption along the top.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dojo.atomic import atomic_write
from dojo.errors import DojoConfigError
from dojo.world.occupancy import EGO, FREE, NOT_DRIVABLE, OBSTACLE, VEHICLE

CAMERA_SCALE = 3
LABEL_PX = 14  # height of the strip holding a tile's name
GAP_PX = 4
BACKGROUND = (24, 24, 28)
TEXT = (235, 235, 235)
# Class colours of the bird's-eye grid; any other value shows as magenta so a bad code stands out.
GRID_COLOURS = {
    FREE: (92, 92, 98),
    VEHICLE: (70, 120, 235),
    OBSTACLE: (250, 140, 20),
    NOT_DRIVABLE: (70, 120, 60),
    EGO: (235, 45, 45),
}
UNKNOWN_COLOUR = (255, 0, 255)


def grid_rgb(grid: np.ndarray) -> np.ndarray:
    """(rows, cols, 3) uint8 colours of a class grid (rows, cols)."""
    lut = np.tile(np.array(UNKNOWN_COLOUR, dtype=np.uint8), (256, 1))
    for code, colour in GRID_COLOURS.items():
        lut[code] = colour
    return lut[np.asarray(grid, dtype=np.uint8)]


def mosaic(
    frames: np.ndarray, grid: np.ndarray, names: list[str], caption: str = ""
) -> Image.Image:
    """One RGB picture: camera tiles (n_cams, H, W[, 3]) uint8 beside the class grid (rows, cols)."""
    frames, grid = _check_inputs(frames, grid, names)
    font = ImageFont.load_default()
    tiles = _camera_block(frames, names, font)
    bev = _grid_tile(grid, tiles.height - LABEL_PX, font)
    top = LABEL_PX + GAP_PX if caption else 0
    out = Image.new(
        "RGB",
        (tiles.width + GAP_PX + bev.width + 2 * GAP_PX, top + tiles.height + 2 * GAP_PX),
        BACKGROUND,
    )
    out.paste(tiles, (GAP_PX, top + GAP_PX))
    out.paste(bev, (GAP_PX + tiles.width + GAP_PX, top + GAP_PX))
    if caption:
        ImageDraw.Draw(out).text((GAP_PX, GAP_PX), caption, fill=TEXT, font=font)
    return out


def _check_inputs(
    frames: np.ndarray, grid: np.ndarray, names: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    frames, grid = np.asarray(frames), np.asarray(grid)
    if (
        frames.dtype != np.uint8
        or frames.ndim not in (3, 4)
        or (frames.ndim == 4 and frames.shape[-1] != 3)
    ):
        raise DojoConfigError(
            f"frames must be uint8 (n_cams, H, W) or (n_cams, H, W, 3); got {frames.dtype} {frames.shape}."
        )
    if len(names) != frames.shape[0]:
        raise DojoConfigError(f"names={names!r} must name each of the {frames.shape[0]} cameras.")
    if grid.ndim != 2 or grid.size == 0:
        raise DojoConfigError(
            f"grid must be a non-empty (rows, cols) class array; got shape {grid.shape}."
        )
    return frames, grid


def _camera_block(
    frames: np.ndarray, names: list[str], font: ImageFont.ImageFont | ImageFont.FreeTypeFont
) -> Image.Image:
    """The camera tiles, two per row (one when there is a single camera), each named above."""
    n, h, w = frames.shape[:3]
    per_row = 1 if n == 1 else 2
    n_rows = math.ceil(n / per_row)
    tile_w, tile_h = w * CAMERA_SCALE, h * CAMERA_SCALE + LABEL_PX
    block = Image.new(
        "RGB",
        (per_row * tile_w + (per_row - 1) * GAP_PX, n_rows * tile_h + (n_rows - 1) * GAP_PX),
        BACKGROUND,
    )
    draw = ImageDraw.Draw(block)
    for i, (frame, name) in enumerate(zip(frames, names, strict=True)):
        x, y = (i % per_row) * (tile_w + GAP_PX), (i // per_row) * (tile_h + GAP_PX)
        view = (
            Image.fromarray(frame)
            .convert("RGB")
            .resize((tile_w, h * CAMERA_SCALE), Image.Resampling.NEAREST)
        )
        block.paste(view, (x, y + LABEL_PX))
        draw.text((x + 2, y + 1), name, fill=TEXT, font=font)
    return block


def _grid_tile(
    grid: np.ndarray, height_px: int, font: ImageFont.ImageFont | ImageFont.FreeTypeFont
) -> Image.Image:
    """The class grid upscaled by a whole factor to about ``height_px`` tall, with a legend title."""
    rows, cols = grid.shape
    scale = max(1, height_px // rows)
    bev = Image.fromarray(grid_rgb(grid)).resize(
        (cols * scale, rows * scale), Image.Resampling.NEAREST
    )
    tile = Image.new("RGB", (max(bev.width, 60), bev.height + LABEL_PX), BACKGROUND)
    tile.paste(bev, (0, LABEL_PX))
    ImageDraw.Draw(tile).text((2, 1), "occupancy (up = ahead)", fill=TEXT, font=font)
    return tile


def save_png(img: Image.Image, path: str | Path) -> Path:
    """Write ``img`` as PNG at ``path`` (parent folders are created; atomic); returns the path."""
    target = _writable(path)
    try:
        with atomic_write(target) as f:
            img.save(f, format="PNG")
    except OSError as err:
        raise DojoConfigError(
            f"Cannot write the picture to {str(target)!r}: {err.strerror or err}."
        ) from err
    return target


def save_gif(images: list[Image.Image], path: str | Path, fps: float = 10.0) -> Path:
    """Write ``images`` as a looping GIF at ``fps`` frames per second; returns the path."""
    if not images:
        raise DojoConfigError(f"No frames to write to {str(path)!r}: images is empty.")
    if not 0.0 < fps <= 100.0:
        raise DojoConfigError(f"fps={fps!r} must lie in (0, 100] frames per second.")
    sizes = {im.size for im in images}
    if len(sizes) > 1:
        raise DojoConfigError(f"All GIF frames need one size; got {sorted(sizes)}.")
    target = _writable(path)
    frames = [im.convert("RGB") for im in images]
    try:
        with atomic_write(target) as f:
            frames[0].save(
                f,
                format="GIF",
                save_all=True,
                append_images=frames[1:],
                duration=max(10, round(1000.0 / fps)),  # [ms] per frame; GIF counts in 10 ms steps
                loop=0,
            )
    except OSError as err:
        raise DojoConfigError(
            f"Cannot write the animation to {str(target)!r}: {err.strerror or err}."
        ) from err
    return target


def _writable(path: str | Path) -> Path:
    """``path`` as a Path whose parent folder exists (created if missing), or a clear error."""
    target = Path(path)
    if target.is_dir():
        raise DojoConfigError(f"Cannot write to {str(target)!r}: it is a folder, not a file name.")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DojoConfigError(f"Cannot write to {str(target)!r}: {err.strerror or err}.") from err
    return target
