"""DeepFloyd IF's sampling process, checked against diffusers' own pipelines.

``tests/fixtures/deepfloyd/make_pipeline_fixtures.py`` ran ``IFPipeline`` and
``IFSuperResolutionPipeline`` (10 steps, guidance on, dynamic thresholding, stage II at
noise_level 250) on the fixture stages and recorded every noise tensor they drew. Our
samplers, fed the same noise, must give the same images; stage II's conditioning (upsample,
then noise at an integer step) must equal the one the pipeline built.
"""
import pytest
import torch
from safetensors import safe_open

import cascade_core as cc
from cascade_core.process.diffusion import dynamic_threshold
from cascade_core.process.noise import NoiseSource
from cascade_core.run import strategies
from tests.test_deepfloyd import FIXTURES, write_download


class RecordedNoise(NoiseSource):
    """Gives back the recorded draws, in order, whatever shape is asked (checked)."""

    def __init__(self, draws: list):
        super().__init__([torch.Generator()] * draws[0].shape[0])
        self.draws = list(draws)

    def randn(self, shape, device=None, dtype=torch.float32):
        t = self.draws.pop(0)
        assert tuple(t.shape[1:]) == tuple(shape)
        return t.to(device=device, dtype=dtype)

    def randn_like(self, x):
        return self.randn(x.shape[1:], x.device, x.dtype)


def recorded(stage: str):
    with safe_open(str(FIXTURES / f"pipeline_{stage}.safetensors"), framework="pt") as f:
        meta, io = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    draws = [io[k] for k in sorted(k for k in io if k.startswith("noise."))]
    return meta, io, draws


def replay(monkeypatch, by_seed: dict):
    """``NoiseSource.from_seed(seed, ...)`` inside the strategies gives the recorded draws."""
    monkeypatch.setattr(strategies.NoiseSource, "from_seed",
                        classmethod(lambda cls, seed, batch: by_seed[seed]))
    import cascade_core.run.handover as handover
    monkeypatch.setattr(handover.NoiseSource, "from_seed",
                        classmethod(lambda cls, seed, batch: by_seed[seed]))


def if_plan(meta: dict, threshold: float) -> cc.SamplingPlan:
    """IF's pipeline settings: DDPM with the learned variance on the leading grid (t = 900, 800,
    ..., 0), classifier-free guidance, dynamic thresholding at 0.95."""
    return cc.SamplingPlan(sampler="ddpm", steps=int(meta["steps"]), spacing="ddim",
                           guidance=float(meta["guidance"]), threshold=threshold)


def test_stage_one_reproduces_ifpipeline_from_the_same_noise(tmp_path, monkeypatch):
    meta, io, draws = recorded("stage1")
    stage = cc.load_stage(write_download(tmp_path, "stage1_diffusers") / "unet" / "config.json")
    replay(monkeypatch, {0: RecordedNoise(draws)})
    text = cc.TextCond(io["text"], negative=io["negative"])
    image, _ = cc.generate(stage, if_plan(meta, 1.5), cc.Conditioning.for_base(2, text=text),
                           seed=0)
    assert image.shape == io["out"].shape
    close(image, io["out"])
    # negative control: the plain clamp instead of dynamic thresholding misses
    replay(monkeypatch, {0: RecordedNoise(draws)})
    clamped, _ = cc.generate(stage, if_plan(meta, 0.0), cc.Conditioning.for_base(2, text=text),
                             seed=0)
    assert float((clamped - io["out"]).abs().max()) > 0.01


def close(ours: torch.Tensor, reference: torch.Tensor):
    """Equal to float32 rounding after ten guided steps (diffusers steps in float32, we form
    the step coefficients in float64): largest difference below 5e-4, mean below 5e-5."""
    diff = (ours - reference).abs()
    assert float(diff.max()) < 5e-4 and float(diff.mean()) < 5e-5, (float(diff.max()),
                                                                    float(diff.mean()))


