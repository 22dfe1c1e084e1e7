"""What a lent GPU needs: the JPEG pack that carries the data there, per-checkpoint curves,
the CPU-against-GPU benchmark (its CPU rows run anywhere), and eval on a chosen device."""
import shutil

import numpy as np
import pytest
from PIL import Image

import cascade_core as cc
from bench.quality import stage_curve
from bench.speed import gpu_speed
from train import eval as E
from train import jpeg_pack


def _jpegs(root, n=6, quality=75):
    rng = np.random.default_rng(0)
    for i in range(n):
        d = root / f"class{i % 2}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
            d / f"{i:04d}.jpg", quality=quality)
    return root


def test_jpeg_pack_round_trip_is_bit_exact_and_shares_headers(tmp_path):
    src = _jpegs(tmp_path / "src")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(src / "class1" / "q95.jpg", quality=95)
    summary = jpeg_pack.pack(src, tmp_path / "p.npz")
    assert summary["files"] == 7 and summary["headers"] == 2  # quality 75 and 95 tables
    assert summary["bytes"] < summary["source_bytes"]
    assert jpeg_pack.unpack(tmp_path / "p.npz", tmp_path / "dst") == 7
    for f in src.rglob("*.jpg"):
        assert (tmp_path / "dst" / f.relative_to(src)).read_bytes() == f.read_bytes()


