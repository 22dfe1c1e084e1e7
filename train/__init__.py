"""Headless training of every cascade stage: python -m train.stage1 / stage2 / stage3."""
