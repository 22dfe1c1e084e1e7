import pytest
import torch
from safetensors.torch import load_file
from test_train import make_folder

import cascade_core as cc
from train.shallow import main, phase_of
from train.shallow_model import ShallowCascade
from train.shallow_train_config import ShallowTrainConfig, stage_configs, teacher_forcing

SMALL = ["--hidden", "16", "--blocks", "1", "--vit-depth", "1", "--vit-heads", "2",
         "--unet-channels", "8",
         "--batch-size", "4", "--epoch-size", "8", "--no-progress", "--no-tensorboard",
         "--perceptual-weight", "0"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("shallowdata"), per_class=3, size=32)


def test_teacher_forcing_schedule_values():
    cfg = ShallowTrainConfig()
    assert teacher_forcing(cfg, 2, 0.0) == pytest.approx(0.9)
    assert teacher_forcing(cfg, 2, 1.0) == pytest.approx(0.1)
    assert teacher_forcing(cfg, 2, 0.5) == pytest.approx(0.5)
    assert teacher_forcing(cfg, 3, 0.0) == pytest.approx(0.1)
    assert teacher_forcing(cfg, 3, 1.0) == 0.0
    assert teacher_forcing(cfg, 1, 0.3) == 1.0


def test_phase_of_epochs():
    cfg = ShallowTrainConfig(phase1_epochs=2, phase2_epochs=1, phase3_epochs=3)
    assert [phase_of(cfg, e)[:2] for e in range(6)] == [(1, 0), (1, 1), (2, 0), (3, 0), (3, 1),
                                                        (3, 2)]


def _cascade(coarse="diffusion", upsampler="pixelshuffle", refiner="conv"):
    cfg = ShallowTrainConfig(coarse=coarse, upsampler=upsampler, refiner=refiner, hidden=16,
                             blocks=1, vit_depth=1, vit_heads=2, unet_channels=8, timesteps=50)
    stages = {k: cc.Stage(c) for k, c in stage_configs(cfg, 3, ("a", "b", "c")).items()}
    return ShallowCascade(stages["coarse"], stages["upsampler"], stages["refiner"],
                          perceptual=None, perceptual_weight=0.0)


@pytest.mark.parametrize("coarse,upsampler,refiner", [("diffusion", "pixelshuffle", "conv"),
                                                      ("dae", "resnet", "vit"),
                                                      ("diffusion", "diffusion", "diffusion")])
def test_gradients_reach_the_coarse_stage_only_in_phase_3(coarse, upsampler, refiner):
    torch.manual_seed(0)
    model = _cascade(coarse, upsampler, refiner)
    with torch.no_grad():  # give zero-initialised output layers some weight so gradients can pass
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    x_high = torch.rand(4, 3, 32, 32) * 2 - 1
    x_low = cc.downsample(x_high, 16)
    labels = torch.tensor([0, 1, 2, 0])
    for phase, reaches in ((2, False), (3, True)):
        model.zero_grad(set_to_none=True)
        model.set_phase(phase)
        losses = model(x_high, x_low, labels, phase, teacher_p=0.0,
                       seed=1)  # always the coarse output
        assert set(losses) == ({"upsampler", "refiner"} | ({"coarse"} if phase == 3 else set()))
        # not the coarse stage's own loss
        (losses["upsampler"].mean() + losses["refiner"].mean()).backward()
        grads = [p.grad for p in model.coarse.parameters()]
        got = any(g is not None and float(g.abs().max()) > 0 for g in grads)
        assert got == reaches, f"phase {phase}"
        assert any(p.grad is not None for p in model.upsampler.parameters())


def test_phase_1_trains_only_the_coarse_stage():
    model = _cascade()
    model.set_phase(1)
    losses = model(torch.zeros(2, 3, 32, 32), torch.zeros(2, 3, 16, 16), torch.tensor([0, 1]), 1,
                   1.0, seed=0)
    assert set(losses) == {"coarse"}
    assert not any(p.requires_grad for p in model.upsampler.parameters())


@pytest.mark.parametrize("kinds", [("diffusion", "pixelshuffle", "vit"), ("dae", "resnet", "conv")])
def test_three_phases_write_loadable_stages(data, tmp_path, kinds):
    argv = ["--data", str(data), "--out", str(tmp_path), *SMALL, "--coarse", kinds[0],
            "--upsampler", kinds[1],
            "--refiner", kinds[2], "--phase1-epochs", "1", "--phase2-epochs", "1",
            "--phase3-epochs", "1", "--timesteps", "50"]
    assert main(argv) == 0
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3 and all("epoch_seconds" in ln for ln in lines)
    coarse = cc.load_stage(tmp_path / "coarse.safetensors")
    up = cc.load_stage(tmp_path / "upsampler.safetensors")
    ref = cc.load_stage(tmp_path / "refiner.safetensors")
    networks = tuple("unet" if k == "diffusion" else k for k in kinds)
    assert (coarse.config.network, up.config.network,
            ref.config.network) == networks and coarse.config.training["epochs"] == 3
    plan = cc.SamplingPlan(steps=3)
    img, cond = cc.generate(coarse, plan, cc.Conditioning.for_base(2, torch.tensor([0, 1])), seed=0)
    up_img = cc.super_resolve(up, plan, cc.Conditioning.for_upsampling(cond), seed=0)
    x = cc.refine(ref, cc.SamplingPlan(steps=3, start=cc.Start.partial(0.5)),
                  cc.Conditioning.for_refining(up_img), seed=0)
    assert img.shape == (2, 3, 16, 16) and x.shape == (2, 3, 32, 32)


