"""MTCNN (Zhang, Zhang, Li, Qiao 2016): the face detector that keeps faces drawn in the cartoon (vidtoon/faces.py).

Three small cascaded networks: PNet proposes face windows over an image pyramid (a fully convolutional 12 x 12
window with stride 2), RNet rejects most of them on 24 x 24 crops, ONet scores the rest on 48 x 48 crops; each
stage also regresses the box. The weights in ``vidtoon/weights/mtcnn.pt`` are those facenet-pytorch 2.6.0 ships
in its wheel (MIT, Tim Esler; ported from David Sandberg's facenet, MIT, which converted the authors' Caffe
models). The layer names and the flatten order follow that port so its state dicts load unchanged.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn


class PNet(nn.Module):
    """Proposal network: per 12 x 12 window (stride 2), box offsets (N x 4 x h x w) and face probability."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1, self.conv4_2 = nn.Conv2d(32, 2, 1), nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)[:, 1]


class RNet(nn.Module):
    """Refinement network on 24 x 24 crops: box offsets (N x 4) and face probability (N)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1, self.dense5_2 = nn.Linear(128, 2), nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x)).permute(0, 3, 2, 1).flatten(1)  # the Caffe models' flatten order
        x = self.prelu4(self.dense4(x))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)[:, 1]


class ONet(nn.Module):
    """Output network on 48 x 48 crops: box offsets (N x 4) and face probability (N); landmarks are unused."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1, self.dense6_2 = nn.Linear(256, 2), nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)  # five landmarks: kept so that the published state dict loads

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x)).permute(0, 3, 2, 1).flatten(1)
        x = self.prelu5(self.dense5(x))
        return self.dense6_2(x), torch.softmax(self.dense6_1(x), dim=1)[:, 1]


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """NCHW float resized with area averaging (adaptive pooling), as the published port does."""
    return torch.nn.functional.interpolate(x, size=size, mode="area")


def _normalize(x: torch.Tensor) -> torch.Tensor:
    """Pixel values 0..255 -> MTCNN's input range, (x - 127.5) / 128, channels last (see MTCNN.load)."""
    return ((x - 127.5) * 0.0078125).contiguous(memory_format=torch.channels_last)


def _square(boxes: np.ndarray) -> np.ndarray:
    """Boxes grown to squares about their centres (the next stage's crops are square)."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out = boxes.copy()
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2:4] = out[:, 0:2] + side[:, None]
    return out


def _regress(rows: np.ndarray, plus_one: bool = True) -> np.ndarray:
    """Rows (x1, y1, x2, y2, score, 4 offsets) -> boxes (x1, y1, x2, y2, score) moved by their offsets
    (fractions of the box's size; PNet's boxes are measured without the Caffe code's +1)."""
    one = 1.0 if plus_one else 0.0
    size = np.stack([rows[:, 2] - rows[:, 0] + one, rows[:, 3] - rows[:, 1] + one] * 2, axis=1)
    out = rows[:, :5].copy()
    out[:, :4] += rows[:, 5:9] * size
    return out


def _nms(boxes: np.ndarray, threshold: float, by_min: bool = False) -> np.ndarray:
    """Rows of ``boxes`` (x1, y1, x2, y2, score, ...) that survive non-maximum suppression, best first.

    Overlap is intersection over union, or with ``by_min`` over the smaller box (ONet's final step: drops a
    box inside a larger one). NumPy, not torchvision's: importing torchvision costs 1.5 s of start-up."""
    order, keep = np.argsort(-boxes[:, 4], kind="stable"), []
    one = 1.0 if by_min else 0.0  # the Caffe code's +1 pixel in its "Min" overlap, as the port keeps it
    area = (boxes[:, 2] - boxes[:, 0] + one) * (boxes[:, 3] - boxes[:, 1] + one)
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(0, np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]) + one)
        h = np.maximum(0, np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]) + one)
        inter = w * h
        overlap = inter / np.minimum(area[i], area[rest]) if by_min else inter / (area[i] + area[rest] - inter)
        order = rest[overlap <= threshold]
    return boxes[keep]


