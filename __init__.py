"""ComfyUI entry point of the pixel-space cascaded diffusion pack.

ComfyUI imports this folder as a package (under whatever name its folder has);
everything is imported relatively, so the pack never shadows ComfyUI's own
top-level ``nodes`` module and never edits ``sys.path``. Outside ComfyUI the
import also works (the model-folder registration is then skipped).
"""
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from .nodes.comfy_bridge import register_model_folder

register_model_folder()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
