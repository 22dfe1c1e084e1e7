import json
from pathlib import Path

import pytest
from PIL import Image

from nodes import NODE_CLASS_MAPPINGS
from nodes.headless.builder import SHIPPED
from nodes.headless.executor import CLASSES, run
from nodes.headless.graph import WorkflowError, declared_inputs, has_control, is_widget, to_prompt
from nodes.run_workflow import main

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / "workflows").glob("*.json"))
CIFAR = [p for p in WORKFLOWS if p.name[:2] in ("01", "02", "03", "04", "12")]
RELEASED = [p for p in WORKFLOWS if p.name[:2] in ("05", "06")]
EXPECTED = {  # workflow -> {filename prefix: (count, size)}
    "01_base_then_sr.json": {"base_sr": (8, 32), "preview": (8, 16)},
    "12_few_step_cascade.json": {"few_step": (8, 32), "preview": (8, 16)},
    "02_full_cascade.json": {"cascade64": (4, 64), "preview": (4, 32)},
    "03_upscale_your_image.json": {"upscaled": (1, 32), "preview": (1, 32)},
    "04_augmentation_sweep.json": {"sweep_s0.00": (4, 32), "sweep_s0.15": (4, 32),
                                   "sweep_s0.40": (4, 32), "preview": (4, 16)},
}


def test_six_workflows_are_shipped_and_match_the_builder():
    assert [p.name for p in WORKFLOWS] == sorted(SHIPPED)
    for p in WORKFLOWS:
        stale = f"{p.name} is stale: python -m nodes.headless.builder"
        assert json.loads(p.read_text()) == SHIPPED[p.name](), stale


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_is_well_formed(path):
    wf = json.loads(path.read_text())
    assert wf["version"] == 0.4 and any(n["type"] == "Note" for n in wf["nodes"])
    link_ids = {link[0] for link in wf["links"]}
    for node in wf["nodes"]:
        if node["type"] not in NODE_CLASS_MAPPINGS:
            continue
        declared = declared_inputs(NODE_CLASS_MAPPINGS[node["type"]])
        widgets = [(n, o) for n, t, o, _ in declared if is_widget(t)]
        controls = sum(has_control(n, o) for n, o in widgets)
        assert len(node["widgets_values"]) == len(widgets) + controls, node["id"]
        optional = {n for n, t, _, required in declared if not required}
        for inp in node["inputs"]:
            if inp["link"] is None:  # unconnected: only optional inputs may be
                assert inp["name"] in optional, (node["id"], inp["name"])
            else:
                assert inp["link"] in link_ids, (node["id"], inp["name"])


@pytest.mark.parametrize("path", CIFAR, ids=lambda p: p.name)
def test_workflow_runs_headless_with_tiny_stages(path, tiny_cascade, tmp_path):
    saved = run(path, tmp_path, ["steps=2"], [tiny_cascade], [tiny_cascade])
    counts = {}
    for p in saved:
        prefix = p.name.rsplit("_", 2)[0]
        counts.setdefault(prefix, []).append(Image.open(p).size)
    assert {k: len(v) for k, v in counts.items()} == {k: n for k,
                                                      (n, _) in EXPECTED[path.name].items()}
    for prefix, sizes in counts.items():
        assert set(sizes) == {(EXPECTED[path.name][prefix][1],) * 2}


def test_png_embeds_prompt_and_workflow(tiny_cascade, tmp_path):
    saved = run(WORKFLOWS[0], tmp_path, ["steps=2", "3.seed=11"], [tiny_cascade])
    info = Image.open(saved[-1]).info
    prompt, workflow = json.loads(info["prompt"]), json.loads(info["workflow"])
    assert prompt["3"]["class_type"] == "CDMBaseSampler" and prompt["3"]["inputs"]["seed"] == 11
    assert prompt["4"]["inputs"]["lowres"] == ["3", 1]
    # the base sampler's seed randomizes after a Run in ComfyUI; the SR stage's stays
    assert next(n for n in workflow["nodes"] if n["id"] == 3)["widgets_values"][:2] == [
        11, "randomize"]
    sr_values = next(n for n in workflow["nodes"] if n["id"] == 4)["widgets_values"]
    assert "fixed" in sr_values and "randomize" not in sr_values


def test_seed_override_reproduces(tiny_cascade, tmp_path):
    a = run(WORKFLOWS[0], tmp_path / "a", ["steps=2", "seed=4"], [tiny_cascade])
    b = run(WORKFLOWS[0], tmp_path / "b", ["steps=2", "seed=4"], [tiny_cascade])
    c = run(WORKFLOWS[0], tmp_path / "c", ["steps=2", "seed=5"], [tiny_cascade])
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    assert a[-1].read_bytes() != c[-1].read_bytes()


