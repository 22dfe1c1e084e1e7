import subprocess
import sys
import textwrap

import pytest
import torch

import cascade_core as cc
from nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from nodes import comfy_bridge as bridge
from nodes.images import from_comfy, to_comfy
from nodes.stage_nodes import load

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN"}


@pytest.mark.parametrize("node_id", sorted(NODE_CLASS_MAPPINGS))
def test_node_declarations_are_well_formed(node_id, tiny_cascade):
    cls = NODE_CLASS_MAPPINGS[node_id]
    assert node_id.startswith("CDM") and NODE_DISPLAY_NAME_MAPPINGS[node_id]
    spec = cls.INPUT_TYPES()
    assert set(spec) <= {"required", "optional", "hidden"} and spec["required"]
    for name, decl in spec["required"].items():
        assert isinstance(decl, tuple) and 1 <= len(decl) <= 2, name
        typ = decl[0]
        assert isinstance(typ, (str, list)), name
        opts = decl[1] if len(decl) == 2 else {}
        if typ in ("INT", "FLOAT"):
            assert opts["min"] <= opts["default"] <= opts["max"], name
        if isinstance(typ, list) and "default" in opts:
            assert opts["default"] in typ, name
    assert isinstance(cls.RETURN_TYPES, tuple) and all(isinstance(t, str) for t in cls.RETURN_TYPES)
    assert len(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)) == len(cls.RETURN_TYPES)
    assert callable(getattr(cls, cls.FUNCTION)) and cls.CATEGORY == "pixel-space cascade"


@pytest.mark.parametrize("name", sorted(NODE_CLASS_MAPPINGS))
def test_every_input_has_a_tooltip_and_every_node_a_description(name):
    cls = NODE_CLASS_MAPPINGS[name]
    spec = cls.INPUT_TYPES()
    for section in ("required", "optional"):
        for inp, decl in spec.get(section, {}).items():
            tip = decl[1].get("tooltip", "") if len(decl) > 1 else ""
            assert len(tip) >= 15, f"{name}.{inp} has no tooltip"
    assert len(getattr(cls, "DESCRIPTION", "")) >= 60, f"{name} has no description"
    assert len(getattr(cls, "OUTPUT_TOOLTIPS", ())) == len(cls.RETURN_TYPES), name
    assert all(len(t) >= 10 for t in cls.OUTPUT_TOOLTIPS), name


def test_display_names_share_one_style_and_ids_stay():
    from nodes import NODE_DISPLAY_NAME_MAPPINGS
    assert set(NODE_DISPLAY_NAME_MAPPINGS) == set(NODE_CLASS_MAPPINGS)
    for node_id, shown in NODE_DISPLAY_NAME_MAPPINGS.items():
        assert node_id.startswith("CDM") and shown.startswith("CDM "), shown
        words = shown.removeprefix("CDM ").replace("(", "").split()
        assert all(w[0].isupper() for w in words), f"{shown}: every word capitalised"


def _stage(name):
    return load(name)


def _sample(seed=3, batch=3, classes="cat, dog, ship", **kw):
    node = NODE_CLASS_MAPPINGS["CDMBaseSampler"]()
    args = dict(stage=_stage("cifar10-base16.safetensors"), seed=seed, steps=3,
                sampler_name="ddpm", spacing="karras",
                class_name=classes, guidance=1.0, batch_size=batch, truncate_s=0.0, dtype="fp32")
    args.update(kw)
    return node.sample(**args)


def test_base_sampler_outputs_comfy_images_and_lowres(tiny_cascade):
    image, lowres = _sample()
    assert image.shape == (3, 16, 16, 3) and image.dtype == torch.float32
    assert float(image.min()) >= 0 and float(image.max()) <= 1
    assert lowres.image.shape == (3, 3, 16, 16) and lowres.labels.tolist() == [3, 5, 8]


def test_seed_reproduces_and_batch_index_stream(tiny_cascade):
    a, _ = _sample(seed=3)
    b, _ = _sample(seed=3)
    assert torch.equal(a, b)
    alone, _ = _sample(seed=5, batch=1, classes="ship")
    assert torch.allclose(a[2], alone[0], atol=1e-5)


def test_truncated_path_carries_z_s(tiny_cascade):
    """With truncate_s the node hands over z_s, the sampler's state at level s (in the VP scale
    of q(z_s | z_0)), not its clean estimate: the engine's truncated run, exactly; and where s
    lies above the whole grid, z_s is the start noise itself."""
    image, lowres = _sample(truncate_s=0.3)
    assert torch.allclose(lowres.level, torch.full((3,), 0.3))
    stage = _stage("cifar10-base16.safetensors").stage
    labels = cc.parse_classes(stage.config, "cat, dog, ship", 3)
    plan = cc.SamplingPlan(steps=3, sampler="ddpm", start=cc.Start.truncated(0.3))
    want_image, want = cc.generate(stage, plan, cc.Conditioning.for_base(3, labels), seed=3)
    assert torch.equal(lowres.image, want.image)
    assert not torch.allclose(lowres.image, want_image)  # z_s, not the clean estimate
    _, noise_only = _sample(truncate_s=0.999)
    start = cc.NoiseSource.from_seed(3, 3).randn((3, 16, 16))
    assert torch.equal(noise_only.image, start)


