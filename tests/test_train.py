import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import cascade_core as cc
from train import loop
from train.cli import main, parse
from train.data import BatchOrder, KeyedBatchSampler
from train.loop import TrainingStopped
from train.stage_recipe import example_maker, lr_factor, stage_config

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--preset", "tiny", "--base-channels", "8", "--batch-size", "4", "--no-progress",
        "--log-every", "1", "--no-tensorboard"]


def make_folder(root: Path, classes=("red", "green", "blue"), per_class=4, size=16) -> Path:
    for c_i, c in enumerate(classes):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            rng = np.random.default_rng(c_i * 100 + i)
            img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            img[..., c_i % 3] += np.uint8(150)
            img[i:i + 4, i:i + 4] = 255
            Image.fromarray(img).save(root / c / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("data"))


def run(role, data, out, *extra):
    argv = ["--data", str(data), "--out", str(out), *FAST, *extra]
    return main(role, "test", argv)


@pytest.mark.parametrize("role,args,size", [
    ("base", ["--resolution", "8"], 8),
    ("sr", ["--resolution", "16", "--low-res", "8", "--crop", "8", "--blur-prob", "0.5"], 16),
    ("refiner", ["--resolution", "16"], 16),
])
def test_entry_point_trains_and_its_checkpoint_samples(data, tmp_path, role, args, size):
    assert run(role, data, tmp_path, "--steps", "4", "--sample-every", "2", "--checkpoint-every",
               "2", *args) == 0
    samples = sorted(p.name for p in (tmp_path / "samples").iterdir())
    assert samples == ["0000002.png", "0000004.png"]
    assert len(list(tmp_path.glob("state-*.pt"))) == 2
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == 4
    stage = cc.load_stage(tmp_path / "latest.safetensors")
    assert stage.config.role == role and stage.config.class_names == ("blue", "green", "red")
    assert stage.config.training["steps"] == 4 and stage.config.training["images_seen"] == 16
    plan = cc.SamplingPlan(steps=3)
    if role == "base":
        img, _ = cc.generate(stage, plan, cc.Conditioning.for_base(2, torch.tensor([0, 2])), seed=0)
    elif role == "sr":
        low = cc.make_condition(torch.zeros(2, 3, 8, 8), 0.1, 0)
        img = cc.super_resolve(stage, plan, cc.Conditioning.for_upsampling(low), seed=0)
    else:
        img = cc.refine(stage, cc.SamplingPlan(steps=3, start=cc.Start.partial(0.5)),
                        cc.Conditioning.for_refining(torch.zeros(2, 3, 16, 16)), seed=0)
    assert img.shape == (2, 3, size, size)


def _weights(path):
    return load_file(str(path))


