"""What training needs from the engine: the losses, one training evaluation per method, the EMA.

The training loops themselves live in the top-level ``train`` package.
"""
