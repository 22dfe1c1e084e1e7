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
