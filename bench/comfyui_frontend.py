"""Open every shipped workflow in a real ComfyUI frontend, with Nodes 2.0 off and on.

    pip install --target FE comfyui-frontend-package==1.58.1      # the frontend to try
    pip install playwright                                         # drives the browser
    apt-get install chromium                                       # the browser itself
    python -m bench.comfyui_frontend --comfy COMFY --python COMFY_VENV/bin/python \\
        --front-end-root FE/comfyui_frontend_package/static --out runs/frontend

Starts ``main.py --cpu --front-end-root ...`` on 127.0.0.1 (the pack must be in
``COMFY/custom_nodes/``), then for each renderer (the LiteGraph canvas, then the Vue "Nodes 2.0"
renderer, setting ``Comfy.VueNodes.Enabled``) loads each ``workflows/*.json`` into the page as a
user opening the file would, and checks what the frontend made of it:

* every node's type is known to the frontend (no missing-node placeholder);
* every node's widget values, read back from the page, equal those in the file;
* with Nodes 2.0, every node is drawn as an element of the page;
* the page raised no error of its own (failed requests to endpoints that the backend is too old
  to have are listed apart: they are not the pack's).

Workflows 01, 10 and 12 are also run with the Run button, their results read from the server's
history.
Writes one screenshot per workflow and renderer to ``--out`` (``workflows/*.png`` are the Nodes
2.0 ones, 01 after its run) and prints a table; exits non-zero when a check fails. Needs no
model files: a workflow whose stage files are missing still opens (the frontend's notice of
missing models is captured in the table).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .comfy_server import Server

ROOT = Path(__file__).resolve().parents[1]
VUE_SETTING = "Comfy.VueNodes.Enabled"
RUN_FROM_UI = ("01_base_then_sr", "10_wide_canvas_regions",  # also queued with the Run button
               "12_few_step_cascade")
# what each loaded node looks like to the frontend, read back from the page
READ_GRAPH = """vue => window.app.graph.nodes.map(n => {
    const el = document.querySelector(`[data-node-id="${n.id}"]`);
    const box = vue && el ? (r => [r.x, r.y, r.width, r.height])(el.getBoundingClientRect())
                          : [...n.boundingRect];
    return {id: n.id, type: n.type,
            known: !!(n.constructor && n.constructor.nodeData) || !!n.isVirtualNode,
            widgets: (n.widgets || []).filter(w => w.serialize !== false).map(w => w.value),
            drawn: !!el, box: box}})"""
READ_NOTICE = """() => (document.body.innerText.match(
    /\\d+ issues? found|[^\\n]* is missing/) || [""])[0]"""


def settings(server: Server, *, vue: bool):
    """What a user would have set: the first-run tour done, and the renderer chosen."""
    for key, value in (("Comfy.TutorialCompleted", True), (VUE_SETTING, vue)):
        server.post(f"/settings/{key}", value)


def check_workflow(page, path: Path, *, vue: bool) -> dict:
    """Load one workflow file into the page; return what failed and what the page showed."""
    workflow = json.loads(path.read_text())
    page.evaluate("([wf, name]) => window.app.loadGraphData(wf, true, true, name)",
                  [workflow, path.stem])
    page.wait_for_timeout(2500)
    loaded = {str(n["id"]): n for n in page.evaluate(READ_GRAPH, vue)}
    if vue and not any(n["drawn"] for n in loaded.values()):
        return {"nodes": len(workflow["nodes"]), "notice": "this frontend has no Nodes 2.0",
                "problems": []}
    problems = []
    for node in workflow["nodes"]:
        got = loaded.get(str(node["id"]))
        if got is None:
            problems.append(f"node {node['id']} ({node['type']}) was not loaded")
            continue
        if not got["known"]:
            problems.append(f"node {node['id']}: type {node['type']} unknown to the frontend")
        if got["widgets"] != node.get("widgets_values", []):
            problems.append(f"node {node['id']} ({node['type']}): widgets {got['widgets']} "
                            f"!= file {node.get('widgets_values')}")
        if vue and not got["drawn"]:
            problems.append(f"node {node['id']} ({node['type']}) not drawn by Nodes 2.0")
    problems += [f"nodes {a} and {b} overlap" for a, b in overlaps(loaded)]
    return {"nodes": len(workflow["nodes"]), "problems": problems,
            "notice": page.evaluate(READ_NOTICE)}


def run_from_ui(page, server: Server) -> str:
    """Press Run, as a user would, and wait for the server's history to say how it ended."""
    done = set(server.get("/history"))
    page.locator("button:has-text('Run')").first.click()
    for _ in range(300):
        new = {k: v for k, v in server.get("/history").items() if k not in done}
        if new:
            status = next(iter(new.values()))["status"]
            return status["status_str"] + "".join(
                f": {m[1].get('exception_message', '')}" for m in status["messages"]
                if m[0] == "execution_error")
        page.wait_for_timeout(1000)
    return "no result after 300 s"


