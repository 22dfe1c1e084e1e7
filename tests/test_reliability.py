"""Faults a careless or malicious user meets, each refused or survived as the guarantees say:
output files never overwritten nor written outside, nothing half-written."""
from __future__ import annotations

import errno
import hashlib
from pathlib import Path

import pytest
from test_runner_guards import write

from nodes.headless import png_writer
from nodes.headless.executor import run
from nodes.headless.graph import WorkflowError

TINY = ["steps=2", "SuperResStage.steps=2"]
WORKFLOWS = Path(__file__).resolve().parents[1] / "workflows"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_saving_follows_the_highest_number_and_never_overwrites(tiny_cascade, tmp_path):
    wf, out = write(tmp_path, "01"), tmp_path / "out"
    run(wf, out, [*TINY, "batch_size=2"], stage_dirs=[tiny_cascade])
    first, second = out / "cdm" / "base_sr_00001_.png", out / "cdm" / "base_sr_00002_.png"
    kept = digest(second)
    first.unlink()
    saved = run(wf, out, [*TINY, "batch_size=1", "seed=99"], stage_dirs=[tiny_cascade])
    assert [p.name for p in saved if p.parent.name == "cdm"] == ["base_sr_00003_.png"]
    assert digest(second) == kept and not first.exists()


def test_a_prefix_with_brackets_numbers_on(tiny_cascade, tmp_path):
    wf, out = write(tmp_path, "01"), tmp_path / "out"
    for _ in range(2):
        run(wf, out, [*TINY, "batch_size=1", "filename_prefix=run[1]"],
            stage_dirs=[tiny_cascade])
    assert sorted(p.name for p in out.glob("run*.png")) == ["run[1]_00001_.png",
                                                            "run[1]_00002_.png"]


@pytest.mark.parametrize("prefix,message", [
    (".", "names a folder, not a file"), ("x/..", "names a folder, not a file"),
    ("a\0b", "control character"), ("p" * 300, "too long"),
    ("../up", "must stay inside the output folder")])
def test_bad_prefixes_are_refused_before_sampling(tiny_cascade, tmp_path, prefix, message):
    wf, out = write(tmp_path, "01"), tmp_path / "deep" / "out"
    with pytest.raises(WorkflowError, match=message):
        run(wf, out, [*TINY, f"filename_prefix={prefix}"], stage_dirs=[tiny_cascade])
    assert not (tmp_path / "deep").exists()  # no previews/, nothing in the parent either


def test_out_that_is_a_file_is_refused_before_sampling(tiny_cascade, tmp_path):
    (tmp_path / "out").write_text("not a folder")
    with pytest.raises(WorkflowError, match="--out is a file"):
        run(write(tmp_path, "01"), tmp_path / "out", TINY, stage_dirs=[tiny_cascade])


def test_a_full_disk_leaves_no_partial_png(tiny_cascade, tmp_path, monkeypatch):
    real = png_writer.os.fdopen

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(png_writer.os, "fdopen", lambda fd, mode: Full(real(fd, mode)))
    out = tmp_path / "out"
    with pytest.raises(WorkflowError, match="No space left on device.*nothing partial"):
        run(write(tmp_path, "01"), out, TINY, stage_dirs=[tiny_cascade])
    assert not [p for p in out.rglob("*") if p.is_file()]  # no 0-byte PNG, no temp file


# ---- training folders ------------------------------------------------------------------------

def train_run(data, out, *extra):
    from test_train import run
    return run("base", data, out, "--resolution", "8", "--steps", "4", "--checkpoint-every", "2",
               *extra)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from test_train import make_folder
    return make_folder(tmp_path_factory.mktemp("rdata"), per_class=2, size=8)


def test_a_second_run_on_a_folder_in_use_is_refused_naming_the_first(data, tmp_path, capsys):
    import os

    from train.folder_lock import run_lock
    with run_lock(tmp_path):  # the first run, as far as the folder can tell
        assert train_run(data, tmp_path) == 2
    err = capsys.readouterr().err
    assert f"another training run is writing into {tmp_path} (process {os.getpid()})" in err
    assert not (tmp_path / "config.json").exists() and not list(tmp_path.glob("state-*"))
    assert train_run(data, tmp_path) == 0  # released with the first run


