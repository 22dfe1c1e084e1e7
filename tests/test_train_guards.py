"""The training command lines refuse bad flags before writing anything, tell the truth in --help,
check their data up front, leave no stale files, and stop a distributed run clearly."""
import contextlib
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_train import FAST, ROOT, make_folder, run

from train import shallow
from train.cli import build_parser
from train.config import TrainConfig
from train.options import field_type
from train.shallow_train_config import ShallowTrainConfig


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("data"))


def _bad_values(f):
    """Values outside what field ``f`` declares it accepts."""
    meta, typ = f.metadata, field_type(f)
    if "choices" in meta:
        return ["bogus"]
    if "pattern" in meta:
        return ["1,x"]
    bad = []
    if "min" in meta:
        bad.append(meta["min"] - 1)
    if "gt" in meta:
        bad.append(meta["gt"])
    if "max" in meta:
        bad.append(meta["max"] + 1)
    if "lt" in meta:
        bad.append(meta["lt"])
    if typ is float:
        bad.append("nan")
    return bad


def _declared(cls):
    """Every field a flag can set, with its values out of range."""
    return [(f, _bad_values(f)) for f in fields(cls)
            if field_type(f) is not bool and (field_type(f) is not str or
                                              {"choices", "pattern"} & set(f.metadata))]


@pytest.mark.parametrize("cls", [TrainConfig, ShallowTrainConfig])
def test_every_numeric_flag_declares_its_range(cls):
    for f in fields(cls):
        if field_type(f) in (int, float):
            assert {"min", "gt", "choices"} & set(f.metadata), f"--{f.name} declares no range"


def _argv(f, value, data, out):
    flag = "--" + f.name.replace("_", "-")
    return ["--data", str(data), "--out", str(out), flag, str(value)]


def _refused(main, argv, f, out, capsys):
    """The run exits 2 with one sentence naming the flag, and writes nothing."""
    flag = "--" + f.name.replace("_", "-")
    try:
        code = main(argv)
    except SystemExit as e:  # argparse refuses a value outside a flag's choices itself
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, (f.name, argv)
    assert err.startswith(f"error: {flag} is out of range") or \
        f"argument {flag}: invalid choice" in err, err
    assert "Traceback" not in err and not out.exists()


def test_every_flag_out_of_range_is_one_clear_error_before_anything_is_written(
        data, tmp_path, capsys):
    for f, bad in _declared(TrainConfig):
        if f.name in ("role", "low_res"):
            continue  # set by the entry point / not a flag of train.stage1
        for value in bad:
            out = tmp_path / f"{f.name}-{value}"
            _refused(lambda argv, out=out: run("base", data, out, *argv[4:]),
                     _argv(f, value, data, out), f=f, out=out, capsys=capsys)


def test_shallow_flags_out_of_range_are_clear_errors(data, tmp_path, capsys):
    for f, bad in _declared(ShallowTrainConfig):
        for value in bad:
            out = tmp_path / f"{f.name}-{value}"
            _refused(shallow.main, _argv(f, value, data, out), f=f, out=out, capsys=capsys)


def test_the_quoted_failures(data, tmp_path, capsys):
    assert run("base", data, tmp_path / "a", "--checkpoint-every", "0") == 2
    assert "--checkpoint-every is out of range: expected an int, >= 1, found 0" in \
        capsys.readouterr().err
    assert run("base", data, tmp_path / "b", "--lr", "nan") == 2
    assert "--lr is out of range" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_help_shows_the_values_a_run_uses():
    text = " ".join(build_parser("base", "x").format_help().split())
    lr = "--lr LR peak AdamW learning rate (default: tiny 0.0005, small 0.0004, base 0.0001"
    assert lr in text
    assert "(default: tiny 16, small 64, base 2048; >= 1 and <= 1048576)" in text  # batch size
    assert "(default: tiny 'v', small 'v', base 'eps')" in text  # parameterization
    assert "uses the tiny preset" in text


