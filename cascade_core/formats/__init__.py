"""Checkpoint formats: how a Stage is written to and read from files.

``stage_file`` is the pack's own single-file format (safetensors weights plus
a JSON StageConfig); ``atomic`` writes any file via a temporary file and a
rename.

This is also the home of **foreign checkpoint formats**. Each one is an
adapter module here, not a model: it maps a foreign state dict's keys onto the
one U-Net of ``models.unet``, infers a StageConfig from the tensor shapes (and
a table of released files where shapes are not enough), and hands back the
config and weights, so that the rest of the pack never knows where a stage
came from. The first is ``adm`` (with ``adm_table`` and ``torch_file``): OpenAI's
released ADM / improved-diffusion ``.pt`` files; ``convert`` writes any of them
as a stage file of ours.
"""
