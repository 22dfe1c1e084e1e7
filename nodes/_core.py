"""The pack's engine, imported the same way whatever folder the pack lives in.

Inside ComfyUI the pack is the package ``custom_nodes/<folder>`` and the engine
is its sibling ``..cascade_core``; in tests and the headless runner the
repository root is on ``sys.path`` and ``nodes`` is top-level, so the relative
import fails and the absolute one is used. Nothing is ever put on ``sys.path``.
"""
try:
    from .. import cascade_core as core  # noqa: F401  (inside ComfyUI: the pack is a package)
except ImportError:  # running from the repository root (tests, headless runner)
    import cascade_core as core  # noqa: F401
