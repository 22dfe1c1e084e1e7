"""What a stage changed (the design guide's step 6): consistency, detail added, colour shift.

Given a stage's low-res input and its output, per image:

* **consistency**: PSNR between the output, downsampled to the input's size
  with the cascade's own downsampler (``process.resize.downsample``), and the
  input. An SR stage should add detail without contradicting its input; a low
  figure means it changed what the previous stage decided.
* **detail added**: per band of a Laplacian pyramid (finest first), the
  output's energy minus that of the input upsampled to the same size: positive
  where the stage added detail, negative where it smoothed.
* **colour shift**: the mean of each channel, output minus input.

Chained over a cascade (base -> SR -> SR -> refiner), it shows where an error
entered: the stage whose consistency drops, or whose colour drifts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import kornia
import torch
import torch.nn.functional as F

from ..base.errors import CascadeError
from ..process.resize import downsample

PEAK = 2.0  # images live in [-1, 1]
MAX_PICTURE_SIDE = 2048  # the inspection picture is scaled down to fit this


@dataclass(frozen=True)
class StageReport:
    """The figures of one image (see the module docstring)."""

    psnr: float
    detail: tuple   # output minus upsampled-input energy per Laplacian band, finest first
    colour_shift: tuple  # per channel, output mean minus input mean

    def text(self) -> str:
        """One line for people."""
        bands = ", ".join(f"{d:+.4f}" for d in self.detail)
        shift = ", ".join(f"{c:+.3f}" for c in self.colour_shift)
        return f"consistency {self.psnr:.1f} dB | detail added per band [{bands}] | colour " \
               f"shift (R, G, B) [{shift}]"


def factor_between(low: torch.Tensor, high: torch.Tensor) -> int:
    """The integer upsampling factor from ``low`` to ``high`` (1 for a refiner)."""
    (h, w), (H, W) = low.shape[-2:], high.shape[-2:]
    if H % h or W % w or H // h != W // w or low.shape[:2] != high.shape[:2]:
        raise CascadeError("the input and output sizes are not related by an integer factor",
                           "output = k x input (same batch and channels)",
                           f"{tuple(low.shape)} -> {tuple(high.shape)}")
    return H // h


def upsample(low: torch.Tensor, size) -> torch.Tensor:
    """The input brought to the output's size (bicubic), to compare like with like."""
    return F.interpolate(low.float(), size=tuple(size), mode="bicubic",
                         align_corners=False).clamp(-1, 1)


def band_energies(x: torch.Tensor, levels: int) -> torch.Tensor:
    """(B, levels) mean squared value of each Laplacian band, finest first."""
    bands = kornia.geometry.transform.build_laplacian_pyramid(x.float(), levels,
                                                             border_type="reflect")
    return torch.stack([(b ** 2).mean(dim=(1, 2, 3)) for b in bands[:levels]], dim=1)


def stage_report(low: torch.Tensor, high: torch.Tensor, levels: int = 3) -> list[StageReport]:
    """The report of every image of a batch (NCHW in [-1, 1])."""
    factor_between(low, high)
    levels = max(1, min(levels, int(math.log2(min(high.shape[-2:])))))
    back = downsample(high.float(), low.shape[-2:])
    mse = ((back - low.float()) ** 2).mean(dim=(1, 2, 3)).clamp(min=1e-12)
    psnr = 10 * torch.log10(PEAK ** 2 / mse)
    up = upsample(low, high.shape[-2:])
    detail = band_energies(high, levels) - band_energies(up, levels)
    shift = high.float().mean(dim=(2, 3)) - low.float().mean(dim=(2, 3))
    return [StageReport(float(psnr[i]), tuple(detail[i].tolist()), tuple(shift[i].tolist()))
            for i in range(len(low))]


def heat(d: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) values in [0, 1] as a black-red-yellow-white colour map in [-1, 1]."""
    t = d.clamp(0, 1)
    rgb = torch.cat([(3 * t).clamp(0, 1), (3 * t - 1).clamp(0, 1), (3 * t - 2).clamp(0, 1)], 1)
    return rgb * 2 - 1


def inspection_picture(low: torch.Tensor, high: torch.Tensor, full_scale: float = 0.5):
    """Side by side: the upsampled input, the output, and |output - upsampled input| as a heat
    map (white at ``full_scale``, in [-1, 1] units). NCHW in [-1, 1]."""
    factor_between(low, high)
    up = upsample(low, high.shape[-2:])
    diff = (high.float() - up).abs().mean(dim=1, keepdim=True) / full_scale
    gap = torch.ones(*high.shape[:3], max(1, high.shape[-1] // 32))
    picture = torch.cat([up, gap, high.float().clamp(-1, 1), gap, heat(diff)], dim=-1)
    side = max(picture.shape[-2:])
    if side > MAX_PICTURE_SIDE:  # bounded: a chain of inspectors would triple it each time
        scale = MAX_PICTURE_SIDE / side
        size = [min(MAX_PICTURE_SIDE, max(1, round(v * scale))) for v in picture.shape[-2:]]
        picture = F.interpolate(picture, size=size, mode="area")
    return picture
