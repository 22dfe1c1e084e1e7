"""The benchmarks' --quick modes: they run in seconds and print what they measure."""
import importlib.util
from pathlib import Path

import pytest

import cascade_core as cc
from bench.quality import samplers
from bench.speed import peer_speed, preset_cost


def test_peer_speed_quick(capsys):
    assert peer_speed.main(["--quick"]) == 0
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith("base8")]
    assert len(lines) == 3 * len(cc.precision.native_dtypes("cpu"))  # sampling b1, b4; training
    assert all("of conv peak" in ln and "of matmul peak" in ln for ln in lines)
    if importlib.util.find_spec("diffusers") is None:
        assert "diffusers is not installed" in out and "ours/diffusers" not in out
    else:
        assert all("ours/diffusers" in ln for ln in lines)


def test_peak_conv_flops_counts_two_flops_per_multiply_add_over_the_best_time(monkeypatch):
    """A 3x3 convolution of C to C channels on a batch of 8 HxW maps is 2 * 8 * H * W * C * C * 9
    FLOPs; the peak divides them by the fastest of the timed runs."""
    from bench import common
    times = iter([0.5, 0.25, 0.4])  # the warm-up call is not timed
    monkeypatch.setattr(common, "_time", lambda fn: (fn(), next(times))[1])
    got = common.peak_conv_flops(channels=16, size=8, repeats=3)
    assert got == 2 * 8 * 8 * 8 * 16 * 16 * 9 / 0.25


def test_preset_cost_quick_reports_the_presets_real_sizes(capsys):
    """Each row names the tiny preset of one entry point with its real parameter count, and its
    images per second is its batch over its seconds per step."""
    from train.config import resolve, stage_config
    assert preset_cost.main(["--quick", "--steps", "1"]) == 0
    rows = [ln.split() for ln in capsys.readouterr().out.splitlines()[1:] if ln.strip()]
    assert [r[:2] for r in rows] == [["stage1", "tiny"], ["stage2", "tiny"], ["stage3", "tiny"]]
    for (_, _, params, _, batch, seconds, per_second, *_), role in zip(
            rows, preset_cost.ENTRIES.values()):
        cfg = resolve(role, "tiny", {}, cli_values={"data": "-"})
        want = cc.Stage(stage_config(cfg, 10, ())).num_parameters()
        assert params == f"{want / 1e6:.2f}M" and int(batch) == cfg.batch_size
        assert float(seconds) > 0
        low, high = float(seconds) - 0.005, float(seconds) + 0.005  # printed to 2 decimals
        assert int(batch) / high - 0.05 <= float(per_second) <= int(batch) / max(low, 1e-9) + 0.05


