"""The one owner of the stage file's JSON layout: its version, and how every older one is read.

A stage file's metadata holds the config as JSON with ``format_version``.
Configs in memory (``StageConfig``, ``ClassifierConfig``) know only the
current layout; this module writes the version beside them and brings any
older layout up to date before they are built, so a file written by any
release of the pack keeps loading.

Versions:

* 1: the first release (the pack's own U-Net only).
* 2: U-Net options for the released ADM files (fractional multipliers, head
  channels, QKV order, resblock up/down, scale-shift), ``null_class``,
  ``aug_input`` and the raw-timestep noise input. Every new field had a
  default, so a version-1 layout reads as it is.
* 3: one meaning per name. The stage's ``kind`` became ``network`` (and
  ``"diffusion"``, the U-Net, became ``"unet"``); the schedule's ``kind``
  became ``beta_schedule``.
* 4: text conditioning and DeepFloyd IF's U-Net options: the stage's ``text``
  (encoder width, name, tokens) and the U-Net's ``activation``,
  ``embedding_channels``, ``block_embedding_act``, ``embedding_act``,
  ``resblock_scale``, ``mid_resblock_scale``, ``text_channels``,
  ``text_pool_heads``, ``text_only_resolutions`` and per-level
  ``num_res_blocks``. All default to the earlier behaviour, so a version-3
  layout reads as it is; the bump makes an older pack refuse an IF stage by
  name ("newer than this pack") instead of tripping over an unknown key.
* 5: the augmentation's ``apply`` ("lowres", as before, or "upsampled": noise
  after upsampling, DeepFloyd IF stage II's conditioning) and the ``if_steps``
  augmentation schedule (IF's integer noise_level). A version-4 layout reads
  as it is, except an IF stage II converted by a version-4 pack, which gets
  IF's augmentation; an older pack refuses a version-5 IF stage II file
  instead of sampling it with the wrong conditioning.
* 6: ``sampling`` (sampler, steps, spacing), how a stage made for one sampling
  (a distilled student, ``train.distill``) must be sampled; empty for every
  other stage, so a version-5 layout reads as it is; an older pack refuses a
  distilled stage instead of sampling it at steps it was not made for.

**How a later field is added** (the rule the text-conditioning and
distillation work follows):

1. Give the field a default that means "as before" in its dataclass, so
   files without it load unchanged and old behaviour stays the default.
2. If files written by this release must not be read by older releases
   (they would silently ignore the field and sample wrongly), bump
   ``FORMAT_VERSION`` and describe the version above; an older pack then
   refuses the file with "stage format is newer than this pack". A field
   whose absence an old reader handles correctly needs no bump.
3. A rename or a changed meaning always bumps the version and adds a step to
   ``_UPGRADES`` that rewrites the previous layout.
4. Test it: a file in the previous layout (write its JSON by hand) loads and
   equals the new config, and a round trip through ``save_stage`` /
   ``load_stage`` keeps the field (``tests/test_checkpoint.py``).
"""
from __future__ import annotations

import copy

from ..base.errors import CascadeError
from ..models.config import StageConfig
from ..models.noisy_classifier import ClassifierConfig

FORMAT_VERSION = 6
# files written before versions were recorded are read as the oldest layout: every upgrade step
# only renames keys that are present, so this is safe for any of them
UNVERSIONED = 1


def _v2_to_v3(d: dict) -> dict:
    """``kind`` -> ``network`` (``diffusion`` -> ``unet``); schedule ``kind`` ->
    ``beta_schedule``."""
    if "kind" in d:
        kind = d.pop("kind")
        d["network"] = "unet" if kind == "diffusion" else kind
    schedule = d.get("schedule")
    if isinstance(schedule, dict) and "kind" in schedule:
        schedule["beta_schedule"] = schedule.pop("kind")
    return d


# version v's layout -> version v + 1's (1 and 2 share one layout; 4 and 6 only added fields)
def _v4_to_v5(d: dict) -> dict:
    """A DeepFloyd IF stage II converted by a version-4 pack was recorded with our low-res
    augmentation; it is IF's (noise after upsampling, integer noise_level)."""
    source = str(d.get("training", {}).get("source", ""))
    if d.get("role") == "sr" and source.startswith("DeepFloyd IF"):
        d["augmentation"] = {**d.get("augmentation", {}), "schedule": "if_steps",
                             "apply": "upsampled"}
    return d


_UPGRADES = {1: lambda d: d, 2: _v2_to_v3, 3: lambda d: d, 4: _v4_to_v5, 5: lambda d: d}


def upgrade(d: dict) -> dict:
    """A config dict of any released version, rewritten to the current layout (a copy)."""
    if not isinstance(d, dict):
        raise CascadeError("stage metadata is not a JSON object", "an object", type(d).__name__)
    d = copy.deepcopy(d)
    version = d.pop("format_version", UNVERSIONED)
    if not isinstance(version, int) or version < 1:
        raise CascadeError("unknown stage format version", f"1..{FORMAT_VERSION}", version)
    if version > FORMAT_VERSION:
        raise CascadeError("stage format is newer than this pack", f"<= {FORMAT_VERSION}",
                           version)
    for v in range(version, FORMAT_VERSION):
        d = _UPGRADES[v](d)
    return d


def to_json(config) -> dict:
    """A StageConfig or ClassifierConfig as JSON values, with the current format version."""
    return {**config.to_dict(), "format_version": FORMAT_VERSION}


def stage_config(d: dict) -> StageConfig:
    """The StageConfig of a stage file's (or a run's ``config.json``) JSON, of any version."""
    return StageConfig.from_dict(upgrade(d))


def classifier_config(d: dict) -> ClassifierConfig:
    """The ClassifierConfig of a classifier file's JSON, of any version."""
    return ClassifierConfig.from_dict(upgrade(d))