def test_chain_sr_twice_on_a_batch(tiny_cascade):
    image, _ = _sample(batch=2, classes="cat")
    aug = NODE_CLASS_MAPPINGS["CDMCondAugment"]()
    sr = NODE_CLASS_MAPPINGS["CDMSuperResStage"]()
    stage = _stage("cifar10-sr16to32.safetensors")
    args = dict(seed=1, steps=2, sampler_name="euler", spacing="karras", class_name="from input",
                guidance=1.0, size_mismatch="error", dtype="fp32")
    (x32,) = sr.upscale(stage, aug.augment(image, 0.1, 0.0, seed=0)[0], **args)
    (x64,) = sr.upscale(stage, aug.augment(x32, 0.1, 0.0, seed=0)[0], **args)
    assert x32.shape == (2, 32, 32, 3) and x64.shape == (2, 64, 64, 3)
    (ref,) = NODE_CLASS_MAPPINGS["CDMRefiner"]().refine(
        _stage("cifar10-refiner32.safetensors"), x32, strength=0.4, steps=2, seed=0,
        sampler_name="dpmpp_2m",
        spacing="karras", class_name="unconditional", guidance=1.0, s=0.05, dtype="fp32")
    assert ref.shape == x32.shape


def test_interrupt_stops_sampling_within_a_step(tiny_cascade, monkeypatch):
    seen = []
    original = bridge.Progress.__call__

    def progress(self, info):
        seen.append(info["i"])
        if info["i"] == 1:
            bridge.request_interrupt()  # what the queue's interrupt does mid-run
        original(self, info)

    monkeypatch.setattr(bridge.Progress, "__call__", progress)
    with pytest.raises(cc.SamplingInterrupted):
        _sample(steps=10)
    assert seen == [0, 1]
    monkeypatch.setattr(bridge.Progress, "__call__", original)
    image, _ = _sample()  # the flag is consumed: the next run completes
    assert image.shape[0] == 3


def test_wrong_stage_for_node(tiny_cascade):
    with pytest.raises(cc.CascadeError, match="needs a base stage.*found a sr 16->32px"):
        _sample(stage=_stage("cifar10-sr16to32.safetensors"))


def test_unknown_class_lists_valid_names(tiny_cascade):
    with pytest.raises(cc.CascadeError, match="unknown class 'unicorn'.*airplane"):
        _sample(classes="unicorn")


def test_size_mismatch_error_and_resize(tmp_path):
    st = cc.Stage(cc.StageConfig(role="sr", resolution=32, low_res=16,
                                 unet=cc.UNetConfig(8, (1, 2, 2, 2), 1, attention_resolutions=())))
    cc.save_stage(st, tmp_path / "deep-sr.safetensors")
    bridge.add_stage_dir(tmp_path)
    stage = load("deep-sr.safetensors")
    lowres = cc.make_condition(torch.zeros(1, 3, 10, 10), 0.1, 0)
    sr = NODE_CLASS_MAPPINGS["CDMSuperResStage"]()
    args = dict(seed=0, steps=2, sampler_name="euler", spacing="karras",
                class_name="unconditional", guidance=1.0, dtype="fp32")
    with pytest.raises(cc.CascadeError,
                       match=r"20x20 does not fit.*multiples of 8 \(e\.g\. \[8, 16, 24\]\)"):
        sr.upscale(stage, lowres, size_mismatch="error", **args)
    (out,) = sr.upscale(stage, lowres, size_mismatch="resize to fit", **args)
    assert out.shape == (1, 24, 24, 3)


def test_missing_stage_file_lists_available(tiny_cascade):
    with pytest.raises(cc.CheckpointError, match="not found.*cifar10-base16"):
        load("nope.safetensors")


def test_bad_values_raise(tiny_cascade):
    with pytest.raises(cc.CascadeError, match="out of range"):
        NODE_CLASS_MAPPINGS["CDMCondAugment"]().augment(torch.zeros(1, 8, 8, 3), 1.5, 0.0, seed=0)
    with pytest.raises(cc.CascadeError, match="not a ComfyUI IMAGE"):
        NODE_CLASS_MAPPINGS["CDMCondAugment"]().augment(torch.zeros(8, 8), 0.1, 0.0, seed=0)
    with pytest.raises(cc.CascadeError, match=r"fp16 is not computed natively on cpu.*expected "
                                              r"one of \['fp32'"):
        _sample(dtype="fp16")


def test_stage_info_describes(tiny_cascade):
    out = NODE_CLASS_MAPPINGS["CDMStageInfo"]().info(_stage("cifar10-sr16to32.safetensors"))
    text = out["result"][0]
    assert "sr 16->32px" in text and "airplane" in text and "augmentation" in text
    assert out["ui"]["text"] == [text]


