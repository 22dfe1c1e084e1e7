"""The benchmarks' --quick modes: they run in seconds and print what they measure."""
import importlib.util

from bench import peer_speed, preset_cost, samplers


def test_peer_speed_quick(capsys):
    assert peer_speed.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "GFLOPs/image ours" in out and "of the measured peak matmul" in out
    if importlib.util.find_spec("diffusers") is None:
        assert "diffusers is not installed" in out
    else:
        assert "ratio" in out


def test_preset_cost_quick(capsys):
    assert preset_cost.main(["--quick", "--steps", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("tiny") == 3 and "s/step" in out


def test_samplers_quick(capsys):
    assert samplers.main(["--quick"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "NFE" in ln]
    assert len(lines) == 4 and "heun" in lines[2] and "NFE    9" in lines[2]


def test_ablation_quick(tmp_path, capsys):
    from bench import ablation
    assert ablation.main(["--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "quick ablation: 13 rows" in out and "'s': 0.5, 'truncated': True" in out


def test_ablation_levels(tmp_path, capsys):
    """--levels picks the swept s: single + no-aug + 2 non-truncated + 1 truncated rows."""
    from bench import ablation
    assert ablation.main(["--quick", "--out", str(tmp_path), "--levels", "0,0.3"]) == 0
    out = capsys.readouterr().out
    assert "quick ablation: 5 rows" in out and "'s': 0.5" not in out and "'s': 0.3, 'truncated': True" in out


def test_shallow_ablation_quick(tmp_path, capsys):
    from bench import shallow_ablation
    assert shallow_ablation.main(["--quick", "--out", str(tmp_path)]) == 0
    combos = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith('{"combo"')]
    assert len(combos) == 3 and all('"epoch_seconds"' in c and '"swd"' in c for c in combos)
