"""68-point facial landmarks with FAN (Bulat & Tzimiropoulos 2017), for expression labels of real photos.

The network is the 2D-FAN of the face-alignment package (BSD-3), written here with the same layer
names so its released state dict loads strictly: that package itself would bring numba and a
download-at-first-use path, and only its network is needed. The number of stacked hourglasses is
read from the file (the release has 4; tests write a one-module file of random weights).

Input: a face crop, 256 x 256 RGB in [0, 1]. Output: 68 heatmaps at 64 x 64, decoded to points in
that grid (iBUG 300-W order: jaw 0-16, eyes 36-47, inner lips 60-67).
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from dctnet.checkpoints import CheckpointError, load_strict, load_torch_file
from dctnet.weights import resolve

INPUT_SIZE = 256  # the crop FAN was trained on
POINTS = 68
REFERENCE_SCALE = 195.0  # face-alignment's box-to-crop rule: crop side = 200 * (w + h) / 195
CENTRE_SHIFT = 0.12  # ... centred 12 % of the box height above the box centre (detector boxes sit low)


class ConvBlock(nn.Module):
    """FAN's hierarchical, parallel multi-scale residual block (three 3x3 convs, outputs concatenated)."""

    def __init__(self, inputs: int, outputs: int) -> None:
        super().__init__()
        half, quarter = outputs // 2, outputs // 4
        self.bn1, self.conv1 = nn.BatchNorm2d(inputs), nn.Conv2d(inputs, half, 3, padding=1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(half), nn.Conv2d(half, quarter, 3, padding=1, bias=False)
        self.bn3, self.conv3 = nn.BatchNorm2d(quarter), nn.Conv2d(quarter, quarter, 3, padding=1, bias=False)
        self.downsample = (nn.Sequential(nn.BatchNorm2d(inputs), nn.ReLU(), nn.Conv2d(inputs, outputs, 1, bias=False))
                           if inputs != outputs else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = self.conv1(F.relu(self.bn1(x)))
        out2 = self.conv2(F.relu(self.bn2(out1)))
        out3 = self.conv3(F.relu(self.bn3(out2)))
        residual = x if self.downsample is None else self.downsample(x)
        return torch.cat((out1, out2, out3), 1) + residual


class HourGlass(nn.Module):
    """Recursive hourglass of depth 4 on 256 channels (layer names ``b1_4 .. b3_1``, ``b2_plus_1``)."""

    def __init__(self, depth: int = 4, features: int = 256) -> None:
        super().__init__()
        self.depth = depth
        for level in range(depth, 0, -1):
            for branch in ("b1_", "b2_", "b3_"):
                self.add_module(f"{branch}{level}", ConvBlock(features, features))
        self.add_module("b2_plus_1", ConvBlock(features, features))

    def _level(self, level: int, x: torch.Tensor) -> torch.Tensor:
        upper = self._modules[f"b1_{level}"](x)
        lower = self._modules[f"b2_{level}"](F.max_pool2d(x, 2, stride=2))
        lower = self._level(level - 1, lower) if level > 1 else self._modules["b2_plus_1"](lower)
        lower = self._modules[f"b3_{level}"](lower)
        return upper + F.interpolate(lower, scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._level(self.depth, x)


class FAN(nn.Module):
    """Stacked-hourglass landmark network: (N, 3, 256, 256) in [0, 1] -> (N, 68, 64, 64) heatmaps."""

    def __init__(self, modules: int = 4) -> None:
        super().__init__()
        self.stacks = modules
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, stride=2, padding=3), nn.BatchNorm2d(64)
        self.conv2, self.conv3, self.conv4 = ConvBlock(64, 128), ConvBlock(128, 128), ConvBlock(128, 256)
        for i in range(modules):
            self.add_module(f"m{i}", HourGlass())
            self.add_module(f"top_m_{i}", ConvBlock(256, 256))
            self.add_module(f"conv_last{i}", nn.Conv2d(256, 256, 1))
            self.add_module(f"bn_end{i}", nn.BatchNorm2d(256))
            self.add_module(f"l{i}", nn.Conv2d(256, POINTS, 1))
            if i < modules - 1:
                self.add_module(f"bl{i}", nn.Conv2d(256, 256, 1))
                self.add_module(f"al{i}", nn.Conv2d(POINTS, 256, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.conv4(self.conv3(F.max_pool2d(self.conv2(x), 2)))
        previous, heatmaps = x, x
        for i in range(self.stacks):
            features = self._modules[f"top_m_{i}"](self._modules[f"m{i}"](previous))
            features = F.relu(self._modules[f"bn_end{i}"](self._modules[f"conv_last{i}"](features)))
            heatmaps = self._modules[f"l{i}"](features)
            if i < self.stacks - 1:
                previous = previous + self._modules[f"bl{i}"](features) + self._modules[f"al{i}"](heatmaps)
        return heatmaps  # the last stack's prediction, as face-alignment uses


def read_fan_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A FAN state dict from safetensors or face-alignment's ``.pth.tar`` (read with ``weights_only``)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        try:
            state = load_file(str(path))
        except Exception as error:
            raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from error
    else:
        state = load_torch_file(path)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{path}: no tensors found; expected the 2D-FAN state dict (e.g. 2DFAN4-11f355bf06.pth.tar)")
    return {key.removeprefix("module."): value for key, value in state.items()}


def load_fan(path: str | Path | None = None) -> FAN:
    """The landmark network from ``path`` or the registry entry ``fan-2d-68`` (a clear error when absent)."""
    file = resolve("fan-2d-68", path)
    state = read_fan_state(file)
    stacks = len({int(m.group(1)) for key in state if (m := re.match(r"m(\d+)\.", key))})
    if stacks == 0:
        raise CheckpointError(f"{file}: no hourglass modules (m0., m1., ...): not a 2D-FAN state dict")
    network = FAN(stacks)
    load_strict(network, state, str(file))
    return network.eval()


def face_crop(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The 256 px square crop FAN expects around a detector box ``x0, y0, x1, y1`` (zero outside the image)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = 200.0 * ((x1 - x0) + (y1 - y0)) / REFERENCE_SCALE
    centre_x, centre_y = (x0 + x1) / 2, (y0 + y1) / 2 - CENTRE_SHIFT * (y1 - y0)
    scale = INPUT_SIZE / side
    matrix = np.array([[scale, 0, INPUT_SIZE / 2 - scale * centre_x],
                       [0, scale, INPUT_SIZE / 2 - scale * centre_y]], np.float32)
    return cv2.warpAffine(image, matrix, (INPUT_SIZE, INPUT_SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def heatmap_points(heatmaps: torch.Tensor) -> torch.Tensor:
    """(N, 68, H, W) heatmaps -> (N, 68, 2) x, y in heatmap pixels: the maximum, moved a quarter pixel
    towards the larger neighbour (face-alignment's sub-pixel rule)."""
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, h * w).argmax(-1)
    y, x = torch.div(flat, w, rounding_mode="floor"), flat % w
    points = torch.stack((x, y), -1).float()
    hm = heatmaps.reshape(n * k, h, w)
    xs, ys = x.reshape(-1), y.reshape(-1)
    rows = torch.arange(n * k)
    inner_x, inner_y = (xs > 0) & (xs < w - 1), (ys > 0) & (ys < h - 1)
    dx = torch.where(inner_x, hm[rows, ys, (xs + 1).clamp(max=w - 1)] - hm[rows, ys, (xs - 1).clamp(min=0)], 0.0)
    dy = torch.where(inner_y, hm[rows, (ys + 1).clamp(max=h - 1), xs] - hm[rows, (ys - 1).clamp(min=0), xs], 0.0)
    return points + 0.25 * torch.stack((dx.sign(), dy.sign()), -1).reshape(n, k, 2)


def eye_aspect_ratio(points: np.ndarray, first: int) -> float:
    """Soukupova & Cech's eye aspect ratio of the eye at ``points[first:first + 6]`` (about 0.3 open, 0 shut)."""
    p = points[first:first + 6]
    width = np.linalg.norm(p[0] - p[3])
    return float((np.linalg.norm(p[1] - p[5]) + np.linalg.norm(p[2] - p[4])) / max(2 * width, 1e-6))


def mouth_aspect_ratio(points: np.ndarray) -> float:
    """Inner-lip opening over mouth width (points 60-67): 0 closed, about 0.5-1 wide open."""
    p = points[60:68]
    width = np.linalg.norm(p[0] - p[4])
    opening = np.linalg.norm(p[1] - p[7]) + np.linalg.norm(p[2] - p[6]) + np.linalg.norm(p[3] - p[5])
    return float(opening / max(3 * width, 1e-6))
