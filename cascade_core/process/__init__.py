"""The diffusion process, independent of any network.

Noise schedules and respacing (``schedules``), the forward process and
training targets (``diffusion``), the samplers (``samplers``), per-image noise
streams (``noise``), conditioning augmentation (``augment``) and the cascade's
downsampler (``resize``). Nothing here imports ``models`` or anything above it.
"""
