"""The motion model in torch: region maps + face landmarks + parameters -> displacement fields.

Build time only (``export.build`` traces it to ONNX; the server runs the ONNX file). It has no
trained weights: every motion is a closed-form function of time that is at rest at t = 0 and
periodic (or crossfaded) so the clip loops.

The motion is emitted in low-rank space-time form, which is exact here because every motion is
a sum of (spatial field) x (function of time):
    flow_p[t] = sum_k coef_p[t, k] * basis[k]          (p = a, b: the two loop phases)
Computing K spatial maps plus a [T, K] table is ~50x cheaper than T full fields, and the
renderers evaluate the sum per frame on the cropped window they draw.

Inputs (field grid: ``h x w`` cells of CELL = 4 output pixels):
  regions [2, h, w]  sky and water support in 0..1 (where each motion may act)
  faces   [F, 12]    per face: 5 landmarks (x, y) in cells, eye distance in cells, valid flag
  params  [P]        strengths and seeded constants, see layout.PARAM_NAMES
  times   [T]        t / duration in [0, 1)
Outputs (backward sampling offsets in cells: frame(x) = source(x + flow(x))):
  basis   [K, 2, h, w]
  coef_a  [T, K]   phase A: the sky has drifted by e(t) of its full drift (e: t eased in and
                   out at the loop point)
  coef_b  [T, K]   phase B: the sky has drifted by e(t) - 1 (at rest again when t reaches 1)
  mix     [T]      weight of phase B: 0, then a smoothstep to 1 over the loop's last
                   `crossfade`. Frame 0 is phase A at rest; the last frame flows into phase B
                   at rest, which is frame 0 again (the two-phase Eulerian loop).
Water, faces and camera have the same coefficients in both phases.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from alive_service.motion.layout import PARAM_INDEX

# A few waves with fixed relative directions, frequencies and speeds; the seed rotates and
# shifts the whole set. Frequencies are cycles per unit of ground-plane depth (see _water).
_WAVES = ((0.0, 2.2, 1.0, 1.0), (0.55, 3.1, 2.0, 0.6), (-0.7, 4.3, 3.0, 0.4))
TWO_PI = 2.0 * math.pi
WATER_D_FAR = 0.3  # d (focal lengths below the horizon) of the farthest water drawn


def _p(params: torch.Tensor, name: str) -> torch.Tensor:
    return params[PARAM_INDEX[name]]


class MotionFieldNet(nn.Module):
    def forward(
        self, regions: torch.Tensor, faces: torch.Tensor, params: torch.Tensor, times: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        h, w = regions.shape[1], regions.shape[2]
        ys = torch.arange(h, dtype=torch.float32).reshape(h, 1).expand(h, w) + 0.5
        xs = torch.arange(w, dtype=torch.float32).reshape(1, w).expand(h, w) + 0.5
        t = times

        # Sky: a constant drift, masked (content moves by +d, so we sample from -d).
        drift = torch.stack([_p(params, "sky_dx"), _p(params, "sky_dy")]).reshape(2, 1, 1)
        sky = (-_p(params, "sky_px") * drift * regions[0].unsqueeze(0)).unsqueeze(0)

        water, water_c = self._water(regions[1], params, xs, ys, h, w, t)
        face, face_c = self._faces(faces, params, xs, ys, t)
        camera, camera_c = self._camera(params, xs, ys, h, w, t)
        basis = torch.cat([sky, water, face, camera], dim=0)
        periodic = torch.cat([water_c, face_c, camera_c], dim=1)
        drift_t = self._eased(t, torch.clamp(_p(params, "ease"), 1e-3, 0.45))
        coef_a = torch.cat([drift_t.unsqueeze(1), periodic], dim=1)
        coef_b = torch.cat([(drift_t - 1.0).unsqueeze(1), periodic], dim=1)
        fade = torch.clamp(_p(params, "crossfade"), min=1e-3)
        ramp = torch.clamp((t - (1.0 - fade)) / fade, 0.0, 1.0)
        mix = ramp * ramp * (3.0 - 2.0 * ramp)
        return basis, coef_a, coef_b, mix

    @staticmethod
    def _eased(t: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Drift progress 0 -> 1 whose speed eases in over the first ``w`` of the loop and out
        over the last: the frames next to the loop point are nearly at rest, so resampling
        (which softens grain) does not pop where the clip wraps to the pristine frame 0."""
        x1 = torch.clamp(t / w, 0.0, 1.0)
        x2 = torch.clamp((t - (1.0 - w)) / w, 0.0, 1.0)
        # Speed: smoothstep up over the first w, 1, smoothstep down over the last w. Its
        # integral: the ramp-up's (x^3 - x^4 / 2) plus the linear part, minus what the
        # ramp-down loses against speed 1 (again the integral of a smoothstep).
        rise = w * (x1**3 - 0.5 * x1**4) + torch.clamp(t - w, min=0.0)
        fall = w * (x2**3 - 0.5 * x2**4)
        return (rise - fall) / (1.0 - w)

    @staticmethod
    def _water(water, params, xs, ys, h, w, t) -> tuple[torch.Tensor, torch.Tensor]:
        # Waves on a ground plane seen in perspective: depth Z ~ 1/d with d the height below
        # the horizon, so ripples shrink toward the horizon and swell near the viewer.
        # Lengths on the image plane are in units of the focal length, taken as the height of
        # a 16:9 frame of the photo's width (or the height, if taller): cropping a photo to a
        # panorama must not shrink its ripples with its height.
        # (From the coordinate grids, not h and w: the graph is traced, and a Python max of
        # the sizes would be frozen to the tracing size.)
        focal = torch.maximum(ys[-1, 0] + 0.5, 0.5625 * (xs[0, -1] + 0.5))
        horizon = _p(params, "water_horizon") * h
        below = torch.clamp((ys - horizon) / focal, min=0.0)
        # The far water is seen no closer to the horizon than WATER_D_FAR: below that the
        # true ripples are finer than the 4-pixel grid (they alias into per-cell noise that
        # neither the eye nor optical flow reads as waves), so the far part of a distant lake
        # used to stand still. The hypot keeps the near water's perspective as it was.
        d = torch.sqrt(below * below + WATER_D_FAR * WATER_D_FAR)
        z = 1.0 / d
        x_plane = (xs - 0.5 * w) / focal * z
        # The height of the water area, in focal lengths.
        reach = torch.clamp(_p(params, "water_reach"), min=0.05) * (ys[-1, 0] + 0.5) / focal
        foot = torch.sqrt(reach * reach + WATER_D_FAR * WATER_D_FAR)  # d at the water's foot
        # Amplitude ~ d (the apparent size of a wave of fixed height): strongest nearest the
        # viewer. Capped at a slope: a ripple may shift the picture by at most water_slope of
        # the main wave's wavelength (at least d^2 / freq focal lengths) over 2 pi, so no wave
        # folds the water over itself (mirrored, torn water: a wobbling picture), and the far
        # ripples, which the floor above keeps wide, still shift by a pixel or more.
        wavelength = d * d * focal / _WAVES[0][1]  # cells
        amp = torch.minimum(
            _p(params, "water_px") * torch.clamp(d / foot, max=1.0),
            _p(params, "water_slope") * wavelength / TWO_PI,
        ) * water
        theta0 = _p(params, "water_theta")
        phase0 = _p(params, "water_phase")
        cycles = _p(params, "water_cycles")
        bases, coefs = [], []
        for rel_theta, freq, speed, weight in _WAVES:
            theta = theta0 + rel_theta
            arg = freq * (torch.cos(theta) * z + torch.sin(theta) * x_plane)
            p = TWO_PI * arg + phase0 * (1.0 + rel_theta)
            # Wave at time t: dx = .35 cos(p - wt), dy = sin(p - wt); minus its value at t = 0
            # so the photo itself is the rest state. Expanded into two fixed fields.
            cos_p, sin_p = torch.cos(p) * amp * weight, torch.sin(p) * amp * weight
            bases.append(torch.stack([0.35 * cos_p, sin_p]))
            bases.append(torch.stack([0.35 * sin_p, -cos_p]))
            omega = TWO_PI * speed * cycles * t
            coefs += [torch.cos(omega) - 1.0, torch.sin(omega)]
        return torch.stack(bases), torch.stack(coefs, dim=1)

    @staticmethod
    def _faces(faces, params, xs, ys, t) -> tuple[torch.Tensor, torch.Tensor]:
        # A smile: mouth corners up and out, cheeks lift, lower lids rise a little; one blink.
        # Every bump is a Gaussian scaled by the eye distance, so it dies out well inside the
        # face and the head itself never moves.
        amount = _p(params, "face_amount")
        f = faces.shape[0]
        pts = faces[:, :10].reshape(f, 5, 2)
        eye_d = faces[:, 10].reshape(f, 1, 1)
        valid = faces[:, 11].reshape(f, 1, 1)
        le, re, mouth_l, mouth_r = pts[:, 0], pts[:, 1], pts[:, 3], pts[:, 4]
        mouth_mid = 0.5 * (mouth_l + mouth_r)
        up = 0.5 * (le + re) - mouth_mid
        up = up / (torch.linalg.vector_norm(up, dim=1, keepdim=True) + 1e-6)  # [F, 2]
        xs_f = xs.unsqueeze(0)
        ys_f = ys.unsqueeze(0)

        def bump(centre: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:  # [F, h, w]
            cx = centre[:, 0].reshape(f, 1, 1)
            cy = centre[:, 1].reshape(f, 1, 1)
            return torch.exp(-((xs_f - cx) ** 2 + (ys_f - cy) ** 2) / (2.0 * sigma**2)) * valid

        smile_x = torch.zeros_like(xs_f * eye_d)
        smile_y = torch.zeros_like(xs_f * eye_d)

        def push(g: torch.Tensor, delta: torch.Tensor) -> None:
            # Content moves by +delta under the bump -> sample from -delta.
            nonlocal smile_x, smile_y
            smile_x = smile_x - g * delta[:, 0].reshape(f, 1, 1)
            smile_y = smile_y - g * delta[:, 1].reshape(f, 1, 1)

        for corner in (mouth_l, mouth_r):
            out = corner - mouth_mid
            out = out / (torch.linalg.vector_norm(out, dim=1, keepdim=True) + 1e-6)
            for shift_out, shift_up, sigma, lift, spread in (
                (0.0, 0.0, 0.20, 0.075, 0.045),  # mouth corner
                (-0.05, 0.40, 0.24, 0.045, 0.010),  # cheek above the corner
                (-0.15, -0.10, 0.22, 0.020, 0.010),  # lip and chin below the corner
            ):
                centre = corner + (shift_out * out + shift_up * up) * eye_d[:, 0]
                push(bump(centre, sigma * eye_d), (lift * up + spread * out) * eye_d[:, 0])
        blink_y = torch.zeros_like(smile_y)
        for eye in (le, re):
            # The lower lid rises a little with the smile.
            push(bump(eye - 0.12 * up * eye_d[:, 0], 0.16 * eye_d), 0.02 * up * eye_d[:, 0])
            # Blink: squeeze the eye toward its centre line (sample further out).
            ge = bump(eye, 0.13 * eye_d)
            blink_y = blink_y + ge * (ys_f - eye[:, 1].reshape(f, 1, 1)) * 0.6
        zeros = torch.zeros_like(smile_x.sum(0))
        smile = torch.stack([smile_x.sum(0), smile_y.sum(0)]) * amount
        blink = torch.stack([zeros, blink_y.sum(0)]) * torch.clamp(amount, max=1.0)
        smile_t = 0.5 * (1.0 - torch.cos(TWO_PI * t))  # rest -> full -> rest
        blink_at = _p(params, "blink_at")
        blink_t = torch.exp(-0.5 * ((t - blink_at) / 0.025) ** 2) * _p(params, "face_blink")
        blink_t = blink_t - torch.exp(-0.5 * (blink_at / 0.025) ** 2) * _p(params, "face_blink")
        return torch.stack([smile, blink]), torch.stack([smile_t, blink_t], dim=1)

    @staticmethod
    def _camera(params, xs, ys, h, w, t) -> tuple[torch.Tensor, torch.Tensor]:
        # A slow breathing zoom about the centre plus a small pan inside the zoom margin;
        # both at rest at t = 0 and t = 1.
        ease = 0.5 * (1.0 - torch.cos(TWO_PI * t))
        zoom = _p(params, "camera_zoom") * ease
        ang = _p(params, "camera_angle")
        pan = _p(params, "camera_px")
        zoom_field = torch.stack([-(xs - 0.5 * w), -(ys - 0.5 * h)])
        ones = torch.ones_like(xs)
        pan_field = torch.stack([ones * torch.cos(ang), ones * torch.sin(ang)]) * pan
        coefs = torch.stack([zoom / (1.0 + zoom), torch.sin(math.pi * t) ** 2], dim=1)
        return torch.stack([zoom_field, pan_field]), coefs