def test_a_killed_run_leaves_no_stale_lock(tmp_path):
    import signal
    import subprocess
    import sys
    import time
    code = ("import sys, time; from pathlib import Path; from train.folder_lock import run_lock\n"
            "with run_lock(Path(sys.argv[1])):\n    print('locked', flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                             text=True, cwd=Path(__file__).resolve().parents[1])
    assert child.stdout.readline().strip() == "locked"
    from train.folder_lock import run_lock
    with pytest.raises(Exception, match=f"process {child.pid}"), run_lock(tmp_path):
        pass
    child.send_signal(signal.SIGKILL)
    child.wait()
    time.sleep(0.1)
    with run_lock(tmp_path):  # the OS released it with the process
        pass


def test_look_alike_files_are_ignored_and_a_truncated_state_falls_back(data, tmp_path, capsys):
    (tmp_path / "stage-best.safetensors").write_bytes(b"mine")
    (tmp_path / "state-old.pt").write_bytes(b"mine too")
    assert train_run(data, tmp_path, "--keep", "5") == 0
    assert "ignoring 1 file(s)" in capsys.readouterr().out
    assert (tmp_path / "stage-best.safetensors").read_bytes() == b"mine"  # untouched
    newest = tmp_path / "state-0000004.pt"
    newest.write_bytes(newest.read_bytes()[:1000])  # a kill during a copy
    assert train_run(data, tmp_path, "--steps", "6", "--resume") == 0
    out = capsys.readouterr().out
    assert "skipping state-0000004.pt" in out and (tmp_path / "state-0000006.pt").exists()


def test_an_architecture_flag_that_differs_from_the_resumed_run_is_refused(data, tmp_path, capsys):
    assert train_run(data, tmp_path) == 0
    recorded = (tmp_path / "config.json").read_text()
    assert train_run(data, tmp_path, "--steps", "6", "--base-channels", "32", "--resume") == 2
    assert "--base-channels 32 (recorded: 8)" in capsys.readouterr().err
    assert (tmp_path / "config.json").read_text() == recorded  # nothing recorded and ignored


@pytest.mark.parametrize("field,value,message", [
    ("num_res_blocks", 1000000, r"num_res_blocks is out of range: expected an integer in "
                                r"\[1, 64\]"),
    ("base_channels", 1e9, r"base_channels is out of range"),
    ("base_channels", 32.5, r"base_channels is out of range: expected an integer.*found 32.5"),
    ("num_heads", 0, r"num_heads is out of range")])
def test_stage_metadata_out_of_range_is_one_sentence(tmp_path, field, value, message):
    import json

    from safetensors.torch import save_file

    import cascade_core as cc
    cfg = cc.StageConfig(resolution=8).to_dict()
    cfg["unet"][field] = value
    meta = {"cdm_format": "cascade-stage", "cdm_stage": json.dumps(cfg)}
    save_file({"w": __import__("torch").zeros(1)}, str(tmp_path / "s.safetensors"), metadata=meta)
    with pytest.raises(cc.CheckpointError, match=message):
        cc.load_stage(tmp_path / "s.safetensors")


def test_a_schedule_of_1e12_steps_is_refused():
    import cascade_core as cc
    with pytest.raises(cc.CascadeError, match=r"timesteps is out of range: expected an integer "
                                              r"in \[2, 100000\]"):
        cc.ScheduleConfig("cosine", 10 ** 12)


# ---- images that used to come out wrong ----------------------------------------------------

@pytest.mark.parametrize("mode,suffix", [
    ("1", "png"), ("L", "png"), ("LA", "png"), ("P", "png"), ("RGB", "png"), ("RGBA", "png"),
    ("CMYK", "tiff"), ("I;16", "png"), ("I", "tiff"), ("F", "tiff")])
def test_load_image_reads_every_pillow_mode_at_its_own_scale(tmp_path, mode, suffix):
    """Mid-grey in every mode loads as mid-grey (a 16-bit grey used to turn white)."""
    import numpy as np
    from PIL import Image

    from nodes.headless.context import RunContext
    from nodes.headless.io_nodes import LoadImage
    grey = {"I;16": np.full((6, 6), 32768, np.uint16), "I": np.full((6, 6), 32768, np.int32),
            "F": np.full((6, 6), 0.5, np.float32)}
    if mode in grey:
        img = Image.fromarray(grey[mode])
    else:
        img = Image.fromarray(np.full((6, 6, 3), 128, np.uint8)).convert(mode)
    assert img.mode == mode
    img.save(tmp_path / f"in.{suffix}")
    rgb, mask = LoadImage(RunContext(tmp_path / "out", [tmp_path])).load_image(f"in.{suffix}")
    assert rgb.shape == (1, 6, 6, 3)
    assert abs(float(rgb.mean()) - 0.5) < 0.03, float(rgb.mean())
    assert float(mask.abs().max()) == 0.0  # opaque everywhere


def _convert(argv, capsys):
    from cascade_core.formats.convert import main
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def test_convert_refuses_its_input_an_existing_output_and_a_folder(tmp_path, capsys):
    src = tmp_path / "model.pt"
    src.write_bytes(b"not a checkpoint")
    code, err = _convert([src, src], capsys)
    assert code == 2 and "is the input file" in err
    dst = tmp_path / "out.safetensors"
    dst.write_bytes(b"keep me")
    code, err = _convert([src, dst], capsys)
    assert code == 2 and "already exists" in err and "--overwrite" in err
    assert dst.read_bytes() == b"keep me"
    code, err = _convert([src, dst, "--overwrite"], capsys)  # past the target check, on to src
    assert code == 2 and "already exists" not in err and dst.read_bytes() == b"keep me"
    code, err = _convert([src, tmp_path], capsys)
    assert code == 2 and "is a folder" in err
    code, err = _convert([src, dst / "inside.safetensors"], capsys)
    assert code == 2 and "is a file" in err


@pytest.mark.parametrize("code,reason", [(errno.ENOSPC, "the disk is full"),
                                         (errno.EROFS, "not writable")])
def test_an_atomic_write_that_fails_is_one_sentence_and_leaves_nothing(tmp_path, monkeypatch,
                                                                       code, reason):
    import os

    import cascade_core as cc
    from cascade_core.formats import atomic

    def refuse(a, b):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(atomic.os, "replace", refuse)
    with pytest.raises(cc.CascadeError, match=reason):
        atomic.atomic_write(tmp_path / "x.safetensors", lambda t: open(t, "wb").write(b"12"))
    assert list(tmp_path.iterdir()) == []


def _runner(argv, capsys):
    from nodes.run_workflow import main
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("edit,message", [
    (lambda wf: wf["nodes"][0].update(widgets_values="cifar10-base16.safetensors"),
     "widgets_values must be a list"),
    (lambda wf: next(i for n in wf["nodes"] for i in n.get("inputs") or []
                     if i.get("link") is not None).update(link=[5]),
     "an input's link must be a link id"),
    (lambda wf: wf["links"][0].__setitem__(0, [1]), "link #0 is malformed"),
    (lambda wf: wf["nodes"][0].update(id=[1]), "an id must be a number or a string"),
])
def test_malformed_workflow_fields_are_sentences(tiny_cascade, tmp_path, edit, message, capsys):
    wf = write(tmp_path, "01", edit=edit)
    code, err = _runner([wf, "--out", tmp_path / "out", "--stages", tiny_cascade], capsys)
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_a_binary_or_huge_workflow_is_refused(tmp_path, capsys, monkeypatch):
    (tmp_path / "b.json").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    code, err = _runner([tmp_path / "b.json", "--out", tmp_path / "o"], capsys)
    assert code == 2 and "is not text" in err
    from nodes.headless import executor
    monkeypatch.setattr(executor, "MAX_WORKFLOW_BYTES", 4)
    (tmp_path / "big.json").write_text('{"nodes": []}')
    code, err = _runner([tmp_path / "big.json", "--out", tmp_path / "o"], capsys)
    assert code == 2 and "too large" in err


@pytest.mark.parametrize("extra,message", [
    (["--threads", "-1"], "--threads is out of range"),
    (["--grid", "g.png", "--grid-cols", "0"], "--grid-cols is out of range"),
    (["--grid", "grid"], "--grid must name a PNG file"),
    (["--grid", "folder.png"], "is a folder"),
])
def test_runner_flags_are_checked_before_sampling(tiny_cascade, tmp_path, capsys, extra, message,
                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder.png").mkdir()
    code, err = _runner([WORKFLOWS / "01_base_then_sr.json", "--out", tmp_path / "out",
                         "--stages", tiny_cascade, *extra], capsys)
    assert code == 2 and message in err
    assert not (tmp_path / "out").exists()


def test_a_grid_goes_into_a_new_folder_atomically(tiny_cascade, tmp_path, capsys):
    grid = tmp_path / "new" / "grid.png"
    code, err = _runner([WORKFLOWS / "01_base_then_sr.json", "--out", tmp_path / "out",
                         "--stages", tiny_cascade, "--set", "batch_size=3", "--set", "steps=2",
                         "--set", "CDMSuperResStage.steps=2", "--grid", grid, "--grid-cols", "2"],
                        capsys)
    assert code == 0, err
    from PIL import Image
    assert Image.open(grid).size == (2 * (32 + 2), 2 * (32 + 2))  # 2x2 cells, 1px border each
    assert [p.name for p in grid.parent.iterdir()] == ["grid.png"]


def test_a_ten_thousand_node_chain_orders_without_recursion_and_cycles_are_named():
    from nodes.headless.graph import execution_order
    n = 10_000
    prompt = {str(i): {"inputs": {"x": [str(i + 1), 0]} if i < n - 1 else {}} for i in range(n)}
    order = execution_order(prompt)
    assert order == [str(i) for i in reversed(range(n))]
    prompt["9999"]["inputs"] = {"x": ["0", 0]}
    with pytest.raises(WorkflowError, match=r"has a cycle.*0 -> 1 -> 2 -> 3 -> \.\.\."):
        execution_order(prompt)
    small = {"a": {"inputs": {"x": ["b", 0]}}, "b": {"inputs": {"x": ["a", 0]}}}
    with pytest.raises(WorkflowError, match="a -> b -> a"):
        execution_order(small)


def test_an_adm_like_pt_of_unknown_layout_names_the_file_and_the_key(tmp_path):
    import torch

    import cascade_core as cc
    torch.save({"time_embed.0.weight": torch.zeros(4, 2),
                "input_blocks.0.0.weight": torch.zeros(2, 3, 3, 3)}, tmp_path / "odd.pt")
    with pytest.raises(cc.CheckpointError, match=r"odd.pt has an ADM-like layout this pack does "
                                                 r"not know.*input_blocks.1.0"):
        cc.load_stage(tmp_path / "odd.pt")


def test_a_zip_bomb_pt_is_refused_before_inflating(tmp_path):
    import zipfile

    import cascade_core as cc
    with zipfile.ZipFile(tmp_path / "bomb.pt", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", b"\0" * (16 * 2 ** 20))
    assert (tmp_path / "bomb.pt").stat().st_size < 2 ** 20
    with pytest.raises(cc.CheckpointError, match="declares 0.02 GiB of contents"):
        cc.load_stage(tmp_path / "bomb.pt")


def _png_claiming(path: Path, width: int, height: int):
    """A few-hundred-byte PNG whose header says ``width`` x ``height`` (its data is 1x1)."""
    import struct
    import zlib

    from PIL import Image
    Image.new("RGB", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = 8 + 8  # signature, then length and type of the IHDR chunk
    data[ihdr:ihdr + 8] = struct.pack(">II", width, height)
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(data[ihdr - 4:ihdr + 13])))
    path.write_bytes(bytes(data))


def test_a_10000_pixel_png_is_refused_from_its_header(tiny_cascade, tmp_path):
    wf = write(tmp_path, "03")
    _png_claiming(tmp_path / "cdm_example_16px.png", 10_000, 10_000)
    with pytest.raises(WorkflowError, match=r"LoadImage.*is too large: expected sides of at "
                                            r"most 8192 pixels, found 10000x10000"):
        run(wf, tmp_path / "out", stage_dirs=[tiny_cascade])
    assert not (tmp_path / "out" / "cdm").exists()


def test_augmenting_refuses_sizes_beyond_the_bound_before_allocating():
    import torch

    import cascade_core as cc
    huge = torch.zeros(1, 3, 1, 1).expand(1, 3, 9000, 16)  # a view: no memory behind it
    with pytest.raises(cc.CascadeError, match="the image to augment is too large"):
        cc.make_condition(huge, 0.1, seed=0)


def test_a_chain_of_inspectors_stays_bounded():
    import torch

    from cascade_core.analysis.inspection import MAX_PICTURE_SIDE, inspection_picture
    high = torch.rand(1, 3, 64, 64) * 2 - 1
    for _ in range(13):  # each picture is three images wide: unbounded, 64 * 3^13 columns
        high = inspection_picture(high, high)  # as a chain of nodes wired output to input
        assert max(high.shape[-2:]) <= MAX_PICTURE_SIDE
    assert high.shape[-1] == MAX_PICTURE_SIDE
    big = inspection_picture(torch.zeros(1, 3, 1024, 1024), torch.zeros(1, 3, 2048, 2048))
    assert big.shape[-1] == MAX_PICTURE_SIDE and big.shape[-2] < 2048


def test_the_runner_counts_images_apart_from_previews(tiny_cascade, tmp_path, capsys):
    from nodes.run_workflow import main
    code = main([str(WORKFLOWS / "02_full_cascade.json"), "--out", str(tmp_path / "out"),
                 "--stages", str(tiny_cascade), "--set", "steps=2", "--set", "batch_size=2"])
    out = capsys.readouterr().out
    assert code == 0
    saved = list((tmp_path / "out").rglob("*.png"))
    previews = [p for p in saved if p.parent.name == "previews"]
    assert previews, "workflow 02 previews its base images"
    assert f"wrote {len(saved) - len(previews)} image(s)" in out
    assert f"(and {len(previews)} preview(s) in previews/)" in out