def _crops(boxes: np.ndarray, image: torch.Tensor, size: int) -> torch.Tensor:
    """Each box's pixels of a 1 x 3 x H x W image (clipped to it), resized to size x size: N x 3 x size x size."""
    h, w = image.shape[2:]
    out = []
    for b in boxes[:, :4].astype(np.int64):  # truncation toward zero, as the port's int() of its boxes
        x1, y1 = max(int(b[0]), 1) - 1, max(int(b[1]), 1) - 1
        x2, y2 = min(int(b[2]), w), min(int(b[3]), h)
        out.append(_resize(image[:, :, y1:max(y2, y1 + 1), x1:max(x2, x1 + 1)], (size, size)))
    return torch.cat(out)


class MTCNN(nn.Module):
    """The three networks and the cascade that runs them: :meth:`detect` gives face boxes of an RGB image."""

    def __init__(self) -> None:
        super().__init__()
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()
        self.eval()

    @classmethod
    def load(cls, path: str | Path) -> MTCNN:
        """The detector with the weights in ``path`` (a dict of the three state dicts: pnet, rnet, onet)."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        net = cls()
        for name in ("pnet", "rnet", "onet"):
            getattr(net, name).load_state_dict(state[name])
        # channels last: with so few channels oneDNN's pooling is 3-8x faster so, PNet 1.6x (2 cores)
        return net.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def detect(self, rgb: np.ndarray, min_face: float = 16.0,
               thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7), factor: float = 0.709) -> np.ndarray:
        """Faces in an H x W x 3 uint8 RGB image: float array N x 5 (x1, y1, x2, y2, probability), best first.

        ``min_face``: the smallest face width searched for, in pixels (the pyramid starts at 12 / min_face:
        a larger value is much faster on big frames). ``thresholds``: each stage's probability cut-off."""
        h, w = rgb.shape[:2]
        rows = [np.empty((0, 9))]
        scale, level = 12.0 / min_face, rgb
        while min(h, w) * scale >= 12:
            # each level is resized from the one before (area averaging): most pixels are read once, where
            # resizing the full frame for every level costs ~40 ms a 720p frame
            level = cv2.resize(level, (int(w * scale + 1), int(h * scale + 1)), interpolation=cv2.INTER_AREA)
            rows.append(self._propose(level, scale, thresholds[0]))
            scale *= factor
        boxes = _square(_regress(_nms(np.concatenate(rows), 0.7), plus_one=False))
        if len(boxes) == 0:  # most frames: no window passed PNet, no crop is needed
            return np.empty((0, 5))
        image = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float()
        for net, size, t in ((self.rnet, 24, thresholds[1]), (self.onet, 48, thresholds[2])):
            if len(boxes) == 0:
                return np.empty((0, 5))
            reg, prob = net(_normalize(_crops(boxes, image, size)))
            keep = (prob > t).numpy()
            rows = np.concatenate([boxes[keep, :4], prob.numpy()[keep, None], reg.numpy()[keep]], axis=1)
            if net is self.rnet:
                boxes = _square(_regress(_nms(rows, 0.7)))
        return _nms(_regress(rows), 0.7, by_min=True)

    def _propose(self, small: np.ndarray, scale: float, threshold: float) -> np.ndarray:
        """PNet's windows on one pyramid level (the image resized by ``scale``): rows (x1, y1, x2, y2, score,
        4 offsets) in image pixels."""
        reg, prob = self.pnet(_normalize(torch.from_numpy(small).permute(2, 0, 1)[None].float()))
        ys, xs = np.nonzero(prob[0].numpy() >= threshold)
        if len(ys) == 0:
            return np.empty((0, 9))
        pos = np.stack([xs, ys], axis=1).astype(np.float64)
        rows = np.concatenate([np.floor((2 * pos + 1) / scale), np.floor((2 * pos + 12) / scale),
                               prob[0].numpy()[ys, xs, None], reg[0].numpy()[:, ys, xs].T], axis=1)
        return _nms(rows, 0.5)
