"""Model wrappers: any stage, any parameterization, seen as ``x0 = D(x, sigma)``.

Samplers work in the variance-exploding view ``x = x0 + sigma * eps`` (the
VP latent is ``z = x / sqrt(1 + sigma^2)``). A new parameterization is a new
case in ``diffusion.predict_x0``, never a change to a sampler. Classifier-free
guidance runs the conditional and the null-class passes as one batch.

Classifier guidance (ADM-G) adds ``scale * grad log p(y | z_t)`` from a noisy
classifier, the two ways the reference does: ``predict`` returns the gradient
for ancestral sampling, which shifts the posterior mean by variance x gradient
(``condition_mean``); calling the denoiser returns the score-corrected estimate
``x0 + (1 - abar) / sqrt(abar) * grad`` that DDIM and the ODE solvers use
(``condition_score``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..base.errors import CascadeError
from ..models.stage import Stage
from ..process.diffusion import dynamic_threshold, predict_x0
from .conditioning import TextCond
from .tiling import TilePlan, tiled_call


@dataclass(frozen=True)
class NetInputs:
    """The tensors a run feeds the network beside ``z_t``: classes (-1 = none), the low-res (or
    refiner's own) conditioning image and its augmentation level on the stage's schedule, and a
    text stage's prompt (``TextCond``)."""

    labels: torch.Tensor | None = None
    cond: torch.Tensor | None = None
    aug_level: torch.Tensor | None = None
    text: TextCond | None = None

    def to(self, device) -> NetInputs:
        """The same inputs on ``device``."""
        text = self.text
        if text is not None:
            text = TextCond(text.tokens.to(device), None if text.negative is None
                            else text.negative.to(device), text.encoder)
        return NetInputs(*(None if v is None else v.to(device)
                           for v in (self.labels, self.cond, self.aug_level)), text=text)


@dataclass
class Prediction:
    """What a denoiser evaluation gives: the clean-image estimate and, where the stage learns
    its variance, the interpolation fraction between the small and large variance."""

    x0: torch.Tensor
    var_frac: torch.Tensor | None  # learned-variance interpolation in [0, 1], or None
    log_p_grad: torch.Tensor | None = None  # scale * d log p(y | z_t) / d z_t (VP latent)


class Denoiser:
    """A stage seen as ``x0 = D(x, sigma)`` in the VE view, whatever its parameterization.

    Holds the conditioning of one sampling run (classes, low-res image, augmentation level) and
    runs classifier-free guidance, when asked for, as one doubled batch.
    """

    def __init__(self, stage: Stage, plan, inputs: NetInputs, tiles: TilePlan | None = None):
        self.stage, self.cfg, self.tiles = stage, stage.config, tiles
        self.labels, self.cond, self.aug_level = inputs.labels, inputs.cond, inputs.aug_level
        self.text = inputs.text
        self.guidance, self.clip = float(plan.guidance), plan.clip_denoised
        self.between = plan.interrupt
        self.threshold = (plan.threshold, plan.threshold_percentile) if plan.threshold else None
        check_text(self.cfg, self.text, guidance=self.guidance, stage=stage.name)
        self.text_guidance = self.guidance != 1.0 and self.text is not None
        self.uses_guidance = self.text_guidance or (
            self.guidance != 1.0 and self.cfg.num_classes > 0 and self.labels is not None)
        self.classifier = plan.classifier if plan.classifier_scale else None
        self.classifier_scale = float(plan.classifier_scale)
        check_conditioning(self.cfg, labels=self.labels, guidance=self.guidance, stage=stage.name)
        if self.classifier is not None and self.labels is None:
            raise CascadeError("classifier guidance needs a class for every image",
                               "class labels", "none", stage=stage.name)

    def __call__(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """The clean-image estimate of ``x`` at noise level ``sigma`` (score-corrected under
        classifier guidance)."""
        return score_corrected(self.predict(x, sigma), sigma, x)

    def predict(self, x: torch.Tensor, sigma) -> Prediction:
        """The estimate, the learned-variance fraction (None if the stage has none) and, under
        classifier guidance, the scaled log-likelihood gradient."""
        sigma = torch.as_tensor(sigma, dtype=torch.float64).flatten().expand(x.shape[0])
        # z_t = a x0 + b eps with a = 1 / sqrt(1 + sigma^2), b = sigma / sqrt(1 + sigma^2)
        a = (1 / (1 + sigma ** 2).sqrt()).to(x.device, torch.float32).view(-1, 1, 1, 1)
        b = (sigma / (1 + sigma ** 2).sqrt()).to(x.device, torch.float32).view(-1, 1, 1, 1)
        zt = x.float() * a
        c_noise = self.stage.noise_input(sigma.to(x.device))
        out = self._net(zt, c_noise)
        C = self.cfg.channels
        var_frac = (out[:, C:].float() + 1) / 2 if self.cfg.learn_sigma else None
        x0 = predict_x0(self.cfg.parameterization, out[:, :C].float(), zt, a=a, b=b)
        if self.threshold is not None:
            x0 = dynamic_threshold(x0, self.threshold[1], self.threshold[0])
        elif self.clip:
            x0 = x0.clamp(-1, 1)
        grad = None
        if self.classifier is not None:
            grad = self.classifier_scale * self.classifier.log_prob_grad(zt, sigma, self.labels)
        return Prediction(x0, var_frac, grad)

    def _net(self, zt, c_noise):
        dtype = self.stage.dtype
        tokens = None if self.text is None else self.text.tokens
        if not self.uses_guidance:
            return self._stage(zt.to(dtype), c_noise, cond=_cast(self.cond, dtype),
                               aug_level=self.aug_level, labels=self.labels, text=tokens).float()
        # the guided pass and its unconditional twin as one doubled batch: classes -> the null
        # class, a prompt -> the empty (or negative) prompt
        labels = None if self.labels is None else torch.cat(
            [self.labels, torch.full_like(self.labels, -1)])
        if self.text_guidance:
            tokens = torch.cat([tokens, self.text.negative])
        cond, aug = (None if a is None else torch.cat([a, a]) for a in (self.cond, self.aug_level))
        out = self._stage(torch.cat([zt, zt]).to(dtype), torch.cat([c_noise, c_noise]),
                          cond=_cast(cond, dtype), aug_level=aug, labels=labels,
                          text=tokens).float()
        with_class, without = out.chunk(2)
        C = self.cfg.channels
        guided = without[:, :C] + self.guidance * (with_class[:, :C] - without[:, :C])
        return torch.cat([guided, with_class[:, C:]], dim=1)

    def _stage(self, zt, c_noise, *, cond, aug_level, labels, text=None):
        """One network evaluation, in overlapping tiles when a tile plan is set (``tiling``)."""
        if self.tiles is None:
            return self.stage(zt, c_noise, cond=cond, aug_level=aug_level, labels=labels,
                              text=text)
        full = None if cond is None else self.stage.net.upsample_cond(cond, zt.shape[-2:])
        return tiled_call(lambda x, c: self.stage(x, c_noise, cond=c, aug_level=aug_level,
                                                  labels=labels, text=text),
                          zt, cond=full, plan=self.tiles, between=self.between)


def score_corrected(pred: Prediction, sigma, x: torch.Tensor) -> torch.Tensor:
    """The estimate, moved by the classifier's gradient where there is one: ``x0 + (1 - abar) /
    sqrt(abar) * grad`` (ADM's ``condition_score``)."""
    if pred.log_p_grad is None:
        return pred.x0
    s2 = torch.as_tensor(sigma, dtype=torch.float64).flatten().expand(x.shape[0]) ** 2
    coef = (s2 / (1 + s2).sqrt()).to(x.device, torch.float32).view(-1, 1, 1, 1)
    return pred.x0 + coef * pred.log_p_grad  # (1 - abar) / sqrt(abar) = sigma^2 sqrt(abar)


def check_conditioning(cfg, *, labels, guidance: float, stage: str):
    """Stages without a null class (ADM's) have no unconditional prediction: refuse
    classifier-free guidance and missing classes instead of indexing past the embedding."""
    if cfg.num_classes == 0 or cfg.null_class:
        return
    if guidance != 1.0:
        raise CascadeError("this stage has no null class, so classifier-free guidance cannot run",
                           "guidance 1 (use a noisy classifier to guide it)", guidance, stage=stage)
    if labels is None or bool((labels < 0).any()):
        raise CascadeError("this stage is class-conditional without a null class: every image "
                           "needs a class", f"class indices 0..{cfg.num_classes - 1} or names",
                           "unconditional", stage=stage)
    if bool((labels >= cfg.num_classes).any()):
        raise CascadeError("class index out of range", f"0..{cfg.num_classes - 1}",
                           int(labels.max()), stage=stage)


def check_text(cfg, text, *, guidance: float, stage: str):
    """A text stage needs a prompt of its encoder's width; a stage without text takes none;
    guidance on a prompt needs the embeddings it starts from (the empty or a negative prompt)."""
    want = cfg.text.width
    if want and text is None:
        raise CascadeError("this stage is conditioned on text: give it a prompt",
                           f"{cfg.text.encoder or 'text'} embeddings of width {want}", "no prompt",
                           stage=stage)
    if text is None:
        return
    if not want:
        raise CascadeError("this stage takes no text: a prompt cannot condition it",
                           "classes or nothing", "a prompt", stage=stage)
    if text.tokens.shape[-1] != want:
        raise CascadeError("the prompt was encoded by another text encoder than this stage's",
                           f"{cfg.text.encoder or 'its encoder'} embeddings of width {want}",
                           f"{text.encoder or 'embeddings'} of width {text.tokens.shape[-1]}",
                           stage=stage)
    if text.encoder and cfg.text.encoder and text.encoder != cfg.text.encoder:
        raise CascadeError("the prompt was encoded by another text encoder than this stage's",
                           cfg.text.encoder, text.encoder, stage=stage)
    if guidance != 1.0 and text.negative is None:
        raise CascadeError("classifier-free guidance on a prompt needs the empty (or a negative) "
                           "prompt's embeddings", "TextCond(tokens, negative=...)",
                           "no negative embeddings", stage=stage)


def _cast(a, dtype):
    return a.to(dtype) if isinstance(a, torch.Tensor) and a.is_floating_point() else a