def _corrupt_set(root: Path, n=201) -> Path:
    (root / "a").mkdir(parents=True)
    for i in range(n):
        Image.fromarray(np.full((8, 8, 3), i % 255, dtype=np.uint8)).save(root / "a" / f"{i}.jpg")
    jpeg = (root / "a" / "150.jpg").read_bytes()
    (root / "a" / "150.jpg").write_bytes(jpeg[: len(jpeg) // 2])  # truncated
    return root


def test_a_corrupt_jpeg_is_found_before_training(tmp_path, capsys):
    data = _corrupt_set(tmp_path / "d")
    out = tmp_path / "o"
    assert run("base", data, out, "--resolution", "8", "--steps", "10",
               "--checkpoint-every", "2") == 2
    err = capsys.readouterr().err
    assert "1 image(s) in" in err and "150.jpg" in err and "--bad-data skip" in err
    assert not out.exists()  # no checkpoint at steps 2, 4, 6, 8 first
    assert run("base", data, out, "--resolution", "8", "--steps", "2", "--bad-data", "skip") == 0
    assert (out / "skipped.txt").read_text().strip().endswith("150.jpg")
    assert "200 images" in capsys.readouterr().out


def test_stale_temp_files_are_removed_and_the_log_keeps_each_step_once(data, tmp_path):
    out = tmp_path / "o"
    common = ["--resolution", "8", "--steps", "6", "--checkpoint-every", "2", "--keep", "5"]
    assert run("base", data, out, *common) == 0
    (out / "state-0000006.pt").unlink()  # as if killed after logging step 6, before its state
    (out / "state-0000004.pt").unlink()
    stale = [out / ".state-0000005.pt.x1y2.tmp", out / ".stage-0000005.safetensors.abc.tmp"]
    for p in stale:
        p.write_bytes(b"half a checkpoint")
    assert run("base", data, out, *common, "--resume") == 0  # replays steps 3..6
    assert not any(p.exists() for p in stale)
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


class NotOurs:
    pass


def test_resuming_from_a_foreign_file_names_it(data, tmp_path, capsys):
    foreign = tmp_path / "foreign.pt"
    with open(foreign, "wb") as f:
        pickle.dump({"model": NotOurs()}, f)
    assert run("base", data, tmp_path / "o", "--resolution", "8", "--resume", str(foreign)) == 2
    err = capsys.readouterr().err
    assert f"{foreign} is not a training state this tool wrote" in err
    torch.save({"step": 1}, tmp_path / "cut.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "cut.pt").read_bytes()[:40])
    assert run("base", data, tmp_path / "o2", "--resolution", "8", "--resume",
               str(tmp_path / "cut.pt")) == 2
    assert "is truncated or corrupt" in capsys.readouterr().err


def _torchrun(data, out, *extra):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "train.stage1", "--data", str(data), "--out", str(out), *FAST,
           "--resolution", "8", "--steps", "100000", "--checkpoint-every", "100000", *extra]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 120
    while not (out / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    return proc


def _rank_pid(rank: int) -> int:
    for pid in os.listdir("/proc"):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if b"train.stage1" in cmd and f"RANK={rank}".encode() in env and \
                b"TORCHELASTIC_RUN_ID" in b" ".join(env):
            return int(pid)
    raise AssertionError(f"no worker of rank {rank}")


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker through /proc (Linux)")
def test_a_frozen_rank_is_named_after_the_collective_timeout(data, tmp_path):
    proc = _torchrun(data, tmp_path / "o", "--collective-timeout", "3")
    frozen = _rank_pid(1)
    os.kill(frozen, signal.SIGSTOP)
    t0, lines = time.time(), []
    try:  # read until rank 0's error; torchrun itself then waits on the frozen worker
        while time.time() - t0 < 60:
            line = proc.stderr.readline()
            lines.append(line)
            if not line or line.startswith("error: "):
                break
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(frozen, signal.SIGCONT)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    err = "".join(lines)
    assert "error: rank 0 of 2: the other processes stopped answering" in err
    assert "rank 1 did not respond" in err
    assert time.time() - t0 < 30  # the 3 s timeout and a 3 s check-in, not gloo's 30 min


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker through /proc (Linux)")
def test_sigterm_to_torchrun_saves_state_on_the_workers(data, tmp_path):
    proc = _torchrun(data, tmp_path / "o")
    os.kill(proc.pid, signal.SIGTERM)  # what a cluster scheduler sends before it kills
    out, err = proc.communicate(timeout=90)
    assert "stopped at step" in out and "resume with --resume" in out
    assert len(list((tmp_path / "o").glob("state-*.pt"))) == 1
    assert 'File "' + str(ROOT / "train") not in err  # no traceback from our workers
    assert "SignalException" in err and proc.returncode == 1  # torchrun's own report
