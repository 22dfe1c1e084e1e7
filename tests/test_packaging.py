"""Packaging: installing the project never puts a top-level `nodes` into site-packages."""
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_declares_dependencies_and_comfy_registry():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    deps = " ".join(meta["project"]["dependencies"])
    for name in ("torch", "safetensors", "numpy", "pillow", "einops", "kornia"):
        assert name in deps
    assert meta["tool"]["comfy"]["PublisherId"] and meta["tool"]["comfy"]["DisplayName"]
    reqs = (ROOT / "requirements.txt").read_text()
    assert "torch" not in reqs.replace("# What ComfyUI-Manager installs for the pack. torch is not "
                                       "listed", "")


def test_wheel_has_no_top_level_nodes_or_train_and_its_training_runs_installed(tmp_path):
    """The wheel installs the engine and the training code under the project's own name, never a
    top-level ``nodes`` (ComfyUI's) or ``train`` (a user's); every package of the source tree is
    in it, and the installed training entry point runs without the repository."""
    # build from a copy: setuptools writes build/ and *.egg-info beside the sources
    src = tmp_path / "src"
    shutil.copytree(ROOT, src,
                    ignore=shutil.ignore_patterns(".git", ".venv", "weights", "bench", "tests",
                                                  "__pycache__", "build", "*.egg-info", "runs"))
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps",
                          "--no-build-isolation",
                          "-q", "-w", str(tmp_path)], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    wheel = next(tmp_path.glob("*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.endswith(".dist-info/")}
    tops = {t for t in tops if not t.endswith(".dist-info")}
    assert tops == {"cascade_core", "comfyui_cascaded_diffusion_train"}
    packages = {p.parent.relative_to(ROOT).as_posix() for d in ("cascade_core", "train")
                for p in (ROOT / d).rglob("__init__.py")}
    for package in packages:  # every sub-package of the source tree, none forgotten
        installed = package.replace("train", "comfyui_cascaded_diffusion_train", 1) \
            if package.startswith("train") else package
        assert f"{installed}/__init__.py" in names, package
    assert "cascade_core/formats/data/imagenet_classes.txt" in names
    target = tmp_path / "site"
    res = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                          str(target), str(wheel)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    entry = "comfyui_cascaded_diffusion_train.stage2"
    res = subprocess.run([sys.executable, "-m", entry, "--help"], capture_output=True, text=True,
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(target)})
    assert res.returncode == 0 and "super-resolution stage" in res.stdout, res.stderr[-2000:]


def test_registry_metadata_is_complete_and_sources_avoid_exec():
    """What `comfy node validate` checks (it passed on comfy-cli 1.23): an icon, the OS and
    accelerator classifiers, the oldest ComfyUI, and no exec/eval in any source file."""
    import re
    root = ROOT
    meta = tomllib.loads((root / "pyproject.toml").read_text())
    comfy = meta["tool"]["comfy"]
    assert comfy["Icon"].endswith("/main/docs/icon.png") and (root / "docs" / "icon.png").is_file()
    assert comfy["requires-comfyui"].startswith(">=")
    classifiers = meta["project"]["classifiers"]
    assert any(c.startswith("Operating System :: ") for c in classifiers)
    assert "Environment :: GPU :: NVIDIA CUDA" in classifiers
    sources = [p for p in root.rglob("*.py") if ".venv" not in p.parts and "ci-check" not in
               p.parts]
    used = [str(p.relative_to(root)) for p in sources
            if re.search(r"(?<![\w.])(exec|eval)\(", p.read_text())]
    assert used == []
