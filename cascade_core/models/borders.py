"""The border map: one input channel telling a stage where its image really ends.

A convolutional network meets zero padding at every edge of what it is given. A
stage trained on whole images learns what an image border looks like there, and
draws that border at every tile edge when its evaluation is tiled: seams. A
stage whose config has ``border_map`` takes one more input channel, 1 on the
outermost row or column of each side that is a real border of the image and 0
elsewhere: a whole image carries the frame on all four sides, a tile or a
training crop only on the sides it shares with the image. Trained on crops and
whole images with their maps (``--border-map``), the network can tell a tile's
edge, where the content goes on, from the image's border, and keeps what it
draws at the border for whole images.

A stage gains the channel from a stage without it by ``add_border_map``: the
stem's new input weights start at zero, so the widened stage computes exactly
what it did until it is fine-tuned.
"""
from __future__ import annotations

from dataclasses import replace

import torch

from ..base.errors import CascadeError


def whole_frame(batch: int, size: tuple, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """The border map of whole images: (batch, 1, H, W), ones on the outermost rows and
    columns."""
    H, W = size
    frame = torch.zeros(batch, 1, H, W, device=device, dtype=dtype)
    frame[..., 0, :] = 1
    frame[..., -1, :] = 1
    frame[..., :, 0] = 1
    frame[..., :, -1] = 1
    return frame


def add_border_map(stage):
    """A copy of U-Net ``stage`` that takes the border map, computing exactly what ``stage``
    computes (its stem's weights for the new channel are zero). A stage that has it already is
    returned as it is."""
    cfg = stage.config
    if cfg.border_map:
        return stage
    if cfg.network != "unet":
        raise CascadeError("a border map is an input of the U-Net", "network 'unet'", cfg.network)
    wide = type(stage)(replace(cfg, border_map=True)).to(stage.dtype)
    state = dict(stage.net.state_dict())
    w = state["stem.weight"]
    state["stem.weight"] = torch.cat([w, w.new_zeros(w.shape[0], 1, *w.shape[2:])], dim=1)
    wide.net.load_state_dict(state)
    return wide.to(next(stage.parameters()).device)
