"""Roads: multi-lane ring highways built from straight and constant-curvature segments.

Every road is a closed "stadium" loop, so traffic density is held constant without spawning:

    segment 0: straight, heading +x, from (0, -R)          s in [0, Ls)
    segment 1: left bend of radius R around (Ls, 0)         s in [Ls, Ls + pi R)
    segment 2: straight, heading -x, from (Ls, R)           s in [Ls + pi R, 2 Ls + pi R)
    segment 3: left bend of radius R around (0, 0)          s in [2 Ls + pi R, L)

Frenet coordinates: ``s`` [m] runs along the reference line (the centre of lane 0, the rightmost
lane), ``d`` [m] is the lateral offset, positive to the left. Lane ``k`` has its centre at
``d = k * lane_width``. An on-ramp is lane -1, open only on ``[ramp_start, ramp_end)``; a lane
drop closes lane 0 on ``[drop_start, drop_end)``. Both lie on segment 0, the first straight.

All roads of a batch are stored as arrays over worlds (shape (W,)), so worlds with different
lane counts, lengths and features step together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dojo.errors import DojoConfigError

MIN_LANES, MAX_LANES = 2, 5
_ROWS_MIN_POINTS = 256  # points per road from which to_frenet works out each road's segment first


@dataclass(frozen=True)
class RoadConfig:
    """One road. Lengths in metres; NaN-free: a missing feature has length 0."""

    lanes: int = 3
    lane_width_m: float = 4.0
    straight_m: float = 1000.0
    radius_m: float = 400.0
    ramp_start_m: float = 0.0
    ramp_length_m: float = 0.0  # 0: no on-ramp
    drop_start_m: float = 0.0
    drop_length_m: float = 0.0  # 0: no lane drop

    def __post_init__(self) -> None:
        if (
            not isinstance(self.lanes, (int, np.integer))
            or not MIN_LANES <= self.lanes <= MAX_LANES
        ):
            raise DojoConfigError(
                f"lanes={self.lanes!r} is invalid: a road has {MIN_LANES} to {MAX_LANES} lanes."
            )
        if not 2.5 <= self.lane_width_m <= 6.0:
            raise DojoConfigError(
                f"lane_width_m={self.lane_width_m!r} must be between 2.5 and 6 m."
            )
        if self.straight_m < 200.0:
            raise DojoConfigError(f"straight_m={self.straight_m!r} must be at least 200 m.")
        if self.radius_m < (self.lanes + 1) * self.lane_width_m + 50.0:
            raise DojoConfigError(
                f"radius_m={self.radius_m!r} is too tight for {self.lanes} lanes of {self.lane_width_m} m."
            )
        for name in ("ramp", "drop"):
            start = getattr(self, f"{name}_start_m")
            length = getattr(self, f"{name}_length_m")
            if length < 0 or start < 0 or (length > 0 and start + length > self.straight_m):
                raise DojoConfigError(
                    f"{name}_start_m={start!r}, {name}_length_m={length!r} must lie on the first "
                    f"straight [0, {self.straight_m}] m."
                )

    @property
    def length_m(self) -> float:
        return 2.0 * self.straight_m + 2.0 * np.pi * self.radius_m


@dataclass
class Roads:
    """A batch of W roads as arrays (W,)."""

    lanes: np.ndarray  # (W,) int
    lane_width: np.ndarray  # (W,) [m]
    straight: np.ndarray  # (W,) [m]
    radius: np.ndarray  # (W,) [m], of the reference line
    ramp_start: np.ndarray  # (W,) [m]
    ramp_end: np.ndarray  # (W,) [m]; == ramp_start when there is no ramp
    drop_start: np.ndarray  # (W,) [m]
    drop_end: np.ndarray  # (W,) [m]

    @classmethod
    def stack(cls, configs: list[RoadConfig]) -> Roads:
        def col(f):  # noqa: ANN001, ANN202 - tiny local helper
            return np.array([f(c) for c in configs], dtype=np.float64)

        return cls(
            lanes=np.array([c.lanes for c in configs], dtype=np.int64),
            lane_width=col(lambda c: c.lane_width_m),
            straight=col(lambda c: c.straight_m),
            radius=col(lambda c: c.radius_m),
            ramp_start=col(lambda c: c.ramp_start_m),
            ramp_end=col(lambda c: c.ramp_start_m + c.ramp_length_m),
            drop_start=col(lambda c: c.drop_start_m),
            drop_end=col(lambda c: c.drop_start_m + c.drop_length_m),
        )

    def take(self, idx: np.ndarray) -> Roads:
        return Roads(**{k: v[idx] for k, v in self.__dict__.items()})

    def assign(self, idx: np.ndarray, other: Roads) -> None:
        for k, v in self.__dict__.items():
            v[idx] = getattr(other, k)

    @property
    def length(self) -> np.ndarray:
        """(W,) loop length [m]."""
        return 2.0 * self.straight + 2.0 * np.pi * self.radius

    # Shapes below: ``w`` broadcasts against s and d, e.g. (W, 1) for (W, V) inputs.
    def curvature(self, s: np.ndarray, w: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Curvature of the reference line [1/m] at s (positive: bends left)."""
        ls, r = _col(self.straight, w, s), _col(self.radius, w, s)
        s = ring_mod(s, _col(self.length, w, s))
        on_bend = ((s >= ls) & (s < ls + np.pi * r)) | (s >= 2 * ls + np.pi * r)
        return np.where(on_bend, 1.0 / r, 0.0)

    def to_xy(
        self, s: np.ndarray, d: np.ndarray, w: np.ndarray | slice = slice(None)
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frenet (s, d) -> world (x, y) [m] and road heading [rad] at s."""
        ls, r = _col(self.straight, w, s), _col(self.radius, w, s)
        s = ring_mod(s, _col(self.length, w, s))
        half = np.pi * r
        seg = (s >= ls).astype(np.int8) + (s >= ls + half) + (s >= 2 * ls + half)
        rd = r - d
        # bend 1 (seg 1) and bend 3 (seg 3) share the polar form around their centre
        phi = np.where(seg == 1, -0.5 * np.pi + (s - ls) / r, 0.5 * np.pi + (s - 2 * ls - half) / r)
        cx = np.where(seg == 1, ls, 0.0)
        x = np.select([seg == 0, seg == 2], [s, ls - (s - ls - half)], cx + rd * np.cos(phi))
        y = np.select([seg == 0, seg == 2], [d - r, rd], rd * np.sin(phi))
        heading = np.select(
            [seg == 0, seg == 2], [np.zeros_like(s), np.full_like(s, np.pi)], phi + 0.5 * np.pi
        )
        return x, y, heading

    def to_frenet(
        self, x: np.ndarray, y: np.ndarray, w: np.ndarray | slice = slice(None)
    ) -> tuple[np.ndarray, np.ndarray]:
        """World (x, y) [m] -> Frenet (s, d) [m]; exact inverse of :meth:`to_xy`."""
        if (
            x.ndim == 2
            and x.shape[1] >= _ROWS_MIN_POINTS
            and isinstance(w, np.ndarray)
            and w.shape == (len(x), 1)
        ):
            return self._to_frenet_rows(x, y, w)
        return self._to_frenet_any(x, y, w)

    def _to_frenet_rows(
        self, x: np.ndarray, y: np.ndarray, w: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`to_frenet` of (n, P) points, row i on road ``w[i, 0]`` (a camera's ground pixels).

        The same numbers, computed per row with only the segment formula the row needs: most
        rows see one straight or one bend, and then the other segments' arctan2 and hypot over
        every point are wasted. Rows spanning segments take the general path.
        """
        ls, r = self.straight[w[:, 0]][:, None], self.radius[w[:, 0]][:, None]
        xmin, xmax, ymin, ymax = x.min(axis=1), x.max(axis=1), y.min(axis=1), y.max(axis=1)
        mid = (xmin >= 0.0) & (xmax <= ls[:, 0])
        groups = {
            "lower": mid & (ymax < 0.0),  # segment 0, heading +x
            "upper": mid & (ymin >= 0.0),  # segment 2, heading -x
            "right": xmin > ls[:, 0],  # bend 1
            "left": xmax < 0.0,  # bend 3
        }
        dtype = np.result_type(x, y, ls, r)  # what the general formula's arithmetic gives
        s, d = np.empty(x.shape, dtype), np.empty(x.shape, dtype)
        rest = np.ones(len(x), dtype=bool)
        for name, rows in groups.items():
            if not rows.any():
                continue
            rest &= ~rows
            xs, ys, lr, rr = x[rows], y[rows], ls[rows], r[rows]
            if name == "lower":
                s[rows], d[rows] = xs, ys + rr
            elif name == "upper":
                s[rows], d[rows] = lr + np.pi * rr + (lr - xs), rr - ys
            elif name == "right":
                s[rows] = lr + (np.arctan2(ys, xs - lr) + 0.5 * np.pi) * rr
                d[rows] = rr - np.hypot(xs - lr, ys)
            else:  # centre (0, 0), subtracted as the general formula does (it promotes like the roads)
                x0 = xs - np.zeros_like(lr)
                s[rows] = (
                    2 * lr + np.pi * rr + (np.mod(np.arctan2(ys, x0), 2 * np.pi) - 0.5 * np.pi) * rr
                )
                d[rows] = rr - np.hypot(x0, ys)
        if rest.any():
            s[rest], d[rest] = self._to_frenet_any(x[rest], y[rest], w[rest])
        return s, d

    def _to_frenet_any(
        self, x: np.ndarray, y: np.ndarray, w: np.ndarray | slice = slice(None)
    ) -> tuple[np.ndarray, np.ndarray]:
        ls, r = _col(self.straight, w, x), _col(self.radius, w, x)
        half = np.pi * r
        on_right_bend = x > ls
        on_left_bend = x < 0.0
        cx = np.where(on_right_bend, ls, 0.0)
        rho = np.hypot(x - cx, y)
        phi = np.arctan2(y, x - cx)  # (-pi, pi]
        s_bend1 = ls + (phi + 0.5 * np.pi) * r
        s_bend3 = 2 * ls + half + (np.mod(phi, 2 * np.pi) - 0.5 * np.pi) * r
        s_straight = np.where(y < 0.0, x, ls + half + (ls - x))
        d_straight = np.where(y < 0.0, y + r, r - y)
        s = np.select([on_right_bend, on_left_bend], [s_bend1, s_bend3], s_straight)
        d = np.where(on_right_bend | on_left_bend, r - rho, d_straight)
        return s, d

    def lane_open(
        self, lane: np.ndarray, s: np.ndarray, w: np.ndarray | slice = slice(None)
    ) -> np.ndarray:
        """Whether ``lane`` is drivable at ``s``: main lanes except a dropped stretch, the ramp on its span."""
        return self._open_lanes(s, w, lane)[0]

    def lanes_open(
        self, lane: np.ndarray, s: np.ndarray, w: np.ndarray | slice = slice(None)
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`lane_open` of ``lane`` and of ``lane + 1`` at once (the two sides of a lane line)."""
        below, above = self._open_lanes(s, w, lane, lane + 1)
        return below, above

    def _open_lanes(
        self, s: np.ndarray, w: np.ndarray | slice, *lanes: np.ndarray
    ) -> list[np.ndarray]:
        """:meth:`lane_open` of each of ``lanes`` at ``s``, the road's stretches worked out once."""
        n = _col(self.lanes, w, s)
        plain = not (
            (self.ramp_end[w] > self.ramp_start[w]) | (self.drop_end[w] > self.drop_start[w])
        ).any()
        if plain and all(np.shape(k) == np.shape(s) for k in lanes):
            # no ramp and no drop on these roads: the stretch tests below would all be False
            # (the same booleans, without passes over s: a camera's ground pixels are most of them)
            return [(k >= 0) & (k < n) for k in lanes]
        s = ring_mod(s, _col(self.length, w, s))
        in_ramp = (s >= _col(self.ramp_start, w, s)) & (s < _col(self.ramp_end, w, s))
        in_drop = (s >= _col(self.drop_start, w, s)) & (s < _col(self.drop_end, w, s))
        return [((k >= 0) & (k < n) & ~((k == 0) & in_drop)) | ((k == -1) & in_ramp) for k in lanes]

    def lane_of(self, d: np.ndarray, w: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Nearest lane index for lateral offset d (may be -1 or >= lanes: off the main road)."""
        return np.floor(d / _col(self.lane_width, w, d) + 0.5).astype(np.int64)

    def on_road(
        self, s: np.ndarray, d: np.ndarray, w: np.ndarray | slice = slice(None)
    ) -> np.ndarray:
        """Whether a point lies on a drivable lane (used for off-road and closed-lane checks)."""
        return self.lane_open(self.lane_of(d, w), s, w) & (
            np.abs(d - self.lane_of(d, w) * _col(self.lane_width, w, d))
            <= 0.5 * _col(self.lane_width, w, d) + 1e-9
        )


def ring_mod(x: np.ndarray, length: np.ndarray) -> np.ndarray:
    """x wrapped into [0, length); numpy's float ``mod`` costs about twice as much."""
    return x - length * np.floor(x / length)


def _col(a: np.ndarray, w: np.ndarray | slice, like: np.ndarray) -> np.ndarray:
    """Per-world values ``a[w]`` shaped to broadcast against ``like`` (W,) or (W, ...)."""
    v = a[w]
    like = np.asarray(like)
    if v.ndim == 0 or like.ndim <= 1:
        return v
    return v.reshape(v.shape + (1,) * (like.ndim - v.ndim))
