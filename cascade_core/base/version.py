"""The pack's version, written into every stage file it saves."""
__version__ = "0.3.0"
