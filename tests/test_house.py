"""The house rules, checked on the source: layers, function size, keyword calls, private names.

ARCHITECTURE.md fixes the layers; the house issue added the rest. Each check
reads the source with ``ast`` (nothing is imported), so it fails on the line
that breaks a rule, whoever wrote it.
"""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("cascade_core", "nodes", "train", "bench")
# the engine's layers (its folders), lowest first: a module may import its own layer and those
# below it; the package's __init__ ("top") re-exports them all
LAYERS = {"base": 0, "process": 1, "models": 2, "formats": 3, "training": 4, "run": 5,
          "analysis": 6, "top": 7}
EXTERNAL = {"torch", "np", "F", "nn", "math", "os", "json", "time", "re", "sys", "dist", "kornia",
            "Image", "shutil", "subprocess", "random", "argparse", "copy", "signal", "tempfile",
            "einops", "hashlib", "inspect", "threading", "contextlib", "tqdm", "zipfile", "io"}


def product_files():
    return sorted(f for d in PRODUCT for f in (ROOT / d).rglob("*.py"))


def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _core_layer(module: str) -> str:
    """Layer of a module path inside cascade_core, e.g. 'process.samplers' -> 'process'."""
    head = module.split(".")[0]
    return head if head in LAYERS else "top"


def _core_imports(path: Path):
    """(imported module inside cascade_core, line) for every import of an engine module."""
    rel = path.relative_to(ROOT / "cascade_core").with_suffix("")
    package = list(rel.parts[:-1])
    for node in ast.walk(_parse(path)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                names = [target] if node.module else [".".join(base + [a.name]) for a in node.names]
                for name in names:
                    yield name.strip("."), node.lineno
            elif node.module and node.module.split(".")[0] in ("comfy", "folder_paths", "server",
                                                               "nodes", "train", "cascade_core"):
                yield "!" + node.module, node.lineno
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in ("comfy", "folder_paths", "server", "nodes", "train"):
                    yield "!" + a.name, node.lineno


def test_engine_imports_only_point_downwards():
    broken = []
    for path in sorted((ROOT / "cascade_core").rglob("*.py")):
        own = _core_layer(".".join(path.relative_to(ROOT / "cascade_core").with_suffix("").parts))
        if path.name == "__init__.py" and path.parent.name == "cascade_core":
            continue  # the public namespace re-exports every layer
        for target, line in _core_imports(path):
            if target.startswith("!"):
                broken.append(f"{path.relative_to(ROOT)}:{line} imports {target[1:]}")
            elif target and LAYERS[_core_layer(target)] > LAYERS[own]:
                broken.append(f"{path.relative_to(ROOT)}:{line} ({own}) imports {target}")
    assert not broken, "\n".join(broken)


def test_training_and_nodes_never_import_each_other():
    broken = []
    for side, other in (("train", "nodes"), ("nodes", "train")):
        for path in sorted((ROOT / side).rglob("*.py")):
            for node in ast.walk(_parse(path)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level \
                    else []
                broken += [f"{path.relative_to(ROOT)}:{node.lineno} imports {n}" for n in names
                           if n.split(".")[0] == other]
    assert not broken, "\n".join(broken)


def test_no_product_function_is_longer_than_60_lines():
    def lines(node):
        return node.end_lineno - node.lineno + 1

    long = [f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines(node)})"
            for path in product_files() for node in ast.walk(_parse(path))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and lines(node) > 60]
    assert not long, "\n".join(long)


