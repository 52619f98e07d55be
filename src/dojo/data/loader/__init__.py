"""The streaming training loader: decoded training windows from the clip store, for PyTorch.

>>> data = WindowDataset("store", dataset.split("train"), frames=2, seed=0)
>>> loader = make_loader(data, batch_size=64, num_workers=4)  # a DataLoader that keeps the position
>>> for epoch in range(epochs):
...     data.set_epoch(epoch)
...     for batch in loader:
...         loss = F.mse_loss(policy(batch["images"], batch["speed_mps"], batch["command"]), batch["action"])
...         checkpoint["data"] = data.state_dict()  # the position after this batch

A *window* is ``frames`` (k) consecutive frames of one clip ending at its *target* frame, one
every ``stride`` frames. Each one comes out as a dict::

    images         uint8 (cams, k, H, W) grey or (cams, k, H, W, 3) rgb, oldest frame first
    speed_mps      float32 ()   ego speed at the target frame [m/s]
    command        int64 ()     route command in force when the driver decided (dojo.world.Command)
    action         float32 (2,) [accel_mps2, steer_rad] the driver in control applied next
    lane_shift     float32 ()   the lane the driver was heading for: -1 right, 0 keep, +1 left
                                (sign of the lane change within LANE_LOOKAHEAD_S of the decision)
    occupancy      uint8 (rows, cols) ground-truth grid at the target frame (zeros when absent)
    has_occupancy  bool ()
    planner        float32 (P,) only with ``labels="autolabel"``: the planner targets, encoded
    planner_valid  bool (P,)    (:mod:`dojo.nets.targets`), and which of them are asked for
    clip_id, frame, t_s         which window this is (str, drive frame index, drive time [s])
    shard, shards, position     where it lies in the epoch (for :meth:`WindowDataset.observe`)

Which telemetry row labels a frame: the fleet logs a frame at time t, then the driver decides
and the world steps, then telemetry is logged at t + 0.1 s with the speed *after* the step and
the acceleration and steering applied *during* it. So the image at t pairs with the speed of
the row at t and with the action and command of the row at t + one decision step: the row at t
itself holds the action that led *to* the frame, a step late for imitation. A target frame
without both rows (the first frame of a drive) has no window.

Auto-labels (``labels="autolabel"``): the action (acceleration; the steering stays the
logged one), the lane shift and the command come from the drive's ``autolabels`` row at the
target frame's time instead: the careful driver run on the scene logged with that frame, i.e.
the decision taken on seeing it. A window whose target frame has no complete auto-label row is
left out and counted (:attr:`WindowDataset.unlabelled_windows`); the occupancy grid is the
auto-labeler's (80 m ahead by default), present every ``grid_every``-th decision step.

Lane shift: the driver's lateral intent, read from what happened: the sign of the lane index
``LANE_LOOKAHEAD_S`` after the decision minus the lane at it. A lane change crosses the line
about a second after it starts, so the label says "going left" from the moment the driver set
off until the car is in the new lane, and "keep" once it is there. (A lane that changes twice
within the look-ahead counts by where it ends.)

Speed: each clip's video is decoded once per camera, sequentially from the keyframe at or before
its first needed frame (a clip always starts on one), and every window of the clip is cut from
those decoded frames; nothing is decoded twice. :class:`WindowLoader` builds each batch in place
from the open clips (:meth:`WindowDataset.iter_batches`): a window's frames and label are copied
once, into the batch, in shared memory when a worker builds it; iterating the dataset itself
gives windows whose ``images`` are views into the decoded frames. Occupancy labels are read a
clip at a time, only the Parquet row groups that hold its frames. Memory is reused, never
faulted in afresh per clip or batch: decoded clips and in-process batches come from a
:class:`~dojo.data.buffers.BufferPool` (a buffer is lent again only once nothing holds what was
made of it), and workers write batches into slots the trainer's process hands back once it has
let a batch go (:mod:`dojo.data.slots`). A shard keeps the video and labels files it reads
open. Grey rigs take the luma plane as it is (the fleet writes grey as luma with neutral
chroma): what :func:`dojo.drivelog.decode_video` returns, and far cheaper than a
pixel-format conversion. The benchmark's reference (plain PyAV) and the loader's rate are
:func:`dojo.bench.loader.decode_rate_raw` and :func:`dojo.bench.loader.loader_rate`.

Order and sharding: an epoch's order is a function of (seed, epoch, the windows) and of how many
shards read it. The clips are shuffled (seed, epoch) and dealt round robin to the shards:
``world_size x num_workers`` of them, one per DataLoader worker of each DDP rank. A shard decodes
its clips in turn and passes their windows through a bounded shuffle buffer. Every window is in
exactly one shard: nothing is repeated or dropped.

Resume: a shard's order is fixed before it decodes anything, so "how many windows of each shard
were consumed" is a complete position. :meth:`WindowDataset.state_dict` saves it (JSON-safe) and
:meth:`WindowDataset.load_state_dict` restores it in a fresh process; iteration then yields
exactly the rest of the epoch, in the same order (the same number of shards is required). With
DataLoader workers, the worker that serves first after a resume is rotated so the DataLoader's
round robin over workers continues where it stopped. :class:`WindowLoader` records each batch
it hands over; iterating the dataset directly records itself.

The package, by concern (each module is private; import from :mod:`dojo.data.loader`):

- :mod:`~dojo.data.loader.plan`: window specs, the rig, the SQL plan and each clip's windows;
- :mod:`~dojo.data.loader.decode`: PyAV decoding into reused memory, the kept decoder;
- :mod:`~dojo.data.loader.labels`: the Parquet labels files and the clips' grids, read ahead;
- :mod:`~dojo.data.loader.order`: the shuffle buffer's emit order, the DDP place;
- :mod:`~dojo.data.loader.state`: the resume position and :func:`merge_states`;
- :mod:`~dojo.data.loader.dataset`: :class:`WindowDataset`, walking a shard's clips;
- :mod:`~dojo.data.loader.batches`: :func:`collate_windows`, :class:`WindowLoader`, :func:`make_loader`.
"""

from dojo.data.loader.batches import WindowLoader, collate_windows, make_loader
from dojo.data.loader.dataset import DEFAULT_BUFFER_WINDOWS, OPEN_FILES, WindowDataset
from dojo.data.loader.labels import LABELS_AHEAD
from dojo.data.loader.plan import LANE_LOOKAHEAD_S, Rig, WindowSpec, normalise_specs
from dojo.data.loader.state import STATE_FORMAT, STATE_VERSION, merge_states

__all__ = [
    "DEFAULT_BUFFER_WINDOWS",
    "LABELS_AHEAD",
    "LANE_LOOKAHEAD_S",
    "OPEN_FILES",
    "STATE_FORMAT",
    "STATE_VERSION",
    "Rig",
    "WindowDataset",
    "WindowLoader",
    "WindowSpec",
    "collate_windows",
    "make_loader",
    "merge_states",
    "normalise_specs",
]
