"""Markdown tables of the quality benchmarks from their JSON results (what bench/RESULTS.md quotes).

    python -m bench.quality.report     # bench/results/{ablation,samplers,shallow_ablation}.json
    python -m bench.quality.report --results DIR

Each table is printed with the sample count and reference split it was measured with; a
benchmark that has not been run is named as such. The cascade's economics are derived here:
sampling seconds per image and model FLOPs per image are what bench.quality.ablation measured
side by
side (``economics`` in its JSON).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..common import RESULTS


def _kid(row) -> str:
    return f"{row['kid']:.4f} ± {row['kid_std']:.4f}" if "kid" in row else "—"


def _level(row) -> str:
    if row["s"] is None:
        return "—"
    return f"{row['s']:g}" + (" (truncated)" if row["truncated"] else "")


def ablation_table(rep: dict) -> str:
    v = rep["variants"]
    lines = [f"{rep['num_samples']} samples per row against {rep['reference']} (Inception features "
             "of "
             f"{max(rep['num_samples'], 2000)} images); training budget {rep['budget_gflop']:,.0f} "
             "GFLOP per "
             f"variant pair ({v['single']['steps']} steps of the single-stage model = "
             f"{v['base']['steps']} base + {v['sr_aug']['steps']} SR steps of the cascade); "
             f"{rep.get('sampler_steps', 30)} DPM-Solver++(2M) steps per stage.", "",
             "| variant | s at sampling | KID ± std | FID | SWD | sampling s / 1k images |",
             "|---|---|---|---|---|---|"]
    for r in rep["rows"]:
        fid = f"{r['fid']:.1f}" if "fid" in r else "—"
        lines.append(f"| {r['variant']} | {_level(r)} | {_kid(r)} | {fid} | {r['swd']:.1f} | "
                     f"{r['sample_seconds'] * 1000 / rep['num_samples']:.0f} |")
    return "\n".join(lines)


def economics_table(rep: dict) -> str:
    rows = rep["rows"]
    single = next(r for r in rows if r["s"] is None)
    best = min((r for r in rows if r["variant"] == "cascade, amortized aug"),
               key=lambda r: r.get("kid", r["swd"]))
    key = "kid" if "kid" in single else "swd"
    lines = ["| | single-stage 32px | cascade 16→32 | cascade / single |", "|---|---|---|---|",
             f"| {key.upper()} (cascade: best s) | {single[key]:.4f} | {best[key]:.4f} (s = "
             f"{_level(best)}) | "
             f"{best[key] / single[key]:.2f}x |",
             f"| training GFLOP (the budget) | {rep['budget_gflop']:,.0f} | "
             f"{rep['budget_gflop']:,.0f} | 1.00x |"]
    eco = rep.get("economics")
    if eco:
        sec, fl = eco["seconds_per_image"], eco["gflop_per_image"]
        lines += [f"| sampling GFLOP per image | {fl['single']:.2f} | {fl['cascade']:.2f} | "
                  f"{fl['cascade'] / fl['single']:.2f}x |",
                  f"| sampling ms per image ({eco['threads']} threads, batch {eco['batch']}, "
                  "alternating) | "
                  f"{sec['single'] * 1e3:.1f} | {sec['cascade'] * 1e3:.1f} | "
                  f"{sec['cascade'] / sec['single']:.2f}x |"]
    return "\n".join(lines)


def samplers_table(rep: dict) -> str:
    lines = [f"{rep['num_samples']} samples per row from `{rep['stage']}` against "
             f"{rep['reference']}.", "",
             "| sampler | steps | grid | model evaluations | KID ± std | SWD | seconds |",
             "|---|---|---|---|---|---|---|"]
    for r in rep["rows"]:
        lines.append(f"| {r['sampler']} | {r['steps']} | {r['spacing']} | {r['nfe']} | {_kid(r)} | "
                     f"{r['swd']:.1f} | "
                     f"{r['seconds']:.0f} |")
    return "\n".join(lines)


def shallow_table(rep: dict) -> str:
    lines = [f"{rep['num_samples']} samples per row against {rep['reference']}; epochs per phase "
             f"{rep['epochs']} of {rep['epoch_size']} images.", "",
             "| coarse → upsampler → refiner | parameters (coarse / up / refiner) | s per epoch, "
             "phase 1 / 2 / 3 | "
             "training s | KID ± std | SWD |", "|---|---|---|---|---|---|"]
    for r in rep["rows"]:
        params = " / ".join(f"{r['params'][k] / 1e6:.2f}M"
                            for k in ("coarse", "upsampler", "refiner"))
        secs = {int(k): v for k, v in r["epoch_seconds"].items()}
        epochs = " / ".join(f"{secs[p]:.0f}" if p in secs else "—" for p in (1, 2, 3))
        combo = r["combo"].replace("->", " → ")
        lines.append(f"| {combo} | {params} | {epochs} | {r['train_seconds']} | {_kid(r)} | "
                     f"{r['swd']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.quality.report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default=str(RESULTS))
    args = p.parse_args(argv)
    results = Path(args.results)

    def load(name):
        path = results / f"{name}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    sections = []
    if (rep := load("ablation")) is not None:
        sections += ["## CDM ablation in miniature", ablation_table(rep), "## Cascade economics",
                     economics_table(rep)]
    if (rep := load("samplers")) is not None:
        sections += ["## Samplers", samplers_table(rep)]
    if (rep := load("shallow_ablation")) is not None:
        sections += ["## Shallow-cascade ablation", shallow_table(rep)]
    missing = [n for n in ("ablation", "samplers", "shallow_ablation") if load(n) is None]
    if missing:
        sections.append(f"not run yet (no JSON in {results}): {', '.join(missing)}")
    print("\n\n".join(sections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