def test_stage_two_reproduces_ifsuperresolutionpipeline_and_its_conditioning(tmp_path,
                                                                             monkeypatch):
    meta, io, draws = recorded("stage2")
    stage = cc.load_stage(write_download(tmp_path, "stage2_diffusers") / "unet" / "config.json")
    aug = stage.config.augmentation
    assert (aug.apply, aug.schedule, aug.default_s) == ("upsampled", "if_steps", 0.25)
    # the pipeline drew x_T, then the conditioning's noise, then one per step
    x_t, cond_noise, steps = draws[0], draws[1], draws[2:]
    low = cc.make_condition(io["low"], int(meta["noise_level"]) / 1000, 5)
    made, level = cc.upsampled_condition(low, size=io["cond"].shape[-2:],
                                         schedule=aug.schedule,
                                         noise=RecordedNoise([cond_noise]))
    assert float((made - io["cond"]).abs().max()) < 1e-5
    assert torch.equal((level * 1000).round().long(), io["noise_level"])
    replay(monkeypatch, {5: RecordedNoise([cond_noise]), 0: RecordedNoise([x_t, *steps])})
    text = cc.TextCond(io["text"], negative=io["negative"])
    image = cc.super_resolve(stage, if_plan(meta, 1.0),
                             cc.Conditioning.for_upsampling(low, text=text), seed=0)
    close(image, io["out"])


def test_a_truncated_handover_is_refused_by_an_if_stage_two(tmp_path):
    stage = cc.load_stage(write_download(tmp_path, "stage2_diffusers") / "unet" / "config.json")
    z = cc.LowResCond(torch.zeros(1, 3, 8, 8), level=torch.tensor([0.2]),
                      clean=torch.zeros(1, 3, 8, 8))
    text = cc.TextCond(torch.zeros(1, 7, 48))
    with pytest.raises(cc.CascadeError, match="noises its input after upsampling"):
        cc.super_resolve(stage, cc.SamplingPlan(steps=1),
                         cc.Conditioning.for_upsampling(z, text=text), seed=0)


def test_dynamic_threshold_is_imagens_rule():
    x = torch.linspace(-3, 3, 2 * 3 * 4 * 4).view(2, 3, 4, 4)
    x[1] = x[1] / 10  # inside [-1, 1]: s = 1, unchanged
    out = dynamic_threshold(x, 0.95, 1.5)
    s = torch.quantile(x[0].abs().flatten(), 0.95).clamp(1, 1.5)
    assert torch.allclose(out[0], x[0].clamp(-s, s) / s) and float(s) == 1.5
    assert torch.equal(out[1], x[1])
    assert float(out.abs().max()) <= 1.0 + 1e-6
    # max_value 1 is a plain clamp
    assert torch.equal(dynamic_threshold(x, 0.95, 1.0), x.clamp(-1, 1))


def test_text_conditioning_errors_name_what_was_expected(tmp_path):
    stage = cc.load_stage(write_download(tmp_path, "stage1_diffusers") / "unet" / "config.json")
    plan = cc.SamplingPlan(steps=1)
    with pytest.raises(cc.CascadeError, match="conditioned on text: give it a prompt"):
        cc.generate(stage, plan, cc.Conditioning.for_base(1), seed=0)
    with pytest.raises(cc.CascadeError, match="another text encoder.*width 48.*width 32"):
        cc.generate(stage, plan, cc.Conditioning.for_base(
            1, text=cc.TextCond(torch.zeros(1, 7, 32))), seed=0)
    with pytest.raises(cc.CascadeError, match="empty \\(or a negative\\) prompt"):
        cc.generate(stage, cc.SamplingPlan(steps=1, guidance=4.0), cc.Conditioning.for_base(
            1, text=cc.TextCond(torch.zeros(1, 7, 48))), seed=0)
    ours = cc.Stage(cc.StageConfig(resolution=8, unet=cc.UNetConfig(base_channels=8,
                                                                      channel_mult=(1,),
                                                                      attention_resolutions=())))
    with pytest.raises(cc.CascadeError, match="takes no text"):
        cc.generate(ours, plan, cc.Conditioning.for_base(
            1, text=cc.TextCond(torch.zeros(1, 7, 48))), seed=0)
