"""Looking at what stages do: sweeps over settings (the paper's post-training search for s) and
the per-stage inspection (consistency, detail added, colour shift)."""