def test_resume_gives_bit_identical_weights(data, tmp_path):
    common = ["--resolution", "8", "--steps", "6", "--checkpoint-every", "100", "--label-dropout",
              "0.3", "--dropout", "0.1"]
    assert run("base", data, tmp_path / "a", *common) == 0
    assert run("base", data, tmp_path / "b", *common, "--stop-after", "3") == 0
    assert [p.name for p in (tmp_path / "b").glob("state-*.pt")] == ["state-0000003.pt"]
    assert run("base", data, tmp_path / "b", *common, "--resume") == 0
    a = _weights(tmp_path / "a" / "latest.safetensors")
    b = _weights(tmp_path / "b" / "latest.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sa = torch.load(tmp_path / "a" / "state-0000006.pt", weights_only=True)
    sb = torch.load(tmp_path / "b" / "state-0000006.pt", weights_only=True)
    assert all(torch.equal(sa["model"][k], sb["model"][k]) for k in sa["model"])


def _env():
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return env


def test_sigterm_saves_state_and_exits_cleanly(data, tmp_path):
    cmd = [sys.executable, "-m", "train.stage1", "--data", str(data), "--out", str(tmp_path), *FAST,
           "--resolution", "8", "--steps", "100000", "--checkpoint-every", "100000"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (tmp_path / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    states = list(tmp_path.glob("state-*.pt"))
    assert len(states) == 1 and "resume with --resume" in out
    assert cc.load_stage(tmp_path / "latest.safetensors").config.role == "base"


def test_sigterm_also_stops_an_in_process_caller(data, tmp_path, monkeypatch):
    """A program chaining runs (bench.quality.ablation) must not start the next one after a stop
    signal."""
    real_step, calls = loop.optimizer_step, []

    def step_then_signal(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # the run's own handler is installed by now
        return real_step(*args, **kwargs)

    monkeypatch.setattr(loop, "optimizer_step", step_then_signal)
    with pytest.raises(TrainingStopped) as stopped:
        run("base", data, tmp_path, "--resolution", "8", "--steps", "50", "--checkpoint-every",
            "1000")
    assert stopped.value.code == 0 and len(calls) < 50
    assert [p.name for p in tmp_path.glob("state-*.pt")] == [f"state-{len(calls):07d}.pt"]
    assert signal.getsignal(signal.SIGTERM) is not None and not isinstance(
        getattr(signal.getsignal(signal.SIGTERM), "__self__", None), loop.StopSignal)


def test_crop_fraction_picks_whole_steps_of_crops_or_whole_images(tmp_path):
    """Half the steps crop: every example of one step (all its micro-batches and processes) has
    the same shape, and about half of the steps are crops."""
    cfg, _, _ = parse("sr", "t", ["--data", "x", "--out", str(tmp_path), *FAST, "--resolution",
                                  "16", "--low-res", "8", "--crop", "8", "--crop-fraction", "0.5",
                                  "--batch-size", "4"])
    maker = example_maker(cfg, stage_config(cfg, 3, ("a", "b", "c")))
    image = np.zeros((16, 16, 3), np.uint8)
    order = BatchOrder(batch=4, accum=2, seed=3, start_step=0, steps=40)
    sides = {}
    for rank in (0, 1):
        for micro in KeyedBatchSampler(10, order, rank=rank, world=2):
            for _, key in micro:
                step = (key % 2 ** 40) // 4
                sides.setdefault(step, set()).add(maker(image, 0, key)["x0"].shape[-1])
    assert all(len(s) == 1 for s in sides.values())
    cropped = sum(s == {8} for s in sides.values())
    assert len(sides) == 40 and 17 <= cropped <= 23
    assert sides[1] == {16} and sides[0] == {8}


def test_two_gloo_processes_match_one_process_accumulating_two_micro_batches(data, tmp_path):
    """What is guaranteed: N DDP processes give bit-identical weights to one process with
    --grad-accum N (same micro-batches, same per-example randomness); against one process
    without accumulation they agree only to float rounding (the batch is summed in another
    order), which is asserted loosely."""
    common = ["--resolution", "16", "--low-res", "8", "--crop", "8", "--crop-fraction", "0.5",
              "--steps", "4", "--batch-size", "8",
              "--label-dropout", "0.5", "--workers", "1", "--checkpoint-every", "100",
              "--blur-prob", "0.5"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    res = subprocess.run([*torchrun, "-m", "train.stage2", "--data", str(data), "--out",
                          str(tmp_path / "ddp"),
                          *FAST, *common], cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "2 process(es)" in res.stdout
    assert run("sr", data, tmp_path / "acc", *common, "--grad-accum", "2") == 0
    a = _weights(tmp_path / "ddp" / "latest.safetensors")
    b = _weights(tmp_path / "acc" / "latest.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert run("sr", data, tmp_path / "one", *common) == 0
    c = _weights(tmp_path / "one" / "latest.safetensors")
    assert max(float((a[k] - c[k]).abs().max()) for k in a) < 1e-3


def test_sampler_shares_make_up_the_global_batch():
    order = BatchOrder(batch=8, accum=2, seed=3, start_step=0, steps=3)
    one = list(KeyedBatchSampler(10, order, rank=0, world=1))
    r0 = list(KeyedBatchSampler(10, order, rank=0, world=2))
    r1 = list(KeyedBatchSampler(10, order, rank=1, world=2))
    assert [a + b for a, b in zip(r0, r1)] == one
    resumed = list(KeyedBatchSampler(10, replace(order, start_step=1), rank=0, world=1))
    assert resumed == one[2:]
    keys = [k for batch in one for _, k in batch]
    assert len(set(keys)) == len(keys)


def test_npz_data(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 255, (6, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", images=imgs, labels=np.array([0, 1, 0, 1, 0, 1]),
             class_names=np.array(["a", "b"]))
    assert run("base", tmp_path / "d.npz", tmp_path / "o", "--resolution", "8", "--steps", "2") == 0
    assert cc.load_stage(tmp_path / "o" / "latest.safetensors").config.class_names == ("a", "b")


def test_flat_folder_trains_unconditional(tmp_path):
    make_folder(tmp_path / "d", classes=("only",))
    flat = tmp_path / "flat"
    flat.mkdir()
    for p in (tmp_path / "d" / "only").iterdir():
        p.rename(flat / p.name)
    assert run("base", flat, tmp_path / "o", "--resolution", "8", "--steps", "2") == 0
    assert cc.load_stage(tmp_path / "o" / "latest.safetensors").config.num_classes == 0


def test_init_from_fine_tunes(data, tmp_path):
    assert run("base", data, tmp_path / "a", "--resolution", "8", "--steps", "2") == 0
    assert run("base", data, tmp_path / "b", "--resolution", "8", "--steps", "2",
               "--base-channels", "16",
               "--init-from", str(tmp_path / "a" / "latest.safetensors"), "--batch-size",
               "4") == 0
    cfg = cc.load_stage(tmp_path / "b" / "latest.safetensors").config
    assert cfg.unet.base_channels == 8
    # the file records this run (its batch) with the starting weights' record as its parent
    parent = cc.load_stage(tmp_path / "a" / "latest.safetensors").config.training
    assert cfg.training["batch_size"] == 4 and cfg.training["parent"] == parent
    assert cfg.training["images_seen"] == 2 * 4
    assert cfg.training["images_seen_total"] == parent["images_seen_total"] + 8


@pytest.mark.parametrize("case,message", [
    ("empty", "no images in"), ("unreadable", "cannot read image"),
    ("unreadable_worker", "cannot read image"), ("bad_npz", "'images' must be uint8"),
    ("missing", "training data not found"), ("wrong_init", "is a base stage"),
    ("bad_config", "unknown keys in"),
])
def test_bad_input_is_a_clear_error(tmp_path, capsys, case, message):
    data, extra = tmp_path / "d", []
    if case == "empty":
        data.mkdir()
    elif case.startswith("unreadable"):
        make_folder(data, per_class=2)
        (data / "red" / "9.jpg").write_bytes(b"definitely not a jpeg")
        # checked when training reaches it (the up-front check is off; see test_data_is_verified)
        extra = ["--batch-size", "8", "--workers", "1" if case.endswith("worker") else "0",
                 "--verify-data", "off"]
    elif case == "bad_npz":
        data = tmp_path / "d.npz"
        np.savez(data, images=np.zeros((3, 8, 8), dtype=np.uint8))
    elif case == "wrong_init":
        make_folder(data, per_class=1)
        assert run("base", data, tmp_path / "b", "--resolution", "8", "--steps", "1") == 0
        capsys.readouterr()
        assert run("sr", data, tmp_path / "o", "--resolution", "16", "--low-res", "8", "--steps",
                   "1", "--init-from", str(tmp_path / "b" / "latest.safetensors")) == 2
        assert message in capsys.readouterr().err
        return
    elif case == "bad_config":
        make_folder(data, per_class=1)
        (tmp_path / "c.json").write_text('{"learning_rate": 1}')
        extra = ["--config", str(tmp_path / "c.json")]
    assert run("base", data, tmp_path / "o", "--resolution", "8", "--steps", "3", *extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    if case.startswith("unreadable"):
        assert "9.jpg" in err
    assert not list((tmp_path / "o").glob("*.safetensors")) if (tmp_path / "o").exists() else True


def test_config_precedence(tmp_path):
    (tmp_path / "c.toml").write_text('lr = 0.123\nsteps = 7\n')
    cfg, resume, init = parse("sr", "t",
                              ["--data", "x", "--config", str(tmp_path / "c.toml"), "--steps", "9",
                                          "--preset", "small"])
    assert (cfg.lr, cfg.steps, cfg.base_channels, cfg.crop, cfg.low_res) == (0.123, 9, 32, 16, 16)
    assert resume == "" and init == ""


def test_lr_schedule():
    cfg, _, _ = parse("base", "t",
                      ["--data", "x", "--steps", "100", "--warmup", "10", "--lr-decay", "cosine",
                                    "--min-lr-ratio", "0.1"])
    assert lr_factor(cfg, 0) == pytest.approx(0.1) and lr_factor(cfg, 9) == pytest.approx(1.0)
    assert lr_factor(cfg, 10) == pytest.approx(1.0) and lr_factor(cfg, 100) == pytest.approx(0.1)
    assert lr_factor(cfg, 55) == pytest.approx(0.55)


def test_gradient_accumulation_matches_one_big_batch(data, tmp_path):
    common = ["--resolution", "8", "--steps", "3", "--batch-size", "8", "--checkpoint-every", "100",
              "--grad-clip", "0"]
    assert run("base", data, tmp_path / "one", *common) == 0
    assert run("base", data, tmp_path / "acc", *common, "--grad-accum", "4") == 0
    a = _weights(tmp_path / "one" / "latest.safetensors")
    b = _weights(tmp_path / "acc" / "latest.safetensors")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5


def test_resume_continues_the_run_as_it_was_started(data, tmp_path, capsys):
    """``--resume`` alone (no flags but --out) continues a fine-tuning run with its own settings
    and architecture, bit-identical to the run done in one go."""
    assert run("base", data, tmp_path / "init", "--resolution", "8", "--steps", "2",
               "--base-channels", "16") == 0
    tune = ["--resolution", "8", "--steps", "4", "--lr", "3e-4", "--checkpoint-every", "100",
            "--init-from", str(tmp_path / "init" / "latest.safetensors")]
    assert run("base", data, tmp_path / "a", *tune) == 0
    assert run("base", data, tmp_path / "b", *tune, "--stop-after", "2") == 0
    # only the folder: the preset, lr, steps and the 16-channel architecture come from the run
    assert main("base", "", ["--out", str(tmp_path / "b"), "--resume", "--no-progress"]) == 0
    a = _weights(tmp_path / "a" / "latest.safetensors")
    b = _weights(tmp_path / "b" / "latest.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_another_architecture_is_a_clear_error(data, tmp_path, capsys):
    assert run("base", data, tmp_path / "a", "--resolution", "8", "--steps", "4",
               "--stop-after", "2", "--checkpoint-every", "100") == 0
    (tmp_path / "a" / "config.json").unlink()  # nothing to say what the run was
    capsys.readouterr()
    assert run("base", data, tmp_path / "a", "--resolution", "8", "--steps", "4",
               "--base-channels", "16", "--resume") == 2
    err = capsys.readouterr().err
    assert "was written by a run with another architecture" in err and "Traceback" not in err


def test_images_are_decoded_once_and_training_is_unchanged(data, tmp_path):
    from train.data import ImageSource
    source = ImageSource(data)
    said = []
    assert not source.preload(8, budget_bytes=100, log=said.append)  # 12 x 8 x 8 x 3 > 100
    assert source.cache is None and "images not cached" in said[0]
    assert source.preload(8, log=said.append) and "decoded 12 images at 8px" in said[1]
    fresh = ImageSource(data)
    assert all(np.array_equal(source.load(i, 8), fresh.load(i, 8)) for i in range(len(fresh)))
    assert source.load(0, 16).shape == (16, 16, 3)  # another size: decoded as before
    common = ["--resolution", "8", "--steps", "3"]
    assert run("base", data, tmp_path / "a", *common) == 0  # cached (the default)
    assert run("base", data, tmp_path / "b", *common, "--no-cache-images") == 0
    a = _weights(tmp_path / "a" / "latest.safetensors")
    b = _weights(tmp_path / "b" / "latest.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_compile_flag_compiles_the_trained_network_and_says_so(data, tmp_path, capsys,
                                                               monkeypatch):
    compiled = []

    def fake_compile(net, **kwargs):  # no inductor run in the suite: record, then run eager
        compiled.append(type(net).__name__)
        return net
    monkeypatch.setattr(torch, "compile", fake_compile)
    assert run("base", data, tmp_path / "c", "--resolution", "8", "--steps", "2",
               "--compile") == 0
    out = capsys.readouterr().out
    assert compiled == ["UNet"] and "torch.compile: " in out and "compiled for input" in out
    assert cc.load_stage(tmp_path / "c" / "latest.safetensors").runner is None  # not saved
