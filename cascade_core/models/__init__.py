"""The networks and the Stage that wraps one with its config and schedule.

``config`` (every hyperparameter, stored in checkpoints), ``unet`` (the one
ADM/SR3-family U-Net), ``shallow`` (the non-diffusion networks of the shallow
cascade), ``noisy_classifier`` (classifier guidance) and ``stage`` (a network
with its config and schedule). Imports only ``base`` and ``process``.
"""