def test_samplers_quick(capsys):
    assert samplers.main(["--quick"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "NFE" in ln]
    assert len(lines) == 4 and "heun" in lines[2] and "NFE    9" in lines[2]


def test_ablation_quick(tmp_path, capsys):
    from bench.quality import ablation
    assert ablation.main(["--quick", "--out", str(tmp_path), "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "quick ablation: 13 rows" in out and "'s': 0.5, 'truncated': True" in out
    assert "economics: cascade / single-stage = " in out and "x the GFLOPs" in out


def test_ablation_levels():
    """--levels picks the swept s: single + no-aug + 2 non-truncated + 1 truncated rows (the runs
    that sample these rows end to end are the two ablation tests around this one)."""
    import pytest

    from bench.quality import ablation
    from cascade_core import CascadeError
    specs = ablation.row_specs(ablation.parse_levels("0,0.3"))
    assert specs == [("single", None, None), ("sr_noaug", 0.0, False), ("sr_aug", 0.0, False),
                     ("sr_aug", 0.3, False), ("sr_aug", 0.3, True)]
    assert len(ablation.row_specs(ablation.LEVELS)) == 2 + 2 * len(ablation.LEVELS) - 1
    for bad in ("", "0,x", "0,1.5"):
        with pytest.raises(CascadeError, match="--levels"):
            ablation.parse_levels(bad)


def test_shallow_ablation_quick(tmp_path, capsys):
    from bench.quality import shallow_ablation
    assert shallow_ablation.main(["--quick", "--out", str(tmp_path)]) == 0
    combos = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith('{"combo"')]
    assert len(combos) == 3 and all('"epoch_seconds"' in c and '"swd"' in c for c in combos)


def test_report_tables_from_results(tmp_path, capsys):
    """bench.quality.report turns the JSON results into the tables RESULTS.md quotes, with
    ratios."""
    import json

    from bench.quality import report
    rows = [{"variant": "single-stage 32px", "s": None, "truncated": None, "swd": 50.0, "kid": 0.2,
             "kid_std": 0.01, "fid": 120.0, "sample_seconds": 100.0},
            {"variant": "cascade, amortized aug", "s": 0.2, "truncated": False, "swd": 40.0,
             "kid": 0.1, "kid_std": 0.005, "fid": 90.0, "sample_seconds": 150.0},
            {"variant": "cascade, amortized aug", "s": 0.3, "truncated": True, "swd": 45.0,
             "kid": 0.12, "kid_std": 0.005, "fid": 95.0, "sample_seconds": 140.0}]
    variants = {k: {"steps": n} for k, n in (("single", 250), ("base", 469), ("sr_aug", 500))}
    (tmp_path / "ablation.json").write_text(json.dumps(
        {"budget_gflop": 35000.0, "num_samples": 1000, "reference": "test", "sampler_steps": 20,
         "variants": variants, "rows": rows,
         "economics": {"batch": 100, "threads": 2, "seconds_per_image": {
             "single": 0.02, "cascade": 0.03},
             "gflop_per_image": {"single": 14.6, "cascade": 18.2}}}))
    assert report.main(["--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    row = "| cascade, amortized aug | 0.3 (truncated) | 0.1200 ± 0.0050 | 95.0 | 45.0 | 140 |"
    assert row in out
    # the best level, as a ratio to single
    assert "| KID (cascade: best s) | 0.2000 | 0.1000 (s = 0.2) | 0.50x |" in out
    assert "| sampling GFLOP per image | 14.60 | 18.20 | 1.25x |" in out
    timing = "| sampling ms per image (2 threads, batch 100, alternating) | 20.0 | 30.0 | 1.50x |"
    assert timing in out
    assert "not run yet" in out and "samplers, shallow_ablation" in out


def test_ablation_rows_continue_and_split_over_parts(tmp_path, capsys):
    """Rows already in rows.jsonl are not sampled again; parts share the rows and the last one
    writes the report."""
    import json

    import pytest

    from bench.quality import ablation
    from cascade_core import CascadeError
    args = ["--quick", "--out", str(tmp_path), "--levels", "0,0.3", "--steps", "2"]
    with pytest.raises(CascadeError, match="--part needs the trained variants"):
        ablation.main([*args, "--part", "1/2"])
    assert ablation.main([*args, "--part", "0/1"]) == 0
    rows = (tmp_path / "rows.jsonl").read_text().splitlines()
    assert len(rows) == 5
    (tmp_path / "rows.jsonl").write_text("\n".join(rows[:2]) + "\n")  # as if stopped after two rows
    capsys.readouterr()
    assert ablation.main([*args, "--part", "1/2"]) == 0  # rows 1 (present) and 3
    out = capsys.readouterr().out
    assert "trained single" not in out and "2 rows left to other parts" in out
    assert ablation.main([*args, "--part", "0/2"]) == 0  # rows 0 (present), 2 and 4: complete now
    out = capsys.readouterr().out
    assert "quick ablation: 5 rows" in out and out.count("{'variant'") == 2
    rows = map(json.loads, (tmp_path / "rows.jsonl").open())
    keys = [(r["variant"], r["s"], r["truncated"]) for r in rows]
    assert len(set(keys)) == 5
    with pytest.raises(CascadeError, match="--part must be i/n"):
        ablation.main([*args, "--part", "2/2"])


def test_soak_quick(tiny_cascade, capsys):
    from bench import soak
    assert soak.main(["--quick", "--stages", str(tiny_cascade)]) == 0
    out = capsys.readouterr().out
    assert "soak passed: 26 warm-up + 40 runs (26 bad)" in out and "0 failure(s)" in out


def test_soak_notices_a_leak_and_a_runner_that_stops_refusing(tiny_cascade, monkeypatch, capsys):
    import mmap

    from bench import soak
    leak, real = [], soak.run

    def leaky(*args, **kwargs):
        # 1 MB that is never freed, per run; mapped fresh and written, so it always adds resident
        # pages (a malloc'ed block could reuse heap that earlier tests freed, and not show)
        block = mmap.mmap(-1, 2 ** 20)
        block.write(b"\1" * 2 ** 20)
        leak.append(block)
        return real(*args, **kwargs)

    monkeypatch.setattr(soak, "run", leaky)
    assert soak.main(["--quick", "--stages", str(tiny_cascade)]) == 1
    assert "soak FAILED" in capsys.readouterr().out
    monkeypatch.setattr(soak, "run", real)
    monkeypatch.setitem(soak.BAD, "steps -3", (0, lambda wf: None, "steps = -3"))  # a good file
    assert soak.main(["--quick", "--stages", str(tiny_cascade)]) == 1
    assert "steps -3: ran without an error" in capsys.readouterr().out


def test_stage_gaps_quick(capsys):
    from bench.quality import stage_gaps
    assert stage_gaps.main(["--quick"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "class agreement" in ln]
    names = [ln.split("  ")[0].strip() for ln in lines]
    assert len(lines) == 7 and names[0] == "real 32px" and names[-1] == "cascade + refiner"


def test_tune_defaults_equality_rule_and_pick():
    from bench.quality.tune_defaults import OLD, cost, equal_or_better, pick
    old = {**OLD, "kid": 0.050, "kid_std": 0.001, "class_accuracy": 0.50, "num": 1000}
    same = {**old, "steps": 10, "sr_steps": 10, "kid": 0.0527}  # 1.9 combined std worse: equal
    worse = {**old, "steps": 15, "sr_steps": 15, "kid": 0.0529}  # 2.05 std: not equal
    less_agreement = {**same, "dtype": "bf16", "class_accuracy": 0.45}  # -2.2 std
    assert equal_or_better(same, old) and not equal_or_better(worse, old)
    assert not equal_or_better(less_agreement, old)
    assert pick([old, same, worse, less_agreement], cost) is same
    assert pick([old, worse], cost) is old  # nothing equal: keep the old defaults


def test_tune_defaults_quick(capsys):
    from bench.quality import tune_defaults
    assert tune_defaults.main(["all", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "| 30 + 30 | fp32 |" in out and "| 2 + 2 | fp32 |" in out and "(old)" in out
    assert "| old |" in out and "| new |" in out and "speed-up" in out


def test_distilled_cascade_quick(capsys):
    """Teachers at every step count, the 2-step students found in the folder and sampled as they
    say (steps 0 in workflow 01 and in the evaluation), timed side by side."""
    from bench.quality import distilled_cascade as dc
    student = dc.cells(Path("/nonexistent"))
    assert [c["key"] for c in student] == ["teacher 8+8", "teacher 4+4", "teacher 2+2",
                                           "teacher 1+1"]
    assert dc.main(["all", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "| 8 + 8 | teacher |" in out and "(reference)" in out
    row = next(ln for ln in out.splitlines() if ln.startswith("| 2 + 2 | student |"))
    assert row.endswith("x |") and "| - |" in row  # timed; FID not asked for in --quick
    cell = {"key": "student 2+2", "who": "student", "steps": 2, "files": dc.student_names(2)}
    assert dc.overrides(cell) == ["1.stage_name=cifar10-base16-2step.safetensors",
                                  "2.stage_name=cifar10-sr16to32-2step.safetensors",
                                  "3.steps=0", "4.steps=0"]


def test_loader_speed_quick(capsys):
    from bench.speed import loader_speed
    assert loader_speed.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert out.count("the loader costs") == 2 and "base:" in out and "sr:" in out


def test_peer_speed_profile_quick(capsys):
    assert peer_speed.main(["--profile", "base8", "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "== ours: 5 evaluations of base8 at batch 2, fp32" in out
    assert "convolution" in out


def test_weights_speed_times_two_weight_sets_side_by_side(tiny_cascade, capsys, monkeypatch):
    from bench.speed import weights_speed
    monkeypatch.setattr(weights_speed, "save", lambda name, payload: payload)
    assert weights_speed.main(["--old", str(tiny_cascade), "--new", str(tiny_cascade),
                               "--repeats", "1", "--set", "steps=1", "--set",
                               "batch_size=1"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("model card render") and "x the old speed" in line
    with pytest.raises(SystemExit):
        weights_speed.main(["--repeats", "1"])  # neither --old nor --old-rev
    with pytest.raises(SystemExit, match="not found at revision"):
        weights_speed.main(["--old-rev", "no-such-revision"])


def test_if_speed_quick_times_the_shrunk_shape(capsys):
    from bench.speed import if_speed
    assert if_speed.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "quick fp32: ours" in out and "of the conv peak" in out


def test_released_stand_ins_are_written_under_their_names(tmp_path, monkeypatch, capsys):
    from bench.release import released
    assert released.main(["stand-ins"]) == 2 and "needs a folder" in capsys.readouterr().err
    assert released.main(["stand-ins", str(tmp_path), "nope.pt"]) == 2
    assert "no manifest for ['nope.pt']" in capsys.readouterr().err
    monkeypatch.setattr(released, "manifests", lambda: {"tiny.pt": {"a.weight": [4, 3]}})
    assert released.main(["stand-ins", str(tmp_path / "o")]) == 0
    import torch
    state = torch.load(tmp_path / "o" / "tiny.pt", weights_only=True)
    assert list(state) == ["a.weight"] and state["a.weight"].shape == (4, 3)


def test_frontend_check_finds_overlapping_nodes_and_tells_backend_gaps_from_page_errors():
    from bench.comfyui_frontend import is_backend_gap, overlaps
    nodes = {"1": {"id": 1, "box": [0, 0, 100, 100]}, "2": {"id": 2, "box": [98, 0, 50, 50]},
             "3": {"id": 3, "box": [90, 90, 50, 50]}}
    assert overlaps(nodes) == [(1, 3)]  # 1 and 2 touch by 2 px: not an overlap
    assert is_backend_gap("[Jobs API] Error fetching jobs: JobsApiError: Failed to fetch jobs: 404")
    assert not is_backend_gap("TypeError: cannot read properties of undefined (reading 'widgets')")


def test_regions_speed_quick(capsys):
    from bench.speed.regions_speed import main
    assert main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "regions batched / separate = " in out and "one by one / batched = " in out


def test_distill_cost_quick(capsys):
    from bench.speed.distill_cost import main
    assert main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert out.count("distil / train = ") == 2
    bf16 = "bf16" in cc.precision.native_dtypes("cpu")  # timed only where the CPU computes it
    assert out.count("x the fp32 step") == (2 if bf16 else 0)
