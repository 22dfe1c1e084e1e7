"""Released ADM / improved-diffusion files: loading, and equality with the reference code.

The fixtures (``tests/fixtures/adm``) were written by ``make_fixtures.py`` from the reference
repositories' own models, with every parameter randomised; the tests rebuild those weights from
the stored shapes and seed, save them as a released-style ``.pt``, and load that file through the
same path a user's download takes.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch
from fixtures.adm.random_weights import random_state, state_digest
from safetensors import safe_open

import cascade_core as cc
from cascade_core.base.errors import CascadeError, CheckpointError
from cascade_core.formats import adm
from cascade_core.formats.adm_table import RELEASED, imagenet_class_names
from cascade_core.formats.stage_file import load_classifier, load_stage
from cascade_core.process.noise import NoiseSource
from cascade_core.process.samplers import sample_ddim, sample_ddpm
from cascade_core.process.schedules import sampling_sigmas
from cascade_core.run.denoiser import Denoiser, NetInputs

PLAIN = cc.SamplingPlan()  # guidance 1, no classifier, estimates clipped as ADM's clip_denoised

FIXTURES = Path(__file__).parent / "fixtures" / "adm"
UNETS = ["adm64_new_order", "adm256_legacy_heads", "adm_uncond", "adm_upsampler", "improved_4000",
         "adm_fractional"]


def fixture(name: str) -> tuple[dict, dict]:
    with safe_open(str(FIXTURES / f"{name}.safetensors"), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """Each variant's randomised reference weights as a released-style .pt, and its overrides."""
    d = tmp_path_factory.mktemp("released")
    files = {}
    for name in [*UNETS, "adm_classifier"]:
        _, meta = fixture(name)
        weights = random_state(json.loads(meta["shapes"]), int(meta["seed"]))
        assert state_digest(weights) == meta["digest"], "torch's seeded random stream changed"
        torch.save(weights, d / f"{name}.pt")
        files[name] = (d / f"{name}.pt", json.loads(meta["overrides"]))
    return files


def our_output(stage, io):
    cfg = stage.config
    with torch.no_grad():
        return stage(io["x"], stage.timestep_input(io["t"]),
                     cond=io["low_res"] if cfg.role == "sr" else None,
                     labels=io["y"] if cfg.num_classes else None)


@pytest.mark.parametrize("name", UNETS)
def test_eps_and_learned_variance_match_the_reference(released, name):
    path, overrides = released[name]
    stage = load_stage(path, overrides=overrides)
    io, _ = fixture(name)
    out, ref = our_output(stage, io), io["out"]
    assert out.shape == ref.shape
    torch.testing.assert_close(out[:, :3], ref[:, :3], atol=1e-5, rtol=1e-5)  # eps
    if ref.shape[1] == 6:
        torch.testing.assert_close(out[:, 3:], ref[:, 3:], atol=1e-5, rtol=1e-5)  # variance
    assert ref.abs().max() > 0.5  # the reference output is not trivially small


def test_classifier_logits_match_the_reference(released):
    path, overrides = released["adm_classifier"]
    clf = load_classifier(path, overrides=overrides)
    io, _ = fixture("adm_classifier")
    with torch.no_grad():
        torch.testing.assert_close(clf(io["x"], io["t"]), io["out"], atol=1e-5, rtol=1e-5)
    with pytest.raises(CascadeError, match="classifies only 16px images"):
        clf(torch.zeros(1, 3, 32, 32), torch.zeros(1))


def test_negative_control_legacy_order_read_as_new_fails(released):
    path, overrides = released["adm256_legacy_heads"]
    stage = load_stage(path, overrides={**overrides, "qkv_order": "new"})
    io, _ = fixture("adm256_legacy_heads")
    assert (our_output(stage, io) - io["out"]).abs().max() > 0.05


def start(io, sigmas):
    return io["x_T"] * (1 + float(sigmas[0]) ** 2) ** 0.5


class Replay(NoiseSource):
    """The reference's recorded per-step noise, in order."""

    def __init__(self, steps):
        super().__init__([torch.Generator()] * steps.shape[1])
        self.steps = list(steps)

    def randn_like(self, x):
        return self.steps.pop(0).to(x)


@pytest.fixture(scope="module")
def guided_pair(released):
    path, overrides = released["adm64_new_order"]
    base = load_stage(path, overrides=overrides)
    path, overrides = released["adm_classifier"]
    clf = load_classifier(path, overrides={**overrides, "schedule": "cosine"})
    return base, clf


def test_ddim_20_steps_matches_the_reference(guided_pair):
    base, _ = guided_pair
    io, _ = fixture("samplers")
    sigmas = sampling_sigmas(base.schedule, 20, "ddim")
    with torch.no_grad():
        out = sample_ddim(Denoiser(base, PLAIN, NetInputs(labels=io["y"])), start(io, sigmas),
                          sigmas)
    torch.testing.assert_close(out, io["ddim"], atol=1e-4, rtol=1e-4)


def test_respaced_learned_variance_ancestral_matches_the_reference(guided_pair):
    base, _ = guided_pair
    io, _ = fixture("samplers")
    sigmas = sampling_sigmas(base.schedule, 20, "uniform")
    with torch.no_grad():
        out = sample_ddpm(Denoiser(base, PLAIN, NetInputs(labels=io["y"])), start(io, sigmas),
                          sigmas,
                          noise=Replay(io["ancestral_noise"]))
    torch.testing.assert_close(out, io["ancestral"], atol=1e-4, rtol=1e-4)


