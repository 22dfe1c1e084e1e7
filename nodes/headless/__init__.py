"""A headless ComfyUI executor for the shipped workflows: the pack's nodes, no ComfyUI.

``graph`` turns a UI-format workflow into an API prompt (links, widget
values by position, renamed widgets) and orders it; ``io_nodes`` stands in
for ComfyUI's LoadImage / SaveImage / PreviewImage; ``executor`` runs a prompt
with an explicit ``RunContext`` (``context``); ``builder`` writes the shipped
workflows from compact specs. The command line is ``python -m nodes.run_workflow``.
"""