def test_jpeg_pack_refuses_what_it_cannot_carry(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.jpg").write_bytes(b"PNG not really a jpeg")
    with pytest.raises(cc.CascadeError, match="not a JPEG file"):
        jpeg_pack.pack(tmp_path / "a", tmp_path / "p.npz")
    assert not (tmp_path / "p.npz").exists()
    (tmp_path / "a" / "x.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x04ab")  # APP0, then nothing
    with pytest.raises(cc.CascadeError, match="without a start-of-scan"):
        jpeg_pack.pack(tmp_path / "a", tmp_path / "p.npz")
    with pytest.raises(cc.CascadeError, match="no JPEG files"):
        jpeg_pack.pack(tmp_path / "missing", tmp_path / "p.npz")
    np.savez(tmp_path / "other.npz", images=np.zeros(3))
    assert jpeg_pack.main(["unpack", str(tmp_path / "other.npz"), str(tmp_path / "o")]) == 2
    assert "not a JPEG pack" in capsys.readouterr().err


def test_jpeg_pack_unpack_stays_inside_the_destination(tmp_path):
    src = _jpegs(tmp_path / "src", n=1)
    jpeg_pack.pack(src, tmp_path / "p.npz")
    z = dict(np.load(tmp_path / "p.npz"))
    z["names"] = np.array(["../escaped.jpg"])
    np.savez(tmp_path / "evil.npz", **z)
    with pytest.raises(cc.CascadeError, match="leaves the destination"):
        jpeg_pack.unpack(tmp_path / "evil.npz", tmp_path / "dst")
    assert not (tmp_path / "escaped.jpg").exists()


@pytest.fixture
def run_dirs(tmp_path, tiny_cascade):
    runs = {}
    for role, name in (("base", "cifar10-base16"), ("sr", "cifar10-sr16to32")):
        d = tmp_path / role
        d.mkdir()
        for step in (200, 1000):  # numeric order, not name order, decides the curve's order
            shutil.copy(tiny_cascade / f"{name}.safetensors", d / f"stage-{step:07d}.safetensors")
        (d / "stage-final.safetensors").write_bytes(b"")  # not a numbered checkpoint: ignored
        (d / "config.json").write_text('{"batch_size": 64}')
        runs[role] = d
    return runs


def test_stage_curve_samples_every_checkpoint_then_scores_them(tmp_path, tiny_cascade, run_dirs,
                                                              capsys):
    data = _jpegs(tmp_path / "data", n=4)
    sr = str(tiny_cascade / "cifar10-sr16to32.safetensors")
    base_out, sr_out = tmp_path / "b.npz", tmp_path / "s.npz"
    assert stage_curve.main(["sample", "--run", str(run_dirs["base"]), "--role", "base",
                             "--partner", sr, "--start", "7:" + sr.replace("sr16to32", "base16"),
                             "--num", "4", "--steps", "2", "--out", str(base_out),
                             "--offset-images", "500", "--device", "cpu"]) == 0
    assert stage_curve.main(["sample", "--run", str(run_dirs["sr"]), "--role", "sr", "--data",
                             str(data), "--num", "4", "--steps", "2", "--out", str(sr_out),
                             "--device", "cpu"]) == 0
    z = np.load(base_out)
    assert sorted(k for k in z.files if k.startswith("images_")) == [
        "images_1000", "images_200", "images_7"]
    assert z["images_200"].shape == (4, 32, 32, 3) and z["images_200"].dtype == np.uint8
    assert list(z["labels_200"]) == [0, 1, 2, 3]  # image i of class i mod 10
    # images seen: the start point is where the run began, checkpoints add step x batch
    assert [int(z[f"seen_{s}"]) for s in (7, 200, 1000)] == [500, 500 + 200 * 64, 500 + 64000]
    assert np.load(sr_out)["images_1000"].shape == (4, 32, 32, 3)
    capsys.readouterr()
    assert stage_curve.main(["score", str(base_out), str(sr_out), "--ref", str(data),
                             "--ref-num", "4", "--quick"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "SWD" in ln]
    assert [ln.split()[0] for ln in lines] == ["base"] * 3 + ["sr"] * 2
    assert "step      7" in lines[0] and "step   1000" in lines[2]


def test_stage_curve_needs_checkpoints_and_a_partner(tmp_path, run_dirs, capsys):
    assert stage_curve.main(["sample", "--run", str(tmp_path), "--role", "sr",
                             "--out", str(tmp_path / "x.npz")]) == 2
    assert "no checkpoints" in capsys.readouterr().err
    assert stage_curve.main(["sample", "--run", str(run_dirs["base"]), "--role", "base",
                             "--out", str(tmp_path / "x.npz")]) == 2
    assert "--partner" in capsys.readouterr().err
    (run_dirs["sr"] / "config.json").unlink()
    assert stage_curve.main(["sample", "--run", str(run_dirs["sr"]), "--role", "sr",
                             "--out", str(tmp_path / "x.npz")]) == 2
    assert "no training record" in capsys.readouterr().err
    (run_dirs["sr"] / "config.json").write_text('{"batch_size": 8}')
    assert stage_curve.main(["sample", "--run", str(run_dirs["sr"]), "--role", "sr", "--start",
                             "200:" + str(run_dirs["sr"] / "stage-0000200.safetensors"),
                             "--out", str(tmp_path / "x.npz")]) == 2
    assert "two points share a step" in capsys.readouterr().err
    np.savez(tmp_path / "other.npz", images=np.zeros(3))
    assert stage_curve.main(["score", str(tmp_path / "other.npz"), "--quick"]) == 2
    assert "not a curve file" in capsys.readouterr().err


def test_gpu_speed_quick_runs_its_cpu_rows(capsys):
    assert gpu_speed.main(["--quick", "--threads", "1"]) == 0
    rows = [ln for ln in capsys.readouterr().out.splitlines() if "img/s" in ln]
    assert [ln.split()[1] for ln in rows[:2]] == ["base", "base"]
    assert rows[0].rstrip().endswith("1.0x")  # every ratio is against the one-thread CPU row
    assert any(ln.startswith("render 30 + 30 steps") for ln in rows)


def test_eval_refuses_cuda_where_there_is_none(tiny_cascade, capsys, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert E.main(["--base", str(tiny_cascade / "cifar10-base16.safetensors"), "--ref", ".",
                   "--num", "2", "--device", "cuda"]) == 2
    assert "CUDA was requested but is not available" in capsys.readouterr().err
