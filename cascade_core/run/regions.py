"""Parallel cascades: several members denoise one shared canvas, their estimates merged per pixel
at every evaluation (MultiDiffusion, Bar-Tal et al. 2023; composable diffusion, Liu et al. 2022).

A ``Region`` is a member: a stage, its conditioning (classes, a prompt), where it works (a box in
pixels, or a soft mask over the whole canvas) and a weight. At every evaluation each member
denoises the crop of the shared ``x_t`` under its region, and the clean-image estimates are
averaged per pixel with weight x mask, normalised where members overlap. One ``x_t``, one noise
stream, one sampler, whatever the sampler: the merged denoiser is just another ``x0 = D(x,
sigma)``.

**The combination rule** is the weighted average of x0 estimates, for regions and for
whole-canvas composition alike: it needs nothing but each member's own prediction, so stages
with different schedules, parameterisations or no null class merge (the VE noise level is the
common currency, each member turning it into its own network input); the guidance-style sum of
differences from an unconditional estimate (composable diffusion's) needs a null class or an
empty prompt in every member and is left to a member's own guidance scale.

Every diffusion run is a merged run (``run.strategies``): a plain one is its stage over the whole
canvas, bit for bit. Tiles are pieces of one member's evaluation; members and tiles are blended
by the same code (``run.blend``), tiles the raw network output, members the estimates.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from ..base.errors import CascadeError, check_finite
from .blend import Piece, blend
from .conditioning import TextCond
from .denoiser import Denoiser, NetInputs, Prediction, score_corrected
from .tiling import plan_tiles, ramp


@dataclass(frozen=True)
class Region:
    """One member of a merged run: ``stage``; ``labels`` (B,) or None and ``text``; ``box``
    (top, left, height, width) in canvas pixels, or ``mask`` (H, W) in [0, 1] over the whole
    canvas (neither: the whole canvas); ``weight`` >= 0. A box's edges inside the canvas ramp up
    over ``feather`` pixels (None: a quarter of its side, as tiles overlap; 0: a hard edge), so
    overlapping members hand over gradually instead of switching at a line."""

    stage: object
    labels: torch.Tensor | None = None
    box: tuple | None = None
    mask: torch.Tensor | None = None
    weight: float = 1.0
    text: TextCond | None = None
    feather: int | None = None

    def __post_init__(self):
        w = float(self.weight)
        if not math.isfinite(w) or w < 0:
            raise CascadeError("a region's weight must be finite and not negative", ">= 0", w,
                               stage=getattr(self.stage, "name", None))
        if self.box is not None and self.mask is not None:
            raise CascadeError("a region is a box or a mask, not both", "one of them",
                               "both", stage=self.stage.name)


def region_mask(region: Region, canvas: tuple) -> tuple:
    """(mask (H, W) float, (top, left, height, width) of its bounding box) on ``canvas``."""
    H, W = canvas
    name = region.stage.name
    if region.mask is not None:
        mask = torch.as_tensor(region.mask, dtype=torch.float32)
        if tuple(mask.shape) != (H, W):
            raise CascadeError("a region's mask must cover the canvas", f"({H}, {W})",
                               tuple(mask.shape), stage=name)
        check_finite("a region's mask", mask)
        if bool((mask < 0).any()) or bool((mask > 1).any()):
            raise CascadeError("a region's mask must lie in [0, 1]", "values in [0, 1]",
                               f"[{float(mask.min()):.3g}, {float(mask.max()):.3g}]", stage=name)
        rows, cols = mask.sum(1).nonzero(), mask.sum(0).nonzero()
        if len(rows) == 0:
            return mask, None
        top, left = int(rows[0]), int(cols[0])
        return mask, (top, left, int(rows[-1]) - top + 1, int(cols[-1]) - left + 1)
    top, left, h, w = region.box if region.box is not None else (0, 0, H, W)
    if top < 0 or left < 0 or h < 1 or w < 1 or top + h > H or left + w > W:
        raise CascadeError("a region must lie inside the canvas", f"a box inside {H}x{W} "
                           "(top, left, height, width)", (top, left, h, w), stage=name)
    mask = torch.zeros(H, W)
    fh, fw = (h // 4, w // 4) if region.feather is None else (region.feather,) * 2
    mask[top:top + h, left:left + w] = (
        ramp(h, min(fh, h // 2), start=top > 0, end=top + h < H)[:, None]
        * ramp(w, min(fw, w // 2), start=left > 0, end=left + w < W)[None, :])
    return mask, (top, left, h, w)


class MergedDenoiser:
    """Several members seen as one ``x0 = D(x, sigma)`` over the canvas; ``lead`` (the stage whose
    noise grid the run walks) gives the run its device, precision and name.

    ``members``: (Region, NetInputs over the whole canvas) pairs; each member's inputs are cut to
    its box (a conditioning image at 1/f of the canvas by box / f). Members of one stage with
    boxes of one size run as one batch where the memory estimate lets the batch run untiled;
    a tiled member runs alone, its tiles blended inside its own evaluation (``run.tiling``).
    ``plan.interrupt`` runs between evaluations, so a long step can be stopped inside.
    """

    def __init__(self, lead, members: list, plan, *, canvas: tuple, batch: int):
        if not members:
            raise CascadeError("a merged run needs at least one region", ">= 1 region", 0,
                               stage=lead.name)
        self.stage, self.canvas, self.between = lead, tuple(canvas), plan.interrupt
        self.classifier = plan.classifier if plan.classifier_scale else None
        channels = {r.stage.config.channels for r, _ in members} | {lead.config.channels}
        if len(channels) != 1:
            raise CascadeError("the members' outputs cannot share a canvas",
                               "stages with the same number of channels", sorted(channels),
                               stage=lead.name)
        placed, total = [], torch.zeros(self.canvas)
        for region, inputs in members:
            mask, box = region_mask(region, self.canvas)
            if box is None or region.weight == 0:
                continue
            m = region.stage.config.size_multiple
            if box[2] % m or box[3] % m:
                raise CascadeError(f"a region's size must be a multiple of the stage's total "
                                   f"downsampling ({m} px)", f"multiples of {m}", box[2:],
                                   stage=region.stage.name)
            top, left, h, w = box
            weight = (mask * region.weight)[top:top + h, left:left + w]
            placed.append((region.stage, crop_inputs(inputs, box, canvas=self.canvas,
                                                     stage=region.stage.name), Piece(box, weight)))
            total += mask * region.weight
        uncovered = (total <= 0).nonzero()
        if len(uncovered):
            (y0, x0), (y1, x1) = uncovered.min(0).values.tolist(), uncovered.max(0).values.tolist()
            raise CascadeError("every pixel of the canvas needs a region with weight > 0",
                               "a covered canvas", f"{len(uncovered)} uncovered pixel(s) in rows "
                               f"{y0}-{y1}, columns {x0}-{x1}", stage=lead.name)
        self.units = batched_units(placed, plan, batch=batch)
        self.pieces = [piece for _, pieces in self.units for piece in pieces]

    def __call__(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """The merged clean-image estimate (score-corrected under classifier guidance)."""
        return score_corrected(self.predict(x, sigma), sigma, x)

    def predict(self, x: torch.Tensor, sigma) -> Prediction:
        """Each member's estimate on its crop, merged by weight x mask, normalised; the learned
        variance fraction and the classifier's gradient likewise (a fraction only where every
        member learns one)."""
        values = []
        for i, (denoiser, pieces) in enumerate(self.units):
            if i and self.between is not None:
                self.between()
            crops = torch.cat([x[p.window()] for p in pieces]) if len(pieces) > 1 \
                else x[pieces[0].window()]
            sig = sigma  # a float stays a float: the denoiser reads it in float64
            if isinstance(sigma, torch.Tensor) and sigma.numel() > 1:
                sig = sigma.flatten().repeat(len(pieces))
            pred = denoiser.predict(crops, sig)
            values += zip(*(part.chunk(len(pieces)) if part is not None else
                            [None] * len(pieces) for part in (pred.x0, pred.var_frac,
                                                             pred.log_p_grad)))
        learned = all(v[1] is not None for v in values)
        guided = values[0][2] is not None
        by_piece = {id(p): torch.cat([v[0].float()] + ([v[1].float()] if learned else [])
                                     + ([v[2].float()] if guided else []), dim=1)
                    for p, v in zip(self.pieces, values)}
        merged = blend(self.pieces, lambda p: by_piece[id(p)], size=self.canvas)
        C = self.stage.config.channels
        return Prediction(merged[:, :C], merged[:, C:2 * C] if learned else None,
                          merged[:, -C:] if guided else None)


def batched_units(placed: list, plan, *, batch: int) -> list:
    """(Denoiser, pieces) units: members of one stage on boxes of one size share a Denoiser fed
    their inputs as one batch when ``plan_tiles`` says the whole batch runs untiled; the rest
    (tiled members, lone members) get one each."""
    groups = {}
    for stage, inputs, piece in placed:
        key = (id(stage), piece.box[2:], tuple(v is None for v in (
            inputs.labels, inputs.cond, inputs.aug_level, inputs.text)))
        groups.setdefault(key, []).append((stage, inputs, piece))
    units = []
    for group in groups.values():
        stage, (h, w) = group[0][0], group[0][2].box[2:]
        shape = (batch * len(group), stage.config.channels, h, w)
        if len(group) > 1 and plan_tiles(stage, shape, plan.tiling) is None:
            inputs = concat_inputs([g[1] for g in group]).to(stage.device)
            units.append((Denoiser(stage, plan, inputs), [g[2] for g in group]))
            continue
        for stage, inputs, piece in group:
            tiles = plan_tiles(stage, (batch, stage.config.channels, h, w), plan.tiling)
            units.append((Denoiser(stage, plan, inputs.to(stage.device), tiles=tiles), [piece]))
    return units


def concat_inputs(parts: list) -> NetInputs:
    """Several members' inputs as one batch, in order."""
    def cat(values):
        return None if values[0] is None else torch.cat(values)
    text = None
    if parts[0].text is not None:
        texts = [p.text for p in parts]
        negative = None if any(t.negative is None for t in texts) else cat(
            [t.negative for t in texts])
        text = TextCond(cat([t.tokens for t in texts]), negative, texts[0].encoder)
    return NetInputs(cat([p.labels for p in parts]), cat([p.cond for p in parts]),
                     cat([p.aug_level for p in parts]), text=text)


