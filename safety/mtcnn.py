"""MTCNN's three nets as torch modules, for loading facenet-pytorch's weights and ONNX export.

Build time only: importing this module imports torch. The layer names match the state dicts
shipped in the facenet-pytorch wheel (``facenet_pytorch/data/{pnet,rnet,onet}.pt``, MIT), whose
architecture these definitions copy. We never import facenet_pytorch itself because it imports
torchvision, which has no build here.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

NET_NAMES = ("pnet", "rnet", "onet")


class PNet(nn.Module):
    """Proposal net: fully convolutional, 12x12 window, stride 2. Outputs (reg, prob)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.softmax4_1 = nn.Softmax(dim=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.prelu1(self.conv1(x))
        x = self.pool1(x)
        x = self.prelu2(self.conv2(x))
        x = self.prelu3(self.conv3(x))
        return self.conv4_2(x), self.softmax4_1(self.conv4_1(x))


class RNet(nn.Module):
    """Refine net on 24x24 crops. Outputs (reg, prob)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.softmax5_1 = nn.Softmax(dim=1)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        # The weights were trained (in Caffe/TF) on a W,H-transposed flattening: keep it.
        x = x.permute(0, 3, 2, 1).contiguous()
        x = self.prelu4(self.dense4(x.view(x.shape[0], -1)))
        return self.dense5_2(x), self.softmax5_1(self.dense5_1(x))


class ONet(nn.Module):
    """Output net on 48x48 crops. Outputs (reg, landmarks, prob)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.softmax6_1 = nn.Softmax(dim=1)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = x.permute(0, 3, 2, 1).contiguous()
        x = self.prelu5(self.dense5(x.view(x.shape[0], -1)))
        return self.dense6_2(x), self.dense6_3(x), self.softmax6_1(self.dense6_1(x))


def load_nets(src: Path) -> dict[str, nn.Module]:
    """The three nets with facenet-pytorch's weights (``src``: the wheel's data directory,
    safety.faces.weights_dir()), in eval mode."""
    nets: dict[str, nn.Module] = {"pnet": PNet(), "rnet": RNet(), "onet": ONet()}
    for name, net in nets.items():
        state = torch.load(src / f"{name}.pt", map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        net.eval()
    return nets


# Input and output names of the exported graphs; safety.faces reads them by these names.
_IO: dict[str, tuple[list[str], list[str], tuple[int, int]]] = {
    "pnet": (["input"], ["reg", "prob"], (12, 12)),
    "rnet": (["input"], ["reg", "prob"], (24, 24)),
    "onet": (["input"], ["reg", "landmarks", "prob"], (48, 48)),
}


def export_onnx(out_dir: Path, weights: Path) -> list[Path]:
    """Export ``out_dir/{pnet,rnet,onet}.onnx`` from the .pt files in ``weights``: dynamic
    batch, and for P-net also H and W."""
    out_dir.mkdir(parents=True, exist_ok=True)
    nets = load_nets(weights)
    written: list[Path] = []
    for name, net in nets.items():
        inputs, outputs, (h, w) = _IO[name]
        axes: dict[str, dict[int, str]] = {"input": {0: "batch"}}
        if name == "pnet":
            axes["input"].update({2: "height", 3: "width"})
        for out in outputs:
            axes[out] = {0: "batch"}
        # A non-square, non-minimal example keeps the tracer from baking in any size.
        example = torch.zeros(2, 3, h + 20, w + 30) if name == "pnet" else torch.zeros(2, 3, h, w)
        target = out_dir / f"{name}.onnx"
        tmp = target.with_suffix(".onnx.tmp")
        with torch.no_grad(), warnings.catch_warnings():
            # The legacy (TorchScript) exporter, deprecated since torch 2.9 but kept on purpose:
            # ~3 s for all three nets where dynamo=True took ~30 s on this (busy) machine.
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                net,
                (example,),
                str(tmp),
                input_names=inputs,
                output_names=outputs,
                dynamic_axes=axes,
                opset_version=17,
                dynamo=False,
            )
        tmp.replace(target)  # atomic: a half-written file never looks like a model
        written.append(target)
    return written