def _definitions():
    """Parameter names of every function and class of the product, by simple name."""
    defs = defaultdict(list)
    for path in product_files():
        for node in ast.walk(_parse(path)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                defs[node.name].append(([p.arg for p in a.posonlyargs + a.args], a.vararg))
            elif isinstance(node, ast.ClassDef):
                init = next((n for n in node.body
                             if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
                if init is not None:
                    defs[node.name].append(([p.arg for p in init.args.args], init.args.vararg))
    return defs


def _callee(call: ast.Call) -> str | None:
    fn = call.func
    if isinstance(fn, ast.Name):
        return fn.id
    if isinstance(fn, ast.Attribute):
        base = fn.value.value if isinstance(fn.value, ast.Attribute) else fn.value
        if isinstance(base, ast.Name) and base.id in EXTERNAL:
            return None  # torch.x, np.x, F.x ...: not ours
        return fn.attr
    return None


def test_calls_of_our_functions_pass_at_most_three_arguments_by_position():
    defs, crowded = _definitions(), []
    for path in product_files():
        for node in ast.walk(_parse(path)):
            if not isinstance(node, ast.Call) or len(node.args) <= 3:
                continue
            name = _callee(node)
            if name in defs and not any(vararg for _, vararg in defs[name]):
                crowded.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}(...) passes "
                               f"{len(node.args)} arguments by position")
    assert not crowded, "\n".join(crowded)


def _module_aliases(tree: ast.Module) -> set[str]:
    """Names bound to modules of this project by ``import`` or ``from package import module``."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.asname or a.name.split(".")[0] for a in node.names
                      if a.name.split(".")[0] in PRODUCT}
        elif isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").split(".")[0]
                                                   in PRODUCT):
            names |= {a.asname or a.name for a in node.names if a.name.islower()}
    return names


def test_no_private_name_is_reached_across_modules():
    reached = []
    for path in product_files():
        tree = _parse(path)
        modules = _module_aliases(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                reached += [f"{path.relative_to(ROOT)}:{node.lineno} imports {a.name}"
                            for a in node.names if a.name.startswith("_")
                            and not a.name.startswith("__")]
            elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                  and node.value.id in modules and node.attr.startswith("_")
                  and not node.attr.startswith("__")):
                reached.append(f"{path.relative_to(ROOT)}:{node.lineno} uses "
                               f"{node.value.id}.{node.attr}")
    assert not reached, "\n".join(reached)


@pytest.mark.parametrize("rule", ["layers", "length", "positional"])
def test_the_checks_catch_a_planted_violation(tmp_path, monkeypatch, rule):
    """Each rule fails on a file that breaks it, so a green run means something."""
    core = tmp_path / "cascade_core"
    (core / "process").mkdir(parents=True)
    body = {
        "layers": "from ..models.stage import Stage\n", "length": "def f():\n" + "    x = 1\n" * 61,
        "positional": "def g(a, b, c, d):\n    return a\n\n\ng(1, 2, 3, 4)\n",
    }[rule]
    (core / "process" / "bad.py").write_text(body)
    for d in PRODUCT[1:]:
        (tmp_path / d).mkdir()
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    check = {"layers": test_engine_imports_only_point_downwards,
             "length": test_no_product_function_is_longer_than_60_lines,
             "positional": test_calls_of_our_functions_pass_at_most_three_arguments_by_position}
    check = check[rule]
    with pytest.raises(AssertionError, match="bad.py"):
        check()


MAX_PARAMETERS = 6


def _parameter_count(fn: ast.FunctionDef) -> int:
    a = fn.args
    named = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs if p.arg not in ("self", "cls")]
    return len(named) + bool(a.vararg) + bool(a.kwarg)


def test_no_public_function_of_the_engine_or_training_takes_more_than_six_parameters():
    """A long parameter list is a plan or a settings object waiting to be named (ComfyUI node
    methods, called with one keyword per widget, live in nodes/ and are exempt)."""
    crowded = []
    for d in ("cascade_core", "train"):
        for path in sorted((ROOT / d).rglob("*.py")):
            for node in ast.walk(_parse(path)):
                public = not node.name.startswith("_") or node.name == "__init__" \
                    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else False
                if public and _parameter_count(node) > MAX_PARAMETERS:
                    crowded.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} takes "
                                   f"{_parameter_count(node)} parameters")
    assert not crowded, "\n".join(crowded)


def test_the_parameter_check_catches_a_planted_violation(tmp_path, monkeypatch):
    (tmp_path / "cascade_core").mkdir()
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "bad.py").write_text("def f(a, b, c, d, e, f, *, g=1):\n    return a\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    with pytest.raises(AssertionError, match="bad.py:1 f takes 7 parameters"):
        test_no_public_function_of_the_engine_or_training_takes_more_than_six_parameters()


def test_one_plan_travels_from_the_node_to_the_sampler(tiny_cascade):
    """BaseSampler's call chain, recorded with sys.setprofile: the node resolves its widgets
    into one plan (built once), the pipeline looks up the strategy, which builds one denoiser
    and runs the sampler once: node -> plan -> pipeline -> strategy -> denoiser -> sampler."""
    import sys

    from nodes import NODE_CLASS_MAPPINGS
    from nodes.stage_nodes import load

    chain = [("nodes/sampling_nodes.py", "CDMBaseSampler.sample"),
             ("nodes/plan_from_widgets.py", "sampling_plan"),
             ("cascade_core/run/plan.py", "SamplingPlan.__post_init__"),
             ("cascade_core/run/pipeline.py", "generate"),
             ("cascade_core/run/strategies.py", "Diffusion.base"),
             ("cascade_core/run/denoiser.py", "Denoiser.__init__"),
             ("cascade_core/process/samplers.py", "sample_dpmpp_2m")]
    entered = []

    def watch(frame, event, arg):
        if event == "call":
            code = frame.f_code
            key = (Path(code.co_filename).as_posix(), code.co_qualname)
            if any(key[0].endswith(f) and key[1] == q for f, q in chain):
                entered.append(key[1])

    node = NODE_CLASS_MAPPINGS["CDMBaseSampler"]()
    stage = load("cifar10-base16.safetensors")
    sys.setprofile(watch)
    try:
        node.sample(stage, seed=0, steps=3, sampler_name="dpmpp_2m", spacing="karras",
                    class_name="random", guidance=1.0, batch_size=2, truncate_s=0.2,
                    dtype="fp32")
    finally:
        sys.setprofile(None)
    assert entered == [q for _, q in chain], entered
