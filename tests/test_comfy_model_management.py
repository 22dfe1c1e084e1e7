"""Inside ComfyUI a stage is one of its loaded models: a ``ModelPatcher`` made once per stage,
loaded through ``load_models_gpu`` and held by model management only weakly. ComfyUI itself is
not importable here, so its two modules are stood in by recorders with the same calls; the real
server is measured by ``python -m bench.comfyui_free``."""
import gc
import types
import weakref

import pytest
import torch

from nodes import comfy_bridge as bridge
from tests.helpers import tiny_stage


class Patcher:
    """Records what ComfyUI's ModelPatcher is given, and writes ``device`` on the model as the
    real one does on load."""

    def __init__(self, model, load_device, offload_device):
        self.model, self.load_device, self.offload_device = model, load_device, offload_device
        model.device = offload_device


@pytest.fixture
def comfy(monkeypatch):
    calls = []
    held = []  # ComfyUI's current_loaded_models keeps weak references to patchers

    def load_models_gpu(models, force_full_load=False):
        calls.append((models, force_full_load))
        held.extend(weakref.ref(m) for m in models)

    mm = types.SimpleNamespace(load_models_gpu=load_models_gpu,
                               get_torch_device=lambda: torch.device("cpu"),
                               unet_offload_device=lambda: torch.device("cpu"))
    monkeypatch.setattr(bridge, "mm", mm)
    monkeypatch.setattr(bridge, "model_patcher", types.SimpleNamespace(ModelPatcher=Patcher))
    return types.SimpleNamespace(calls=calls, held=held)


def test_a_stage_is_loaded_through_one_patcher_made_once(comfy):
    stage = tiny_stage()
    for _ in range(2):
        with bridge.on_compute_device(stage) as device:
            assert device == torch.device("cpu")
    (first, full1), (second, full2) = comfy.calls
    assert first[0] is second[0] and full1 and full2
    patcher = first[0]
    assert isinstance(patcher.model, bridge.ComfyStage) and patcher.model.stage is stage
    assert patcher.model.device == torch.device("cpu")  # the attribute a Stage cannot take
    assert sum(p.numel() for p in patcher.model.parameters()) == stage.num_parameters()


def test_model_management_does_not_keep_a_dropped_stage_alive(comfy):
    stage = tiny_stage()
    with bridge.on_compute_device(stage):
        pass
    alive = weakref.ref(stage)
    comfy.calls.clear()
    del stage
    gc.collect()
    assert alive() is None and comfy.held[0]() is None


def test_a_release_without_force_full_load_gets_the_plain_call(comfy, monkeypatch):
    seen = []
    monkeypatch.setattr(bridge.mm, "load_models_gpu", lambda models: seen.append(models))
    with bridge.on_compute_device(tiny_stage()):
        pass
    assert len(seen) == 1


def test_headless_the_stage_goes_back_to_the_offload_device(monkeypatch):
    moves = []
    stage = tiny_stage()
    monkeypatch.setattr(stage, "to", lambda device: moves.append(str(device)))
    monkeypatch.setattr(bridge, "offload_device", lambda: torch.device("meta"))
    with bridge.on_compute_device(stage):
        assert moves == ["cpu"]
    assert moves == ["cpu", "meta"]
