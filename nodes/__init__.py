"""The ComfyUI nodes of the cascade pack (V1 node API), ids prefixed CDM."""
from .augment_nodes import CDMCondAugment
from .comfy_samplers import CDMCascadeSigmas
from .inspect_nodes import CDMStageInspector
from .region_nodes import CDMRegion
from .sampling_nodes import CDMBaseSampler, CDMRefiner, CDMSuperResStage
from .stage_nodes import CDMClassifierLoader, CDMStageInfo, CDMStageLoader
from .sweep_nodes import CDMSweep
from .text_nodes import CDMTextEncode

NODE_CLASS_MAPPINGS = {
    "CDMStageLoader": CDMStageLoader,
    "CDMBaseSampler": CDMBaseSampler,
    "CDMCondAugment": CDMCondAugment,
    "CDMSuperResStage": CDMSuperResStage,
    "CDMRefiner": CDMRefiner,
    "CDMStageInfo": CDMStageInfo,
    "CDMClassifierLoader": CDMClassifierLoader,
    "CDMStageInspector": CDMStageInspector,
    "CDMSweep": CDMSweep,
    "CDMCascadeSigmas": CDMCascadeSigmas,
    "CDMTextEncode": CDMTextEncode,
    "CDMRegion": CDMRegion,
}
# one style: "CDM" (Cascaded Diffusion Models, the paper; also the node ids' prefix) and the
# node's job in plain words. The ids stay: saved workflows use them.
NODE_DISPLAY_NAME_MAPPINGS = {
    "CDMStageLoader": "CDM Stage Loader",
    "CDMBaseSampler": "CDM Base Sampler",
    "CDMCondAugment": "CDM Cond Augment",
    "CDMSuperResStage": "CDM Super-Resolution Stage",
    "CDMRefiner": "CDM Refiner",
    "CDMStageInfo": "CDM Stage Info",
    "CDMClassifierLoader": "CDM Classifier Loader",
    "CDMStageInspector": "CDM Stage Inspector",
    "CDMSweep": "CDM Sweep (XY Plot)",
    "CDMCascadeSigmas": "CDM Cascade Sigmas",
    "CDMTextEncode": "CDM Text Encode",
    "CDMRegion": "CDM Region",
}
