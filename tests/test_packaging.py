"""Packaging: installing the project never puts a top-level `nodes` into site-packages."""
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


def test_wheel_has_no_top_level_nodes(tmp_path):
    # build from a copy: setuptools writes build/ and *.egg-info beside the sources
    src = tmp_path / "src"
    shutil.copytree(ROOT, src,
                    ignore=shutil.ignore_patterns(".git", ".venv", "weights", "bench", "tests",
                                                             "__pycache__", "build", "*.egg-info"))
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps",
                          "--no-build-isolation",
                          "-q", "-w", str(tmp_path)], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    wheel = next(tmp_path.glob("*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.endswith(".dist-info/")}
    tops = {t for t in tops if not t.endswith(".dist-info")}
    assert tops == {"cascade_core", "train"}
    for sub in ("cascade_core/process/schedules.py", "cascade_core/models/unet.py",
                "cascade_core/formats/adm.py", "cascade_core/formats/data/imagenet_classes.txt",
                "train/metrics/__init__.py"):
        assert sub in names, sub  # sub-packages and data install too
