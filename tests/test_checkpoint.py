import dataclasses
import errno
import json

import pytest
import torch
from helpers import tiny_stage
from safetensors.torch import save_file

import cascade_core as cc
from cascade_core.formats.atomic import atomic_write


def _out(stage, dtype=torch.float32):
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)).to(dtype)
    with torch.no_grad():
        return stage(x, torch.tensor([10.0, 700.0]), labels=torch.tensor([1, -1]))


def test_round_trip_fp32_bit_identical(tmp_path):
    stage = tiny_stage(num_classes=3, class_names=("a", "b", "c"), learn_sigma=True)
    path = cc.save_stage(stage, tmp_path / "base.safetensors")
    again = cc.load_stage(path)
    assert again.config == stage.config
    assert torch.equal(_out(stage), _out(again))


@pytest.mark.parametrize("dtype,name", [(torch.float16, "fp16"), (torch.bfloat16, "bf16")])
def test_round_trip_low_precision_bit_identical(tmp_path, dtype, name):
    stage = tiny_stage(num_classes=3)
    path = cc.save_stage(stage, tmp_path / "s.safetensors", dtype=name)
    assert cc.load_stage(path).dtype == torch.float32  # upcast by default
    again = cc.load_stage(path, dtype=None)  # in the dtype it was saved in
    assert again.dtype == dtype
    ref = tiny_stage(num_classes=3).to(dtype)
    assert torch.equal(_out(ref, dtype), _out(again, dtype))


def test_metadata_describes_stage(tmp_path):
    stage = tiny_stage("sr", 16, 8, num_classes=2, training={"steps": 5})
    path = cc.save_stage(stage, tmp_path / "sr.safetensors")
    cfg, meta = cc.read_config(path)
    assert cfg.role == "sr" and cfg.low_res == 8 and cfg.training == {"steps": 5}
    assert meta["cdm_version"] == cc.__version__
    assert json.loads(meta["cdm_stage"])["resolution"] == 16


def test_missing_and_wrong_suffix(tmp_path):
    with pytest.raises(cc.CheckpointError, match="not found"):
        cc.load_stage(tmp_path / "nope.safetensors")
    p = tmp_path / "model.ckpt"
    p.write_bytes(b"\x80\x04pickle")
    with pytest.raises(cc.CheckpointError, match="safetensors"):
        cc.load_stage(p)


def test_corrupt_file(tmp_path):
    p = tmp_path / "bad.safetensors"
    p.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(cc.CheckpointError, match="not a readable safetensors"):
        cc.load_stage(p)


def test_no_or_wrong_metadata(tmp_path):
    p = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(p))
    with pytest.raises(cc.CheckpointError, match="not a cascade stage"):
        cc.load_stage(p)
    save_file({"w": torch.zeros(2)}, str(p),
              metadata={"cdm_format": "cascade-stage", "cdm_stage": "{oops"})
    with pytest.raises(cc.CheckpointError, match="unreadable stage metadata"):
        cc.load_stage(p)
    meta = {"cdm_format": "cascade-stage", "cdm_stage": json.dumps({"role": "upscaler"})}
    save_file({"w": torch.zeros(2)}, str(p), metadata=meta)
    with pytest.raises(cc.CheckpointError, match="invalid stage metadata"):
        cc.load_stage(p)


def test_weights_not_matching_config(tmp_path):
    stage = tiny_stage(num_classes=3)
    sd = stage.state_dict()
    other = tiny_stage(num_classes=5)  # different class table shape
    p = cc.save_stage(other, tmp_path / "s.safetensors", state_dict=sd)
    with pytest.raises(cc.CheckpointError, match="do not match"):
        cc.load_stage(p)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.safetensors"

    def boom(tmp):
        open(tmp, "wb").write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(cc.CascadeError, match="the disk is full"):
        atomic_write(target, boom)
    assert list(tmp_path.iterdir()) == []


def test_ema_tracks_weights():
    a = tiny_stage()
    ema = cc.EMA(a, decay=0.5, warmup=0)
    with torch.no_grad():
        for p in a.parameters():
            p.add_(1.0)
    ema.update(a)
    pa, pe = next(a.parameters()), next(ema.model.parameters())
    assert torch.allclose(pe, pa - 0.5)
    warm = cc.EMA(a, decay=0.999, warmup=10)
    assert warm.current_decay() == pytest.approx(0.1)


def _rewrite_metadata(path, stage_json: dict):
    """The same weights with the stage JSON replaced: how an older release wrote the file."""
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    save_file(tensors, str(path), metadata={**meta, "cdm_stage": json.dumps(stage_json)})


