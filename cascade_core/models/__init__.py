"""The networks and the Stage that wraps one with its config and schedule.

``config`` (every hyperparameter, stored in checkpoints), ``unet`` (the one
ADM/SR3-family U-Net), ``shallow`` (the non-diffusion kinds of the shallow
cascade) and ``stage`` (the Stage base class). Imports only ``process``.
"""