def test_stage_info_reads_as_a_summary_with_the_raw_record_last():
    from nodes.stage_nodes import training_summary
    record = {"steps": 1300, "batch_size": 1024, "lr": 0.00024, "device": "one H100",
              "data": "cifar10/train", "images_seen_total": 6339264,
              "parent": {"steps": 7439, "batch_size": 64, "lr": 0.0004}}
    assert training_summary(record) == [
        "trained: 1,300 steps, batch 1024, lr 0.00024, on one H100",
        "  continued from: 7,439 steps, batch 64, lr 0.0004",
        "data: cifar10/train, 6,339,264 images seen in all"]
    from nodes.stage_nodes import LoadedStage, describe
    shipped = ROOT / "weights" / "cifar10-base16.safetensors"  # its record nests three parents
    text = describe(LoadedStage(cc.load_stage(shipped), str(shipped)))
    summary, raw = text.split("raw training record:")
    assert "trained: " in summary and "{" not in summary
    assert raw.strip().startswith("{") and '"parent"' in raw


def test_image_conversion_round_trip():
    img = torch.rand(2, 5, 7, 3)
    x = from_comfy(img)
    assert x.shape == (2, 3, 5, 7) and float(x.min()) >= -1 and float(x.max()) <= 1
    assert torch.allclose(to_comfy(x), img, atol=1e-6)


def test_pack_imports_as_any_package_without_shadowing_comfy_nodes(tmp_path):
    code = textwrap.dedent(f"""
        import importlib.util, sys, types
        sys.path = [p for p in sys.path if p not in ("", {str(ROOT)!r})]
        fake = types.ModuleType("nodes"); fake.COMFY = True; sys.modules["nodes"] = fake
        spec = importlib.util.spec_from_file_location(
            "Some-Pack_Folder", {str(ROOT / "__init__.py")!r},
            submodule_search_locations=[{str(ROOT)!r}])
        pack = importlib.util.module_from_spec(spec); sys.modules[spec.name] = pack
        spec.loader.exec_module(pack)
        assert sys.modules["nodes"] is fake, "the pack replaced ComfyUI's nodes module"
        assert "cascade_core" not in sys.modules and "Some-Pack_Folder.cascade_core" in sys.modules
        print(sorted(pack.NODE_CLASS_MAPPINGS))
    """)
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "CDMBaseSampler" in res.stdout


def test_loading_in_comfyui_creates_the_model_folder_and_example_inputs(tmp_path, monkeypatch):
    """What a fresh ComfyUI install needs from the pack at load: models/cascade exists, the
    workflows' example images are in ComfyUI's input folder (LoadImage reads only there), and a
    file a user already has there is never overwritten."""
    from types import SimpleNamespace

    from nodes import comfy_bridge

    inputs = tmp_path / "input"
    inputs.mkdir()
    (inputs / "cdm_example_16px.png").write_bytes(b"the user's own file")
    fake = SimpleNamespace(models_dir=str(tmp_path / "models"), folder_names_and_paths={},
                           get_input_directory=lambda: str(inputs))
    monkeypatch.setattr(comfy_bridge, "folder_paths", fake)
    comfy_bridge.register_model_folder()
    assert (tmp_path / "models" / "cascade").is_dir()
    assert fake.folder_names_and_paths["cascade"][1] == {".safetensors", ".pt", ".pth", ".json",
                                                         ".yml"}
    shipped = sorted(p.name for p in (ROOT / "workflows").glob("cdm_example_*.png"))
    assert shipped and sorted(p.name for p in inputs.iterdir()) == shipped
    assert (inputs / "cdm_example_16px.png").read_bytes() == b"the user's own file"


def test_stage_cache_keeps_a_cascade_loaded_and_drops_the_least_recently_used(tiny_cascade):
    from nodes import stage_nodes
    names = ["cifar10-base16.safetensors", "cifar10-sr16to32.safetensors",
             "cifar10-refiner32.safetensors"]
    first = [load(n) for n in names]
    assert [load(n) for n in names] == first and all(a is b for a, b in
                                                      zip(first, [load(n) for n in names]))
    load(names[0])  # now the most recently used: a fourth stage evicts the SR stage instead
    load(names[0], compile=False)
    stage_nodes.load(names[0], compile=True)  # a separate entry: the cache is full
    kept = [k for k in stage_nodes._cache if k[0] == "stage"]
    assert len(kept) == stage_nodes.KEEP_EACH
    assert load(names[0]) is first[0] and load(names[2]) is first[2]
    assert load(names[1]) is not first[1]  # it was the least recently used: reloaded


def test_inside_comfyui_the_pack_keeps_no_stage_of_its_own(tiny_cascade, monkeypatch):
    """ComfyUI's /free drops its caches' references; ours would keep the stage alive."""
    import gc
    import weakref

    from nodes import stage_nodes
    monkeypatch.setattr(bridge, "caches_stages", lambda: False)
    monkeypatch.setattr(stage_nodes, "_cache", {})
    loaded = load("cifar10-base16.safetensors")
    assert load("cifar10-base16.safetensors") is not loaded and stage_nodes._cache == {}
    alive = weakref.ref(loaded.stage)
    del loaded
    gc.collect()
    assert alive() is None  # dropping ComfyUI's reference frees the stage
