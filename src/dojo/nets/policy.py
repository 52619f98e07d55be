"""The command-conditioned driving policy: camera rig over the last k frames in, controls out.

Data flow, for B cars, C cameras, k frames of H x W pixels::

    images (B, C, k, H, W) uint8 grey, or (B, C, k, H, W, 3) rgb
      -> per camera, frames stacked as channels (B*C, k or 3k, H, W), scaled to [-0.5, 0.5]
         (the scaling is folded into the stem's weights)
      -> conv backbone, ONE set of weights for every camera: stem 4x4/4, then 3x3/2, 3x3/2
         (total stride 16: a 48 x 96 image becomes a 3 x 6 feature map)
      -> pooled to a fixed 3 x 6 grid, flattened, projected to a D-wide camera token (B, C, D)
      -> + a learned embedding of the camera's slot (so the fusion knows which camera is which)
      -> fused by cross-attention from Q learned queries (B, Q, D): the fusion's weights do not
         depend on the number of cameras, only the embedding table grows with the rig
      -> concatenated with the route-command embedding and the normalised ego speed
      -> MLP head -> tanh -> [acceleration in the ego's limits, lane shift in [-1, 1]] (B, 2)

The model is a plain :class:`torch.nn.Module`; how it is parallelised lives in ``train/``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from numbers import Integral
from typing import Any, NamedTuple, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dojo.errors import DojoConfigError
from dojo.nets.options import NET_SIZES
from dojo.world.camera import CameraRig
from dojo.world.world import EGO_ACCEL_RANGE

SPEED_SCALE_MPS = 30.0  # [m/s] ego speed is fed to the net as speed_mps / SPEED_SCALE_MPS
SPEED_CLAMP_MPS = 60.0  # [m/s] |speed| beyond this is clamped first (keeps extreme inputs finite)
BACKBONE_STRIDE = 16  # [px] total downsampling of the conv backbone
MIN_IMAGE_PX = BACKBONE_STRIDE  # smallest height or width the backbone can see as one cell
POOL_GRID = (3, 6)  # (rows, cols) of the pooled feature map of every camera


class _Widths(NamedTuple):
    convs: tuple[int, int, int]  # channels of the three conv stages
    token: int  # D: width of a camera token
    queries: int  # Q: learned fusion queries
    heads: int  # attention heads of the fusion (token % heads == 0)
    command: int  # width of the route-command embedding
    hidden: int  # width of the MLP head


SIZES: dict[str, _Widths] = {
    "tiny": _Widths((16, 32, 64), token=64, queries=4, heads=4, command=16, hidden=128),
    "base": _Widths((32, 64, 128), token=128, queries=4, heads=4, command=32, hidden=256),
    "large": _Widths((64, 128, 256), token=256, queries=8, heads=8, command=64, hidden=512),
    # for a GPU (issue 23): 4x large's conv widths, so each decoded pixel carries ~16x the FLOPs
    # and a GPU's tensor cores get matmuls of 256..1024 channels; meant for the GPU rig
    # (dojo.nets.options.GPU_IMAGE_PX), where it is 50 M parameters and 83 GFLOP a sample
    "xl": _Widths((256, 512, 1024), token=1024, queries=8, heads=16, command=64, hidden=2048),
}
assert tuple(SIZES) == NET_SIZES, "dojo.nets.options.NET_SIZES must name SIZES, in order"


_Config = TypeVar("_Config", bound="PolicyConfig")  # from_dict returns the subclass it is called on


# the world's default rig's camera count: a net built without a dataset reads that rig
DEFAULT_CAMERAS = len(CameraRig.default().cameras)


@dataclass(frozen=True)
class PolicyConfig:
    """Shape of a :class:`DrivingPolicy` and of the inputs it accepts.

    ``size``: one of ``tiny``, ``base``, ``large``, ``xl`` (widths grow with size; ``xl`` is
    sized for a GPU at ``dojo.nets.options.GPU_IMAGE_PX``). ``cameras``: cameras in
    the rig. ``frames``: k, how many of the most recent frames each camera contributes (one frame
    per 0.1 s decision). ``height``, ``width``: image size [px], at least ``MIN_IMAGE_PX``.
    ``rgb``: colour (3 values a pixel) or grey images. ``commands``: number of route commands
    (``dojo.world.Command`` has 4: KEEP_LANE, CHANGE_LEFT, CHANGE_RIGHT, TAKE_EXIT).
    """

    size: str = "tiny"
    cameras: int = DEFAULT_CAMERAS
    frames: int = 2
    height: int = 48  # [px]
    width: int = 96  # [px]
    rgb: bool = False
    commands: int = 4

    def __post_init__(self) -> None:
        if not isinstance(self.size, str) or self.size not in SIZES:
            raise DojoConfigError(
                f"Policy size={self.size!r} is not known; choose one of: {', '.join(SIZES)}."
            )
        for name in ("cameras", "frames", "height", "width", "commands"):
            value = getattr(self, name)
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral) or value < 1:
                raise DojoConfigError(f"Policy {name}={value!r} must be a positive whole number.")
            object.__setattr__(self, name, int(value))  # numpy ints would not load weights_only
        for name in ("height", "width"):
            value = getattr(self, name)
            if value < MIN_IMAGE_PX:
                raise DojoConfigError(
                    f"Policy {name}={value!r} px is smaller than the backbone's stride; "
                    f"it must be at least {MIN_IMAGE_PX} px."
                )
        if not isinstance(self.rgb, (bool, np.bool_)):
            raise DojoConfigError(f"Policy rgb={self.rgb!r} must be True or False.")
        object.__setattr__(self, "rgb", bool(self.rgb))

    @property
    def channels(self) -> int:
        """Input channels of the backbone: the k frames of one camera stacked (3 per frame in rgb)."""
        return self.frames * (3 if self.rgb else 1)

    def image_shape(self, batch: int) -> tuple[int, ...]:
        """The shape ``forward`` expects for ``images`` of ``batch`` cars, e.g. ``(64, 4, 2, 48, 96)``."""
        shape = (batch, self.cameras, self.frames, self.height, self.width)
        return (*shape, 3) if self.rgb else shape

    def to_dict(self) -> dict[str, Any]:
        """Plain ``{field: value}`` (str, int, bool only), for checkpoints and JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls: type[_Config], data: Mapping[str, Any]) -> _Config:
        """Inverse of :meth:`to_dict`; every field must be present and no other key."""
        if not isinstance(data, Mapping):
            raise DojoConfigError(
                f"A policy config must be a mapping of field to value; got {type(data).__name__}."
            )
        names = [f.name for f in fields(cls)]
        unknown = sorted(str(k) for k in data if k not in names)
        if unknown:
            raise DojoConfigError(
                f"Policy config has unknown keys {unknown}; the keys are: {', '.join(names)}."
            )
        missing = [n for n in names if n not in data]
        if missing:
            raise DojoConfigError(f"Policy config is missing the keys {missing}.")
        return cls(**{n: data[n] for n in names})


