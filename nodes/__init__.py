"""The ComfyUI nodes of the cascade pack (V1 node API), ids prefixed CDM."""
from .augment_nodes import CDMCondAugment
from .comfy_samplers import CDMCascadeSigmas
from .inspect_nodes import CDMStageInspector
from .sampling_nodes import CDMBaseSampler, CDMRefiner, CDMSuperResStage
from .stage_nodes import CDMClassifierLoader, CDMStageInfo, CDMStageLoader
from .sweep_nodes import CDMSweep

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
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "CDMStageLoader": "Cascade Stage Loader",
    "CDMBaseSampler": "BaseSampler",
    "CDMCondAugment": "CondAugment",
    "CDMSuperResStage": "SuperResStage",
    "CDMRefiner": "Refiner",
    "CDMStageInfo": "Stage Info",
    "CDMClassifierLoader": "Cascade Classifier Loader",
    "CDMStageInspector": "Stage Inspector",
    "CDMSweep": "Sweep (XY plot)",
    "CDMCascadeSigmas": "Cascade Sigmas",
}
