"""The GPU renderer in torch (build time only): displacement fields -> frames with GridSample.

It is the same arithmetic as ``render.Cv2Renderer`` (which serves on CPU, where OpenCV's remap
is 5-10x faster than onnxruntime's GridSample): evaluate the flows from the basis, upsample them
bilinearly with half-pixel centres by exactly CELL (4) and crop to the frame size, scale cells
to pixels, sample the source with bilinear interpolation and edge replication, blend the two
loop phases, then composite over the photo with the motion alpha.

Inputs:
  photo  [1, 3, H, W] float 0..255  the resized photo (where alpha is 0)
  source [1, 3, H, W] float 0..255  photo with still objects filled by their surroundings
  alpha  [1, 1, H, W] float 0..1    where the warped source shows
  basis  [K, 2, h, w]               field-grid backward offsets in cells
  coef_a, coef_b [T, K]             flow_p[t] = sum_k coef_p[t, k] * basis[k]
  mix    [T]                        weight of phase B
Output:
  frames [T, 3, H, W] uint8
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torch.onnx.operators import shape_as_tensor

from alive_service.motion.version import CELL


class RenderNet(nn.Module):
    def forward(
        self,
        photo: torch.Tensor,
        source: torch.Tensor,
        alpha: torch.Tensor,
        basis: torch.Tensor,
        coef_a: torch.Tensor,
        coef_b: torch.Tensor,
        mix: torch.Tensor,
    ) -> torch.Tensor:
        h_out, w_out = photo.shape[2], photo.shape[3]
        t = coef_a.shape[0]
        k, h_f, w_f = basis.shape[0], basis.shape[2], basis.shape[3]
        flat = basis.reshape(k, -1)
        flow_a = torch.matmul(coef_a, flat).reshape(t, 2, h_f, w_f)
        flow_b = torch.matmul(coef_b, flat).reshape(t, 2, h_f, w_f)
        # A cell is CELL pixels; pixels -> normalised grid units (align_corners=False: 2 / size
        # per pixel). Sizes are read as tensors so the graph stays dynamic in H and W.
        size = shape_as_tensor(photo)[2:4].to(torch.float32)  # (H, W)
        scale = (CELL * 2.0 / size.flip(0)).reshape(1, 2, 1, 1)
        xs = (torch.arange(w_out, dtype=torch.float32) + 0.5) * (2.0 / size[1]) - 1.0
        ys = (torch.arange(h_out, dtype=torch.float32) + 0.5) * (2.0 / size[0]) - 1.0
        base = torch.stack(
            [xs.reshape(1, w_out).expand(h_out, w_out), ys.reshape(h_out, 1).expand(h_out, w_out)],
            dim=-1,
        ).unsqueeze(0)  # [1, H, W, 2]
        src = source.expand(t, 3, h_out, w_out)

        def warp(flow: torch.Tensor) -> torch.Tensor:
            up = F.interpolate(flow, scale_factor=CELL, mode="bilinear", align_corners=False)
            up = up[:, :, :h_out, :w_out]
            grid = base + (up * scale).permute(0, 2, 3, 1)
            return F.grid_sample(
                src, grid, mode="bilinear", padding_mode="border", align_corners=False
            )

        m = mix.reshape(t, 1, 1, 1)
        moving = warp(flow_a) * (1.0 - m) + warp(flow_b) * m
        out = alpha * moving + (1.0 - alpha) * photo
        return torch.clamp(torch.round(out), 0.0, 255.0).to(torch.uint8)