class CameraBackbone(nn.Module):
    """The shared multi-camera backbone: ``images (B, C, k, H, W[, 3]) -> tokens (B, C, D)``.

    One set of conv weights for every camera and a learned embedding of each camera's slot, so
    every head built on it (driving policy, occupancy) sees the same per-camera tokens; training
    both heads on it at once is what makes the occupancy labels useful to the policy. It has no
    ``forward`` of its own (the nets built on it define theirs): :meth:`check_images`, then
    :meth:`encode`.
    """

    def __init__(self, config: PolicyConfig) -> None:
        super().__init__()
        if not isinstance(config, PolicyConfig):
            raise DojoConfigError(
                f"{type(self).__name__} needs a PolicyConfig; got {type(config).__name__}."
            )
        self.config = config
        w = SIZES[config.size]
        c1, c2, c3 = w.convs
        d = w.token
        self.stem = nn.Conv2d(config.channels, c1, kernel_size=4, stride=4)  # (N, c1, H/4, W/4)
        self.backbone = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.Conv2d(c1, c2, kernel_size=3, stride=2, padding=1),  # (N, c2, H/8, W/8)
            nn.ReLU(inplace=True),
            nn.Conv2d(c2, c3, kernel_size=3, stride=2, padding=1),  # (N, c3, H/16, W/16)
            nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(POOL_GRID)  # (N, c3, 3, 6) whatever the image size
        self.token = nn.Linear(c3 * POOL_GRID[0] * POOL_GRID[1], d)  # camera token (N, D)
        self.camera_embedding = nn.Parameter(torch.randn(config.cameras, d) * 0.02)  # (C, D)
        self.token_norm = nn.LayerNorm(d)

    @property
    def token_width(self) -> int:
        """D, the width of a camera token."""
        return self.token.out_features

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Camera tokens ``(B, C, D)`` of checked ``images`` (see :meth:`check_images`)."""
        return self.encode_features(images)[0]

    def encode_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens (B, C, D), feature maps (B, C, c3, 3, 6))`` of checked ``images``.

        The maps are the last conv stage on the fixed POOL_GRID, the very values each token is
        projected from: a head that must know *where* in a picture something is (the occupancy
        head's ``spatial`` variant) reads them, the policy keeps its one token a camera.
        """
        cfg = self.config
        batch = images.shape[0]
        dtype = self.token.weight.dtype
        x = images.to(dtype)
        if images.is_floating_point():
            x = x.clamp(0.0, 255.0)  # a float image outside 0..255 cannot push activations to inf
        if cfg.rgb:  # (B, C, k, H, W, 3) -> (B, C, k, 3, H, W)
            x = x.permute(0, 1, 2, 5, 3, 4)
        x = x.reshape(batch * cfg.cameras, cfg.channels, cfg.height, cfg.width)  # (B*C, ch, H, W)
        features = self.backbone(self._stem(x))  # (B*C, c3, H/16, W/16)
        if tuple(features.shape[-2:]) != POOL_GRID:  # 48 x 96 images need no pooling
            features = self.pool(features)  # (B*C, c3, 3, 6)
        tokens = self.token(features.flatten(1)).view(batch, cfg.cameras, -1)  # (B, C, D)
        maps = features.view(batch, cfg.cameras, *features.shape[1:])  # (B, C, c3, 3, 6)
        return self.token_norm(tokens + self.camera_embedding), maps

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        """The first conv on pixels in 0..255, as if they were scaled to [-0.5, 0.5] first.

        conv(x / 255 - 0.5) = conv'(x) with w' = w / 255 and b' = b - 0.5 * sum(w): folding the
        scaling into the weights spares two passes over the largest tensor of the forward.
        """
        w, b = self.stem.weight, self.stem.bias
        assert b is not None
        return F.conv2d(
            x, w * (1.0 / 255.0), b - 0.5 * w.sum(dim=(1, 2, 3)), stride=self.stem.stride
        )

    def check_images(self, images: torch.Tensor, who: str | None = None) -> int:
        """Type, device, dtype and shape of ``images``; returns the batch size. Raises DojoConfigError
        naming ``who`` (the network the user called; this class's name by default)."""
        cfg = self.config
        who = who or type(self).__name__
        if not isinstance(images, torch.Tensor):
            raise DojoConfigError(
                f"{who} input images must be a torch.Tensor; got {type(images).__name__}."
            )
        device = self.token.weight.device
        if images.device != device:
            raise DojoConfigError(
                f"{who} input images is on {images.device}; the model is on {device}."
            )
        if images.dtype != torch.uint8 and not images.is_floating_point():
            raise DojoConfigError(
                f"{who} images must be uint8 or floating point (0..255); got {images.dtype}."
            )
        batch = images.shape[0] if images.dim() > 0 else 0
        expected = cfg.image_shape(batch)
        if tuple(images.shape) != expected or batch < 1:
            want = ", ".join(str(n) for n in cfg.image_shape(batch)[1:])
            layout = "(batch, cameras, frames, height, width" + (", 3)" if cfg.rgb else ")")
            raise DojoConfigError(
                f"{who} images must have shape (B, {want}) {layout}; got {tuple(images.shape)}."
            )
        return batch


