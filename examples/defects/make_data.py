"""A generated image set for the walk-through: surfaces, some with a defect (a scratch or a pit).

    python make_data.py --out images --per-class 200

Writes ``images/ok/NNNN.png`` and ``images/defect/NNNN.png`` (64x64 greyscale). A surface is
smooth noise under a random lighting gradient; a defect is a thin dark scratch at a random
angle or a dark pit, faint enough that a classifier has to learn it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 64  # [px]


def surface(rng: np.random.Generator) -> np.ndarray:
    coarse = rng.normal(0.0, 1.0, (8, 8))
    texture = np.kron(coarse, np.ones((SIZE // 8, SIZE // 8))) * 6.0
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    angle = rng.uniform(0, 2 * np.pi)
    light = 40.0 * (np.cos(angle) * x + np.sin(angle) * y)
    return 140.0 + light + texture + rng.normal(0.0, 4.0, (SIZE, SIZE))


def add_defect(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    cy, cx = rng.uniform(12, SIZE - 12, 2)
    if rng.random() < 0.5:  # a scratch: a thin line through (cx, cy)
        angle = rng.uniform(0, np.pi)
        dist = np.abs((x - cx) * np.sin(angle) - (y - cy) * np.cos(angle))
        along = np.abs((x - cx) * np.cos(angle) + (y - cy) * np.sin(angle))
        mask = (dist < 1.2) & (along < rng.uniform(8, 20))
    else:  # a pit: a small dark disc
        mask = (x - cx) ** 2 + (y - cy) ** 2 < rng.uniform(2, 5) ** 2
    return img - mask * rng.uniform(25, 45)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="images")
    p.add_argument("--per-class", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    for label in ("ok", "defect"):
        folder = Path(args.out) / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(args.per_class):
            img = surface(rng)
            if label == "defect":
                img = add_defect(img, rng)
            pixels = np.clip(img, 0, 255).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(folder / f"{i:04d}.png")
    print(f"wrote {2 * args.per_class} images under {args.out}/")


if __name__ == "__main__":
    main()