def test_resume_mid_phase_is_bit_identical(data, tmp_path):
    common = ["--data", str(data), *SMALL, "--phase1-epochs", "1", "--phase2-epochs", "2",
              "--phase3-epochs", "1", "--timesteps", "50", "--coarse", "dae"]
    assert main([*common, "--out", str(tmp_path / "a")]) == 0
    assert main([*common, "--out", str(tmp_path / "b"), "--stop-after-epochs",
                 "2"]) == 0  # inside phase 2
    assert main([*common, "--out", str(tmp_path / "b"), "--resume"]) == 0
    for name in ("coarse", "upsampler", "refiner"):
        a = load_file(str(tmp_path / "a" / f"{name}.safetensors"))
        b = load_file(str(tmp_path / "b" / f"{name}.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_perceptual_term_uses_a_classifier_file(data, tmp_path):
    from train.metrics import cifar_classifier as C
    imgs, labs, _ = C.load_split(data)
    C.save(C.fit(imgs, labs, 3, C.FitSettings(epochs=1, batch=4), log=lambda *a: None),
           tmp_path / "clf.safetensors", {})
    argv = ["--data", str(data), "--out", str(tmp_path / "o"), *SMALL[:-2], "--perceptual",
            str(tmp_path / "clf.safetensors"),
            "--perceptual-weight", "0.5", "--phase1-epochs", "0", "--phase2-epochs", "1",
            "--phase3-epochs", "0", "--timesteps", "50"]
    assert main(argv) == 0
    assert "loss_perceptual" in (tmp_path / "o" / "metrics.jsonl").read_text()
    bad = [*argv[:-12], "--perceptual", str(tmp_path / "missing.safetensors"),
           "--perceptual-weight", "0.5"]
    assert main(bad) == 2


def _fake_lpips_files(tmp_path):
    from safetensors.torch import save_file

    from train.lpips import VGG16, WIDTHS
    g, backbone, idx, cin = torch.Generator().manual_seed(0), {}, 0, 3
    for v in VGG16:
        if v == "M":
            idx += 1
            continue
        backbone[f"features.{idx}.weight"] = torch.randn(v, cin, 3, 3,
                                                         generator=g) * (2 / (9 * cin)) ** 0.5
        backbone[f"features.{idx}.bias"] = torch.zeros(v)
        backbone["classifier.0.weight"] = torch.zeros(2,
                                                      2)  # ignored, as in a full torchvision file
        idx, cin = idx + 2, v
    save_file(backbone, str(tmp_path / "vgg16.safetensors"))
    torch.save({f"lin{i}.model.1.weight": torch.rand(1, w, 1, 1, generator=g) for i,
                w in enumerate(WIDTHS)},
               tmp_path / "vgg.pth")
    return tmp_path / "vgg16.safetensors", tmp_path / "vgg.pth"


def test_lpips_from_local_files(tmp_path):
    from train.lpips import LPIPS
    backbone, linear = _fake_lpips_files(tmp_path)
    lp = LPIPS(backbone, linear)
    a, b = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    assert float(lp(a, a).abs().max()) < 1e-6 and bool((lp(a, b) > 0).all())
    with pytest.raises(cc.CascadeError, match="do not match"):
        LPIPS(linear, linear)


def test_shallow_training_with_lpips(data, tmp_path):
    backbone, linear = _fake_lpips_files(tmp_path)
    argv = ["--data", str(data), "--out", str(tmp_path / "o"), *SMALL[:-2], "--perceptual-weight",
            "0.5",
            "--lpips-backbone", str(backbone), "--lpips-linear", str(linear), "--phase1-epochs",
            "0", "--phase2-epochs", "1", "--phase3-epochs", "0", "--timesteps", "50"]
    assert main(argv) == 0
    assert "loss_perceptual" in (tmp_path / "o" / "metrics.jsonl").read_text()


def test_shallow_stages_record_that_they_had_no_conditioning_augmentation(tmp_path):
    """The shallow recipe feeds its upsampler and refiner clean (teacher-forced or coarse)
    inputs, never augmented ones: their files say so (s_max 0, no s input), Stage Info says so,
    and an augmented condition is refused instead of silently mis-read."""
    from nodes.stage_nodes import LoadedStage, describe
    model = _cascade("diffusion", "diffusion", "diffusion")
    for name in ("upsampler", "refiner"):
        stage = getattr(model, name)
        path = cc.save_stage(stage, tmp_path / f"{name}.safetensors")
        cfg = cc.load_stage(path).config
        assert cfg.augmentation.s_max == 0.0 and not cfg.aug_input
        assert stage.net.aug_mlp is None  # no s-embedding to feed
        text = describe(LoadedStage(cc.load_stage(path), str(path)))
        assert "augmentation: none (trained on clean" in text and "U(0," not in text
    noisy = cc.make_condition(torch.zeros(1, 3, 16, 16), 0.2, 0)
    with pytest.raises(cc.CascadeError, match="trained on clean low-res images"):
        cc.super_resolve(model.upsampler, cc.SamplingPlan(steps=2),
                         cc.Conditioning.for_upsampling(noisy), seed=0)
    with pytest.raises(cc.CascadeError, match="trained on clean inputs"):
        cc.refine(model.refiner, cc.SamplingPlan(steps=2, start=cc.Start.partial(0.5)),
                  cc.Conditioning.for_refining(torch.zeros(1, 3, 32, 32), s=0.1), seed=0)
