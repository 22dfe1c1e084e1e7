"""Running a stage: the plan and the conditioning one run takes, the pipeline, the per-method
strategies in an explicit table, the denoiser, tiles and compiling.

``plan`` (how to sample, checked once) and ``conditioning`` (what the stage is conditioned on)
are built by the caller; ``pipeline`` checks role and sizes and looks up the stage's strategy
(``strategies.STRATEGIES``), which builds the ``denoiser`` and runs the sampler
(``sampler_run``). ``handover`` is what one stage hands the next; ``class_labels`` parses class
choices as people type them.
"""