def cross_attention(
    queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, heads: int
) -> torch.Tensor:
    """Multi-head attention of ``queries`` (B or 1, Q, D) over ``keys``/``values`` (B, C, D) -> (B, Q, D).

    Written with plain matmuls (not ``scaled_dot_product_attention``) so that
    ``torch.utils.flop_counter`` counts it on every device; with a handful of keys (one per
    camera) a fused kernel would gain nothing.
    """
    b, c, d = keys.shape
    q = queries.view(queries.shape[0], -1, heads, d // heads).transpose(1, 2)  # (B|1, h, Q, d/h)
    k = keys.view(b, c, heads, d // heads).transpose(1, 2)  # (B, h, C, d/h)
    v = values.view(b, c, heads, d // heads).transpose(1, 2)  # (B, h, C, d/h)
    att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // heads), dim=-1)  # (B, h, Q, C)
    return (att @ v).transpose(1, 2).reshape(b, -1, d)  # (B, Q, D)


class DrivingPolicy(CameraBackbone):
    """Multi-camera, k-frame driving policy: ``(images, speed_mps, command) -> (B, 2)`` controls.

    The output is ``[acceleration m/s^2, lane shift]``, each bounded by a tanh: acceleration
    scaled into the world's ``EGO_ACCEL_RANGE`` (the positive and negative sides scaled apart,
    so a zero pre-activation means zero acceleration), and the lane shift in ``[-1, 1]``: where
    the car should be heading, -1 the lane to the right, 0 its own, +1 the lane to the left. On
    the car, the lane-keeping controller every driver in the world uses (human model, expert,
    naive) steers to the centre of that lane (``World.lane_shift_action``).

    Why acceleration and a lane, not steering or a trajectory:

    * acceleration is what every hazard in the world asks for (brake for a stalled car, a
      cut-in, a hard-braking leader), it is what the human and the safety driver produce, and it
      is compared number for number with theirs in shadow mode;
    * steering directly was tried and failed: a tiny policy trained on human driving drifted
      out of its lane where naive, on the lane controller, did not (the figures are in
      docs/train.md and docs/loop.md). Holding a lane
      centre to centimetres from 48 x 96 grey pictures is a control problem, not the decision the
      network is for; a production car does it with a lane-keeping loop too;
    * the lane choice is the decision: change left, right, or stay, which is what MOBIL and the
      human make and what the route command asks for. Its label comes from where the driver went
      (``dojo.data.loader``'s ``lane_shift``), so every logged drive is still a label as it stands;
    * one forward pass is one 0.1 s decision: the world steps at the rate the policy decides.

    Cameras share one backbone (weights do not grow with the rig); a learned per-camera embedding
    tells the fusion which camera a token came from. See the module docstring for the layers.
    The backbone is inherited from :class:`CameraBackbone` (not held as a submodule) so the
    weights keep their names (``stem.weight``, ``camera_embedding``...) and checkpoints written
    before the occupancy head existed still load; :meth:`encode` and :meth:`decide` split the
    forward so another head (``dojo.nets.occupancy``) can read the same camera tokens.
    """

    def __init__(self, config: PolicyConfig) -> None:
        super().__init__(config)
        w = SIZES[config.size]
        d = w.token
        self.queries = nn.Parameter(torch.randn(w.queries, d) * 0.02)  # (Q, D)
        self.heads = w.heads
        self.q_proj = nn.Linear(d, d)
        self.kv_proj = nn.Linear(d, 2 * d)
        self.out_proj = nn.Linear(d, d)
        self.command_embedding = nn.Embedding(config.commands, w.command)
        self.head = nn.Sequential(
            nn.Linear(w.queries * d + w.command + 1, w.hidden),
            nn.ReLU(inplace=True),
            nn.Linear(w.hidden, w.hidden),
            nn.ReLU(inplace=True),
            nn.Linear(w.hidden, 2),
        )
        last = self.head[-1]
        assert isinstance(last, nn.Linear)
        nn.init.normal_(last.weight, std=1e-3)  # start near zero: coast, keep the lane
        nn.init.zeros_(last.bias)
        self.accel_range_mps2 = (float(EGO_ACCEL_RANGE[0]), float(EGO_ACCEL_RANGE[1]))

    def forward(
        self, images: torch.Tensor, speed_mps: torch.Tensor, command: torch.Tensor
    ) -> torch.Tensor:
        """Controls for a batch of cars.

        ``images``: uint8 or float in 0..255, shape ``(B, cams, k, H, W)`` (grey) or
        ``(B, cams, k, H, W, 3)`` (rgb); frames oldest first; float pixels are clamped to 0..255.
        ``speed_mps``: float ``(B,)``, ego speed [m/s], clamped to +-SPEED_CLAMP_MPS (NaN is an
        error). ``command``: integer ``(B,)``, a route command in ``[0, commands)``. All on the
        model's device.
        Returns float ``(B, 2)``: ``[acceleration m/s^2, lane shift in [-1, 1]]``.
        """
        self._check_inputs(images, speed_mps, command)
        return self.decide(self.encode(images), speed_mps, command)  # (B, 2)

    def decide(
        self, tokens: torch.Tensor, speed_mps: torch.Tensor, command: torch.Tensor
    ) -> torch.Tensor:
        """Controls ``(B, 2)`` from camera tokens ``(B, C, D)`` (of :meth:`encode`) and checked inputs."""
        dtype = self.token.weight.dtype
        fused = self._fuse(tokens)  # (B, Q*D)
        speed = speed_mps.to(dtype).clamp(-SPEED_CLAMP_MPS, SPEED_CLAMP_MPS) / SPEED_SCALE_MPS
        cmd = self.command_embedding(command.long())  # (B, E)
        raw = self.head(torch.cat([fused, cmd, speed[:, None]], dim=1))  # (B, 2)
        t = torch.tanh(raw)
        low, high = self.accel_range_mps2  # sides scaled apart: t = 0 is zero acceleration
        accel = t[:, 0].clamp(min=0.0) * high - t[:, 0].clamp(max=0.0) * low  # [m/s^2]
        return torch.stack([accel, t[:, 1]], dim=1)  # (B, 2): [m/s^2, lanes]

    def _fuse(self, tokens: torch.Tensor) -> torch.Tensor:
        """Cross-attention from Q learned queries to the C camera tokens: (B, C, D) -> (B, Q*D)."""
        d = tokens.shape[-1]
        k, v = self.kv_proj(tokens).split(d, dim=-1)  # each (B, C, D)
        out = cross_attention(self.q_proj(self.queries)[None], k, v, self.heads)  # (B, Q, D)
        return F.relu(self.out_proj(out)).flatten(1)  # (B, Q*D)

    def _check_inputs(
        self, images: torch.Tensor, speed_mps: torch.Tensor, command: torch.Tensor
    ) -> int:
        """Shapes, dtypes and command range; returns the batch size. Raises DojoConfigError."""
        cfg = self.config
        for name, value in (("speed_mps", speed_mps), ("command", command)):
            if not isinstance(value, torch.Tensor):
                raise DojoConfigError(
                    f"DrivingPolicy input {name} must be a torch.Tensor; got {type(value).__name__}."
                )
        batch = self.check_images(images)
        device = self.token.weight.device
        for name, value in (("speed_mps", speed_mps), ("command", command)):
            if value.device != device:
                raise DojoConfigError(
                    f"DrivingPolicy input {name} is on {value.device}; the model is on {device}."
                )
        if not speed_mps.is_floating_point() or tuple(speed_mps.shape) != (batch,):
            raise DojoConfigError(
                f"DrivingPolicy speed_mps must be a floating tensor of shape ({batch},); "
                f"got {speed_mps.dtype} of shape {tuple(speed_mps.shape)}."
            )
        if command.is_floating_point() or command.is_complex() or command.dtype == torch.bool:
            raise DojoConfigError(
                f"DrivingPolicy command must be an integer tensor; got {command.dtype}."
            )
        if tuple(command.shape) != (batch,):
            raise DojoConfigError(
                f"DrivingPolicy command must have shape ({batch},); got {tuple(command.shape)}."
            )
        out_of_range = (command < 0) | (command >= cfg.commands)
        if bool(out_of_range.any() | speed_mps.isnan().any()):  # one sync on an accelerator
            if bool(speed_mps.isnan().any()):
                raise DojoConfigError("DrivingPolicy speed_mps holds NaN; speeds must be numbers.")
            bad = command[out_of_range][0].item()
            raise DojoConfigError(
                f"DrivingPolicy command {bad} is out of range; commands are 0..{cfg.commands - 1}."
            )
        return batch


def parameter_count(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``model`` (only those with ``requires_grad`` if asked)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