def overlaps(loaded: dict) -> list:
    """Pairs of node ids whose drawn boxes (page pixels with Nodes 2.0, canvas units otherwise)
    overlap by more than a few pixels each way."""
    def cross(a, b):
        return (min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]) > 4
                and min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]) > 4)
    nodes = sorted(loaded.values(), key=lambda n: n["id"])
    return [(a["id"], b["id"]) for i, a in enumerate(nodes) for b in nodes[i + 1:]
            if cross(a["box"], b["box"])]


def is_backend_gap(message: str) -> bool:
    """Errors from endpoints a newer backend has (the jobs API, 404s) or from having no network
    (remote assets, the missing-models list asking a download site for file sizes), not ours."""
    return any(s in message for s in ("Jobs API", "Failed to fetch jobs", "status of 404",
                                      "ERR_NAME_NOT_RESOLVED", "Failed to fetch queue",
                                      "Error fetching file size"))


def open_all(server: Server, *, browser: str, out: Path) -> list:
    """Every workflow under both renderers; one result row each."""
    from playwright.sync_api import sync_playwright

    rows = []
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=browser, args=["--no-sandbox"])
        for vue in (False, True):
            settings(server, vue=vue)
            page = chromium.new_page(viewport={"width": 1600, "height": 1000})
            errors = []
            page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
            page.on("console", lambda m, errors=errors: errors.append(m.text)
                    if m.type == "error" else None)
            page.goto(server.url)
            page.wait_for_function("window.app && window.app.graph", timeout=120_000)
            page.wait_for_timeout(3000)
            page.keyboard.press("Escape")
            for path in sorted((ROOT / "workflows").glob("*.json")):
                before = len(errors)
                row = check_workflow(page, path, vue=vue)
                page.mouse.click(800, 990)  # focus the canvas, then fit the graph to the view
                page.keyboard.press(".")
                page.wait_for_timeout(800)
                page.screenshot(path=str(out / f"{path.stem}_{'vue' if vue else 'canvas'}.png"))
                page.keyboard.press("Escape")
                new = errors[before:]
                row.update(workflow=path.stem, renderer="Nodes 2.0" if vue else "canvas",
                           page_errors=[e for e in new if not is_backend_gap(e)],
                           backend_gaps=sum(map(is_backend_gap, new)))
                if path.stem in RUN_FROM_UI:
                    row["run"] = run_from_ui(page, server)
                    page.wait_for_timeout(1500)
                    page.screenshot(path=str(out / f"{path.stem}_{'vue' if vue else 'canvas'}"
                                                    "_ran.png"))
                rows.append(row)
            page.close()
        chromium.close()
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.comfyui_frontend", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--comfy", required=True, type=Path, help="a ComfyUI checkout")
    p.add_argument("--python", default=sys.executable, help="ComfyUI's Python")
    p.add_argument("--front-end-root", type=Path,
                   help="the frontend's static folder (inside comfyui_frontend_package); "
                        "without it, the frontend the backend pins")
    p.add_argument("--browser", default="/usr/bin/chromium", help="a Chromium executable")
    p.add_argument("--out", default=Path("runs/frontend"), type=Path,
                   help="folder for the screenshots and results.json")
    p.add_argument("--port", type=int, default=8198)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    server = Server(args.comfy, args.python, port=args.port,
                    extra=("--front-end-root", str(args.front_end_root))
                    if args.front_end_root else ())
    try:
        server.wait_ready()
        rows = open_all(server, browser=args.browser, out=args.out)
    finally:
        server.stop()
    (args.out / "results.json").write_text(json.dumps(rows, indent=1))
    failed = 0
    for r in rows:
        bad = r["problems"] + r["page_errors"] + (
            [f"Run: {r['run']}"] if r.get("run", "success") != "success" else [])
        failed += bool(bad)
        print(f"{r['workflow']:28s} {r['renderer']:10s} {r['nodes']:2d} nodes  "
              f"{'ok' if not bad else 'FAILED'}  notice: {r['notice'] or '-'}  "
              f"backend/offline errors: {r['backend_gaps']}"
              + (f"  Run: {r['run']}" if "run" in r else ""))
        for line in bad:
            print("    " + line[:300])
    print(f"{len(rows) - failed}/{len(rows)} opened cleanly; screenshots in {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
