import os
import sys
from pathlib import Path

# one intra-op thread per test process (and per process a test starts): tiny models gain nothing
# from more, and on a loaded machine two threads per process oversubscribe the cores and run
# many times slower (the suite's budget, 5 minutes on 2 cores, assumes this)
os.environ.setdefault("OMP_NUM_THREADS", "1")
# "auto" precision means fp32 in the tests whatever this CPU has, so that their numbers do not
# depend on the machine (tests/test_precision.py lifts this to check what auto resolves to)
os.environ["CASCADE_DTYPE"] = "fp32"

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(ROOT), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

CIFAR_CLASSES = tuple("airplane automobile bird cat deer dog frog horse ship truck".split())


@pytest.fixture(scope="session")
def tiny_cascade(tmp_path_factory):
    """Random-weight stages saved under the shipped file names, plus an example input image."""
    from helpers import tiny_stage
    from PIL import Image

    import cascade_core as cc

    d = tmp_path_factory.mktemp("stages")
    cc.save_stage(tiny_stage(resolution=16, num_classes=10, class_names=CIFAR_CLASSES),
                  d / "cifar10-base16.safetensors")
    cc.save_stage(tiny_stage("sr", 32, 16, num_classes=10, class_names=CIFAR_CLASSES, seed=1),
                  d / "cifar10-sr16to32.safetensors")
    cc.save_stage(tiny_stage("refiner", 32, 32, seed=2), d / "cifar10-refiner32.safetensors")
    from nodes.headless.builder import BASE_FEW, FEW_STEPS, SR_FEW
    distilled = cc.SamplingConfig("ddim", FEW_STEPS, "trailing")  # workflow 12's students
    cc.save_stage(tiny_stage(resolution=16, num_classes=10, class_names=CIFAR_CLASSES,
                             sampling=distilled, seed=3), d / BASE_FEW)
    cc.save_stage(tiny_stage("sr", 32, 16, num_classes=10, class_names=CIFAR_CLASSES,
                             sampling=distilled, seed=4), d / SR_FEW)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(
        d / "cdm_example_16px.png")
    from nodes import comfy_bridge
    comfy_bridge.add_stage_dir(d)
    return d