def test_unknown_node_is_named(tmp_path):
    wf = json.loads(WORKFLOWS[0].read_text())
    wf["nodes"][2]["type"] = "KSamplerAdvancedPlus"
    with pytest.raises(WorkflowError, match="node 3 .*unknown node type"):
        to_prompt(wf, CLASSES)


def test_bad_overrides_and_main_exit_code(tiny_cascade, tmp_path, capsys):
    with pytest.raises(WorkflowError, match="no node has that widget"):
        run(WORKFLOWS[0], tmp_path, ["cfg_scale=3"], [tiny_cascade])
    with pytest.raises(WorkflowError, match="bad value for sampler_name"):
        run(WORKFLOWS[0], tmp_path, ["sampler_name=plms"], [tiny_cascade])
    assert main([str(WORKFLOWS[0]), "--out", str(tmp_path), "--set", "steps=x", "--stages",
                 str(tiny_cascade)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "steps" in err


def test_grid_output(tiny_cascade, tmp_path):
    grid = tmp_path / "grid.png"
    assert main([str(WORKFLOWS[0]), "--out", str(tmp_path / "o"), "--set", "steps=2", "--stages",
                 str(tiny_cascade), "--grid", str(grid), "--grid-cols", "4"]) == 0
    assert Image.open(grid).size == (4 * 34, 2 * 34)


def test_widgets_renamed_in_0_2_keep_working(tiny_cascade, tmp_path):
    """``sampler`` is now ``sampler_name`` and ``schedule`` is ``spacing``: the old names, in --set
    and in dict-valued widgets, still reach the same widget."""
    from nodes.headless.graph import set_widget

    wf = json.loads(WORKFLOWS[0].read_text())
    assert set_widget(wf, CLASSES, "BaseSampler.schedule", "uniform") == 1
    assert set_widget(wf, CLASSES, "BaseSampler.sampler", "euler") == 1
    base = next(n for n in to_prompt(wf, CLASSES).values() if n["class_type"] == "CDMBaseSampler")
    assert base["inputs"]["spacing"] == "uniform" and base["inputs"]["sampler_name"] == "euler"
    node = next(n for n in wf["nodes"] if n["type"] == "CDMBaseSampler")
    old = dict(zip(("seed", "steps", "sampler", "schedule"), (3, 2, "heun", "ddim")))
    node["widgets_values"] = {**old, "class_name": "cat", "guidance": 1.0, "batch_size": 1,
                              "truncate_s": 0.0, "dtype": "fp32"}
    inputs = to_prompt(wf, CLASSES)[str(node["id"])]["inputs"]
    assert (inputs["sampler_name"], inputs["spacing"], inputs["steps"]) == ("heun", "ddim", 2)


TITLE_H, SLOT_H = 30, 20  # LiteGraph: the title bar sits above pos; slots are 20 px apart


def rect(node):
    x, y = node["pos"]
    w, h = node["size"]
    return x, y - TITLE_H, x + w, y + h


def segment_hits_rect(a, b, r, samples=200):
    """Whether the straight segment a-b passes through rectangle r (sampled finely)."""
    x0, y0, x1, y1 = r
    for k in range(samples + 1):
        t = k / samples
        x, y = a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])
        if x0 < x < x1 and y0 < y < y1:
            return True
    return False


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_layout_is_readable(path):
    """Opens at >= 65% zoom in a 1920x1080 window (text stays readable there; the sweep's three
    rows of SR nodes are spaced for Nodes 2.0, which draws nodes taller than their stored
    size); no node covers another; no wire runs under a node it does not connect."""
    wf = json.loads(path.read_text())
    assert wf["extra"]["ds"]["scale"] >= 0.65
    nodes = {n["id"]: n for n in wf["nodes"]}
    ids = sorted(nodes)
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            ra, rb = rect(nodes[a]), rect(nodes[b])
            overlap = ra[0] < rb[2] and rb[0] < ra[2] and ra[1] < rb[3] and rb[1] < ra[3]
            assert not overlap, f"nodes {a} and {b} overlap"
    for _, src, slot, dst, dst_slot, _ in wf["links"]:
        s, d = nodes[src], nodes[dst]
        start = (s["pos"][0] + s["size"][0], s["pos"][1] + 10 + SLOT_H * slot)
        end = (d["pos"][0], d["pos"][1] + 10 + SLOT_H * dst_slot)
        for nid in ids:
            if nid not in (src, dst):
                assert not segment_hits_rect(start, end, rect(nodes[nid])), (
                    f"the wire {src}->{dst} runs under node {nid}")


def test_every_workflow_has_a_template_thumbnail():
    for path in WORKFLOWS:
        assert path.with_suffix(".jpg").is_file(), "python -m nodes.headless.thumbnails"
