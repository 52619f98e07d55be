"""Route plans: each car's navigation issues lane commands now and then, as a route would.

A command (change left, change right, take the exit = head for the rightmost lane) is issued
after a seeded pause of keep-lane driving, only when the road has room for it, and is held
until the car reaches the lane it asks for or the command times out. Draws come from the
world's counter-based generator, so a car's commands do not depend on the fleet's size.
"""

from __future__ import annotations

import numpy as np

from dojo.world import rng as crng
from dojo.world.world import Command, World

PAUSE_S = (12.0, 30.0)  # keep-lane time between commands [s]
TIMEOUT_S = 30.0  # a command not done by then is dropped [s]
_STREAM = 101  # counter-based stream id of the route draws (world streams are small ints)


class RoutePlan:
    """The route commands of every car of a fleet; ``update`` writes them into ``world.command``."""

    def __init__(self, world: World) -> None:
        n = world.num_worlds
        self.issued_s = np.zeros(n)  # drive time the current command was issued [s]
        self.start_lane = np.zeros(n, dtype=np.int64)  # ego lane when it was issued
        self.goal_lane = np.zeros(n, dtype=np.int64)
        self.next_s = np.zeros(n)  # drive time of the next command [s]
        self.restart(world, np.arange(n))

    def restart(self, world: World, cars: np.ndarray) -> None:
        """New drives for ``cars``: keep lane first, then the first command after a pause."""
        world.command[cars] = Command.KEEP_LANE
        self.next_s[cars] = self._pause(world)[cars]

    def _pause(self, world: World) -> np.ndarray:
        u = crng.uniform(world.seeds, world.step_count, _STREAM, 2)
        return world.time_s + PAUSE_S[0] + (PAUSE_S[1] - PAUSE_S[0]) * u[:, 0]

    def elapsed_s(self, world: World) -> np.ndarray:
        """(N,) time since the current command was issued [s] (0 while keeping the lane)."""
        return np.where(world.command != Command.KEEP_LANE, world.time_s - self.issued_s, 0.0)

    def update(self, world: World) -> None:
        t, lane = world.time_s, world.perception.index.lane[:, 0]
        cmd = world.command
        active = cmd != Command.KEEP_LANE
        reached = np.where(cmd == Command.TAKE_EXIT, lane <= self.goal_lane, lane == self.goal_lane)
        over = active & (reached | (t - self.issued_s > TIMEOUT_S))
        if over.any():
            cmd[over] = Command.KEEP_LANE
            self.next_s[over] = self._pause(world)[over]
        due = (cmd == Command.KEEP_LANE) & (t >= self.next_s) & ~over
        if not due.any():
            return
        lanes = world.roads.lanes
        u = crng.uniform(world.seeds, world.step_count, _STREAM + 1, 1)[:, 0]
        # feasible choices only: left needs a lane to the left, right and exit one to the right
        can_left, can_right = lane < lanes - 1, lane > 0
        pick = np.where(
            can_left & can_right,
            np.select(
                [u < 0.4, u < 0.8], [Command.CHANGE_LEFT, Command.CHANGE_RIGHT], Command.TAKE_EXIT
            ),
            np.where(
                can_left,
                Command.CHANGE_LEFT,
                np.where(u < 0.5, Command.CHANGE_RIGHT, Command.TAKE_EXIT),
            ),
        )
        on_ramp = lane < 0  # merging: wait until on the carriageway
        go = due & ~on_ramp
        cmd[go] = pick[go]
        self.issued_s[go] = t[go]
        self.start_lane[go] = lane[go]
        goal = np.select(
            [pick == Command.CHANGE_LEFT, pick == Command.CHANGE_RIGHT], [lane + 1, lane - 1], 0
        )
        self.goal_lane[go] = goal[go]

    def direction(self, world: World) -> np.ndarray:
        """(N,) lane direction the command asks for: +1 left, -1 right, 0 keep."""
        cmd = world.command
        return np.select(
            [
                cmd == Command.CHANGE_LEFT,
                (cmd == Command.CHANGE_RIGHT) | (cmd == Command.TAKE_EXIT),
            ],
            [1, -1],
            0,
        )