def crop_inputs(inputs: NetInputs, box: tuple, *, canvas: tuple, stage: str) -> NetInputs:
    """A member's share of the run's inputs: the conditioning image (the canvas, or the low-res
    canvas at 1/f) cut to its box; classes, level and prompt as they are."""
    if inputs.cond is None:
        return inputs
    H, W = canvas
    hc, wc = inputs.cond.shape[-2:]
    f = H // hc
    if f < 1 or hc * f != H or wc * f != W:
        raise CascadeError("the conditioning image does not match the canvas",
                           f"{H}x{W} or a whole fraction of it", f"{hc}x{wc}", stage=stage)
    top, left, h, w = box
    if top % f or left % f or h % f or w % f:
        raise CascadeError(f"an SR region must lie on the low-res grid (multiples of {f} px)",
                           f"a box in multiples of {f}", box, stage=stage)
    cond = inputs.cond[..., top // f:(top + h) // f, left // f:(left + w) // f]
    return replace(inputs, cond=cond)


def member_inputs(stage, regions, *, batch: int, inputs_for) -> list:
    """(Region, NetInputs over the canvas) for every member: ``inputs_for(member stage)`` gives
    the stage-dependent part (conditioning image, level; computed once per stage), the region its
    classes and prompt."""
    shared, out = {}, []
    for r in regions:
        if not isinstance(r, Region):
            raise CascadeError("regions must be Regions", "cc.Region(stage, labels, box=...)",
                               type(r).__name__, stage=stage.name)
        if r.labels is not None and tuple(torch.as_tensor(r.labels).shape) != (batch,):
            raise CascadeError("a region needs one class per image", f"({batch},) labels",
                               tuple(torch.as_tensor(r.labels).shape), stage=r.stage.name)
        if id(r.stage) not in shared:
            shared[id(r.stage)] = inputs_for(r.stage)
        text = None if r.text is None else r.text.repeat_to(batch)
        out.append((r, replace(shared[id(r.stage)], labels=r.labels, text=text)))
    return out


def follow_regions(regions, stage, *, factor: int) -> tuple:
    """The regions of a canvas, scaled by ``factor`` and drawn by ``stage``: an SR stage whose
    classes come "from input" follows the base stage's regions, each part of the low-res image
    upsampled with the class that made it."""
    out = []
    for r in regions:
        box = None if r.box is None else tuple(v * factor for v in r.box)
        mask = None if r.mask is None else torch.as_tensor(r.mask).repeat_interleave(
            factor, 0).repeat_interleave(factor, 1)
        labels = r.labels if stage.config.num_classes else None
        text = r.text if stage.config.text.width else None
        feather = None if r.feather is None else r.feather * factor
        out.append(Region(stage, labels, box=box, mask=mask, weight=r.weight, text=text,
                          feather=feather))
    return tuple(out)