def test_classifier_guided_ddim_matches_the_reference(guided_pair):
    base, clf = guided_pair
    io, meta = fixture("samplers")
    sigmas = sampling_sigmas(base.schedule, 20, "ddim")
    plan = cc.SamplingPlan(classifier=clf, classifier_scale=float(meta["guidance_scale"]))
    guided = Denoiser(base, plan, NetInputs(labels=io["y"]))
    with torch.inference_mode():  # the gradient is taken outside inference mode regardless
        out = sample_ddim(guided, start(io, sigmas), sigmas)
    torch.testing.assert_close(out, io["guided_ddim"], atol=1e-4, rtol=1e-4)
    assert (io["guided_ddim"] - io["ddim"]).abs().max() > 0.05  # guidance changed the sample


def manifests() -> dict:
    with gzip.open(FIXTURES / "manifests.json.gz", "rt") as f:
        return json.load(f)


@pytest.mark.parametrize("file", sorted(manifests()))
def test_every_released_file_is_recognised_from_its_shapes(file):
    shapes = {k: tuple(v) for k, v in manifests()[file].items()}
    entry = adm.table_entry(shapes, file)
    assert file in entry.files
    cfg = adm.adm_config(shapes, file)
    with torch.device("meta"):  # the real network, nothing allocated
        model = (cc.NoisyClassifier(cfg) if isinstance(cfg, cc.ClassifierConfig)
                 else cc.Stage(cfg))
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    family = "classifier" if isinstance(cfg, cc.ClassifierConfig) else "unet"
    mapped = adm.to_our_keys(shapes, family)
    if family == "unet":
        mapped = {f"net.{k}": v for k, v in mapped.items()}
    assert set(mapped) == set(ours)
    for k, shape in mapped.items():  # ADM's 1-D attention convolutions are our 1x1 2-D ones
        assert ours[k] in (shape, (*shape, 1)), k


def test_manifests_cover_the_table():
    files = {f for e in RELEASED for f in e.files}
    recorded = set(manifests())
    assert recorded <= files
    # the LSUN and improved-LSUN duplicates share their entry's shapes; every entry is covered
    assert all(set(e.files) & recorded for e in RELEASED)


def test_imagenet_class_names_are_unique_and_comma_free():
    names = imagenet_class_names()
    assert len(names) == 1000 and len({n.lower() for n in names}) == 1000
    assert not any("," in n for n in names)
    assert names[134] == "crane bird" and names[517] == "construction crane"


def test_converted_file_loads_without_the_table(released, tmp_path, monkeypatch):
    from cascade_core.formats import convert

    path, overrides = released["adm_upsampler"]
    args = [str(path), str(tmp_path / "u.safetensors"), "--dtype", "fp32"]
    args += [f"--set={k}={v}" for k, v in overrides.items() if k != "classes"]
    assert convert.main(args) == 0
    monkeypatch.setattr(adm, "RELEASED", ())  # nothing to look up any more
    stage = load_stage(tmp_path / "u.safetensors")
    io, _ = fixture("adm_upsampler")
    torch.testing.assert_close(our_output(stage, io), io["out"], atol=1e-5, rtol=1e-5)
    assert not stage.config.null_class and not stage.config.aug_input


def test_unknown_architecture_lists_what_the_shapes_say(released, tmp_path):
    path, _ = released["adm_uncond"]
    with pytest.raises(CheckpointError, match=r"matches none of the released.*base_channels=32"):
        load_stage(path)


def test_classifier_and_stage_are_not_interchangeable(released):
    path, overrides = released["adm_classifier"]
    with pytest.raises(CheckpointError, match="is a noisy classifier"):
        load_stage(path, overrides=overrides)
    path, overrides = released["adm_uncond"]
    with pytest.raises(CheckpointError, match="is a diffusion stage"):
        load_classifier(path, overrides=overrides)


def test_bad_pt_files_are_refused_with_a_sentence(released, tmp_path):
    path, _ = released["adm_uncond"]
    cut = tmp_path / "cut.pt"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cut.pt is truncated"):
        load_stage(cut)
    torch.save({"weight": torch.zeros(2), "note": "hello"}, tmp_path / "mixed.pt")
    with pytest.raises(CheckpointError, match="holds more than tensors.*'note': str"):
        load_stage(tmp_path / "mixed.pt")
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="does not hold a state dict"):
        load_stage(tmp_path / "list.pt")
    torch.save({"step": 5, "config": "{}", "rng_cpu": torch.get_rng_state(), "model": {}},
               tmp_path / "state-0000005.pt")
    with pytest.raises(CheckpointError, match="is a training state of this pack"):
        load_stage(tmp_path / "state-0000005.pt")


def test_unknown_override_is_refused(released):
    path, overrides = released["adm_uncond"]
    with pytest.raises(CheckpointError, match="unknown override"):
        load_stage(path, overrides={**overrides, "heads": 3})


def test_stage_without_null_class_refuses_cfg_and_unconditional(released):
    path, overrides = released["adm64_new_order"]
    stage = load_stage(path, overrides=overrides)
    labels = torch.tensor([3])
    with pytest.raises(CascadeError, match="no null class"):
        Denoiser(stage, cc.SamplingPlan(guidance=2.0), NetInputs(labels=labels))
    with pytest.raises(CascadeError, match="every image needs a class"):
        Denoiser(stage, PLAIN, NetInputs())
    with pytest.raises(CascadeError, match="class index out of range"):
        Denoiser(stage, PLAIN, NetInputs(labels=torch.tensor([10])))


def test_half_precision_weights_normalise_in_float32(released):
    path, overrides = released["adm256_legacy_heads"]
    io, _ = fixture("adm256_legacy_heads")
    stage = load_stage(path, overrides=overrides, dtype="bf16")
    with torch.no_grad():
        out = stage(io["x"].bfloat16(), stage.timestep_input(io["t"]), labels=io["y"]).float()
    assert out.isfinite().all()
    assert (out - io["out"]).abs().max() < 0.1 * io["out"].abs().max()
