"""ComfyUI's samplers and sigma grids on our stages: the glue, and a real ComfyUI when one is given.

The real-ComfyUI test runs only when ``COMFYUI_PATH`` points to a ComfyUI checkout (with its
Python dependencies installed): it is reported as skipped otherwise, never as passed.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import tiny_stage

import cascade_core as cc
from nodes import NODE_CLASS_MAPPINGS
from nodes.comfy_samplers import ComfyModelWrap, comfy_sampler, warn_low_start
from nodes.stage_nodes import LoadedStage

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def base():
    return LoadedStage(tiny_stage("base", resolution=8, num_classes=3), "tiny-base.safetensors")


def run_base(base, **kw):
    args = dict(stage=base, seed=5, steps=4, sampler_name="dpmpp_2m", spacing="karras",
                class_name="1", guidance=1.0, batch_size=2, truncate_s=0.0, dtype="fp32")
    return NODE_CLASS_MAPPINGS["CDMBaseSampler"]().sample(**{**args, **kw})[0]


def test_cascade_sigmas_node_drives_the_sampler_exactly(base):
    (sigmas,) = NODE_CLASS_MAPPINGS["CDMCascadeSigmas"]().sigmas(base, steps=4, spacing="karras")
    assert torch.allclose(sigmas.double(), cc.sampling_sigmas(base.stage.schedule, 4, "karras"))
    # the same grid in float32 (as ComfyUI passes SIGMAS): the same images to float rounding
    assert torch.allclose(run_base(base, sigmas=sigmas), run_base(base), atol=1e-4)


@pytest.mark.parametrize("bad", [[1.0, 2.0, 0.0], [3.0, 3.0, 0.0], [5.0], [2.0, float("nan"), 0.0],
                                 [2.0, -1.0], [5.0, 1.0, 0.5]])
def test_bad_sigmas_are_refused(base, bad):
    with pytest.raises(cc.CascadeError, match="SIGMAS must be a descending list"):
        run_base(base, sigmas=torch.tensor(bad))


def test_sigmas_with_a_truncated_base_stop_at_its_level(base):
    (sigmas,) = NODE_CLASS_MAPPINGS["CDMCascadeSigmas"]().sigmas(base, steps=6, spacing="karras")
    assert torch.allclose(run_base(base, sigmas=sigmas, truncate_s=0.3),
                          run_base(base, steps=6, truncate_s=0.3), atol=1e-4)


def test_a_grid_far_below_the_stage_top_warns(base, caplog):
    sd_karras = cc.process.schedules.karras_sigmas(4, 0.03, 14.6)  # KarrasScheduler's defaults
    assert warn_low_start(base.stage, torch.cat([sd_karras, sd_karras.new_zeros(1)]))
    assert warn_low_start(base.stage, cc.sampling_sigmas(base.stage.schedule, 4, "karras")) is None


class RecordingSampler:
    """Calls the wrapper the way ComfyUI's KSAMPLER.sample does (only to test our side of the
    glue; the real check is the COMFYUI_PATH test below)."""

    def __init__(self):
        self.calls = []

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None,
               denoise_mask=None, disable_pbar=False):
        ms = model_wrap.inner_model.model_sampling
        assert model_wrap.model_patcher.get_model_object("model_sampling") is ms
        x = ms.noise_scaling(sigmas[0], noise, latent_image, False)
        for i in range(len(sigmas) - 1):
            d = model_wrap(x, sigmas[i] * x.new_ones(x.shape[0]), model_options={},
                           seed=extra_args["seed"])
            callback(i, d, x, len(sigmas) - 1)
            x = x + (x - d) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
            self.calls.append(float(sigmas[i]))
        return ms.inverse_noise_scaling(sigmas[-1], x)


def test_a_comfy_style_sampler_runs_through_our_denoiser(base):
    rec = RecordingSampler()
    out = run_base(base, sampler=rec)
    assert len(rec.calls) == 4 and out.shape == (2, 8, 8, 3)
    # a Euler loop through the wrapper is our own Euler sampler, to float rounding
    assert torch.allclose(out, run_base(base, sampler_name="euler"), atol=1e-5)
    with pytest.raises(cc.CascadeError, match="not a ComfyUI SAMPLER"):
        comfy_sampler(object(), base.stage, seed=0)
    wrap = ComfyModelWrap(lambda x, s: x, base.stage.schedule)
    with pytest.raises(cc.CascadeError, match="asked the stage for something"):
        wrap.model_patcher.get_model_object("latent_format")


COMFY = os.environ.get("COMFYUI_PATH")


@pytest.mark.skipif(not COMFY, reason="COMFYUI_PATH is not set: ComfyUI's samplers not run")
def test_real_comfyui_samplers_run_on_our_stages():
    code = textwrap.dedent(f"""
        import json, sys, torch
        sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / "tests")!r}]
        from nodes import NODE_CLASS_MAPPINGS
        from nodes.stage_nodes import LoadedStage
        import cascade_core as cc
        sys.path.append({COMFY!r}); sys.argv = ["comfy", "--cpu"]
        import comfy.options; comfy.options.enable_args_parsing()
        import comfy.samplers
        base = LoadedStage(cc.load_stage({str(ROOT / "weights" / "cifar10-base16.safetensors")!r}),
                           "cifar10-base16.safetensors")
        node = NODE_CLASS_MAPPINGS["CDMBaseSampler"]()
        args = dict(stage=base, seed=3, steps=12, sampler_name="dpmpp_2m", spacing="karras",
                    class_name="all classes", guidance=1.0, batch_size=10, truncate_s=0.0,
                    dtype="fp32")
        ours = node.sample(**args)[0]
        out = {{}}
        for name in ("euler_ancestral", "dpmpp_2m_sde", "uni_pc"):
            s = comfy.samplers.sampler_object(name)
            a, b = node.sample(**args, sampler=s)[0], node.sample(**args, sampler=s)[0]
            out[name] = {{"finite": bool(torch.isfinite(a).all()), "shape": list(a.shape),
                         "repeatable": bool(torch.equal(a, b)),
                         "mean_abs_diff_vs_ours": float((a - ours).abs().mean()),
                         "std": float(a.std())}}
        print("RESULT", json.dumps(out))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.rsplit("RESULT", 1)[1])
    for name, r in result.items():
        assert r["finite"] and r["repeatable"] and r["shape"] == [10, 16, 16, 3], (name, r)
        assert r["std"] > 0.05, (name, r)  # an image, not a flat field
    assert result["uni_pc"]["mean_abs_diff_vs_ours"] < 0.1  # two ODE solvers agree closely