def test_files_of_every_format_version_load_as_the_same_stage(tmp_path):
    """This release writes format 6; a file in format 2's layout (``kind`` for the network, the
    schedule's ``kind``) or with no version at all loads as the same stage with the same
    weights; a newer format is refused by name."""
    from cascade_core.formats.stage_format import FORMAT_VERSION
    stage = tiny_stage("sr", 16, 8, num_classes=2, learn_sigma=True)
    path = cc.save_stage(stage, tmp_path / "s.safetensors")
    written = json.loads(cc.read_config(path)[1]["cdm_stage"])
    assert FORMAT_VERSION == 6 and written["format_version"] == 6
    assert written["network"] == "unet" and written["schedule"]["beta_schedule"] == "cosine"
    old = {k: v for k, v in written.items() if k != "network"}
    old.update(format_version=2, kind="diffusion",
               schedule={"kind": "cosine", "timesteps": written["schedule"]["timesteps"]})
    for layout in (old, {k: v for k, v in old.items() if k != "format_version"}):
        _rewrite_metadata(path, layout)
        again = cc.load_stage(path)
        assert again.config == stage.config
        sd, again_sd = stage.state_dict(), again.state_dict()
        assert all(torch.equal(sd[k], again_sd[k]) for k in sd)
    _rewrite_metadata(path, {**written, "format_version": 7})
    with pytest.raises(cc.CheckpointError, match="stage format is newer than this pack"):
        cc.load_stage(path)


def test_an_if_stage_two_of_format_4_gets_ifs_augmentation_and_ours_keeps_its_own(tmp_path):
    """Format 5 added the augmentation's ``apply`` and the ``if_steps`` schedule: an IF stage II
    converted by a format-4 pack (recorded with our low-res augmentation) is read with IF's;
    our own SR stage of format 4 reads unchanged; the field survives a round trip."""
    stage = tiny_stage("sr", 16, 8)
    path = cc.save_stage(stage, tmp_path / "s.safetensors")
    written = json.loads(cc.read_config(path)[1]["cdm_stage"])
    v4 = {**written, "format_version": 4,
          "augmentation": {k: v for k, v in written["augmentation"].items() if k != "apply"}}
    _rewrite_metadata(path, v4)
    assert cc.read_config(path)[0].augmentation == stage.config.augmentation
    _rewrite_metadata(path, {**v4, "training": {"source": "DeepFloyd IF (DeepFloyd IF licence, "
                                                          "non-commercial)"}})
    aug = cc.read_config(path)[0].augmentation
    assert (aug.apply, aug.schedule) == ("upsampled", "if_steps")
    changed = cc.Stage(dataclasses.replace(stage.config, augmentation=aug))
    changed.load_state_dict(stage.state_dict())
    again = cc.load_stage(cc.save_stage(changed, tmp_path / "t.safetensors"))
    assert again.config.augmentation == aug


def test_a_stage_of_format_5_reads_unchanged_and_the_recorded_sampling_survives(tmp_path):
    """Format 6 added ``sampling`` (a distilled stage's sampler, steps and spacing): a format-5
    file (no such key) reads with none recorded; a recorded one survives a round trip; a half
    record is refused."""
    stage = tiny_stage("base", 8)
    path = cc.save_stage(stage, tmp_path / "s.safetensors")
    written = json.loads(cc.read_config(path)[1]["cdm_stage"])
    _rewrite_metadata(path, {**{k: v for k, v in written.items() if k != "sampling"},
                             "format_version": 5})
    assert not cc.read_config(path)[0].sampling.fixed
    recorded = cc.SamplingConfig("ddim", 4, "trailing")
    fixed = cc.Stage(dataclasses.replace(stage.config, sampling=recorded))
    fixed.load_state_dict(stage.state_dict())
    assert cc.load_stage(cc.save_stage(fixed, tmp_path / "t.safetensors")).config.sampling == \
        recorded
    with pytest.raises(cc.CascadeError, match="sampler, steps and spacing together"):
        cc.SamplingConfig("ddim", 4, "")


def test_the_shipped_files_of_formats_1_and_2_still_load():
    from pathlib import Path
    weights = Path(__file__).resolve().parents[1] / "weights"
    for name in ("cifar10-base16", "cifar10-sr16to32", "cifar10-refiner32"):
        cfg, meta = cc.read_config(weights / f"{name}.safetensors")
        assert json.loads(meta["cdm_stage"]).get("format_version") in (1, 2)
        assert cfg.network == "unet" and cfg.schedule.beta_schedule == "cosine"
