"""Score a cascade (or a folder of images) against a dataset: KID, FID, SWD, class accuracy, CAS.

    python -m train.eval --base weights/cifar10-base16.safetensors \\
        --sr weights/cifar10-sr16to32.safetensors --num 1000 --ref ../shared/data/cifar10/test \\
        --metrics kid,fid,acc
    python -m train.eval --images output/cdm --ref ../shared/data/cifar10/test --metrics kid,swd

Say which sample count and which reference split a figure used: both are
printed and stored in the JSON result. FID at 1k samples is strongly biased
upwards; KID is unbiased and comes with its standard deviation over subsets.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cascade_core import CascadeError, PromptEncoder, from_uint8, load_stage, precision

from .data import ImageSource
from .distributed import pick_device
from .metrics import cifar_classifier as C
from .metrics.inception import InceptionFeatures
from .metrics.sample_cascade import Cascade, CascadeSettings, Prompts, sample_cascade
from .metrics.scores import fid, kid, sliced_wasserstein
from .perceptual import DEFAULT

METRICS = ("kid", "fid", "swd", "acc", "cas")
DEFAULT_CLASSIFIER = DEFAULT
PREPROCESSING = "uint8 -> bilinear 299 (align_corners=False) -> x/128-1"


def load_images(path, size: int, limit: int = 0, seed: int = 0, held_out: bool = False):
    """``limit`` images of a folder (all for 0), a fixed random choice. ``held_out``: as many
    from the images that choice leaves out, for selecting checkpoints and settings without
    touching the reported reference set."""
    src = ImageSource(path)
    idx = np.arange(len(src))
    if limit and limit < len(idx):
        chosen = np.random.default_rng(seed).choice(idx, limit, replace=False)
        if held_out:
            rest = np.setdiff1d(idx, chosen)
            if limit > len(rest):
                raise CascadeError("not enough held-out reference images", f"<= {len(rest)}",
                                   limit)
            chosen = np.random.default_rng(seed + 1).choice(rest, limit, replace=False)
        idx = np.sort(chosen)
    elif held_out:
        raise CascadeError("a held-out reference set needs --ref-num below the folder's size",
                           f"< {len(idx)}", limit)
    return np.stack([src.load(int(i), size) for i in idx]), src.labels[idx]


CACHE_DIR = Path.home() / ".cache" / "cdm-eval"


@dataclass(frozen=True)
class EvalOptions:
    """What ``evaluate`` computes and against what: the metrics, how many reference images (0 =
    all), the held-out reference set instead of the reported one, the Inception file, the
    classifier for class agreement, the feature cache and where progress is written."""

    metrics: tuple = ("kid", "fid")
    ref_num: int = 0
    held_out: bool = False
    inception: str | None = None
    classifier: str | None = None
    cache_dir: Path | None = None
    log: object = print


def reference_features(net, ref, size: int, options: EvalOptions):
    """Inception features of the reference split, cached per dataset, split, size and count."""
    limit, cache_dir, held_out = options.ref_num, options.cache_dir, options.held_out
    key = hashlib.sha1(json.dumps([str(Path(ref).resolve()), size, limit, PREPROCESSING,
                                   str(net.path.name)] + (["held-out"] if held_out else []))
                       .encode()).hexdigest()[:16]
    name = f"ref-{Path(ref).name}-{size}px-{limit or 'all'}-{key}.npz"
    cache = cache_dir / name if cache_dir else None
    if cache is not None and cache.is_file():
        z = np.load(cache)
        return z["features"], z["images"]
    images, _ = load_images(ref, size, limit, held_out=held_out)
    options.log(f"reference: {len(images)} images of {ref} at {size}px -> Inception features")
    feats = net(images)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, features=feats, images=images)
    return feats, images


def evaluate(images: np.ndarray, labels, ref: str, options: EvalOptions = EvalOptions()) -> dict:
    """The scores of uint8 NHWC ``images`` (of ``labels``, or None) against the images of
    ``ref``."""
    metrics, ref_num, held_out = options.metrics, options.ref_num, options.held_out
    size = images.shape[1]
    result = {"num_samples": len(images), "reference": str(ref), "resolution": size,
              "reference_set": "held-out" if held_out else "report"}
    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise CascadeError("unknown metrics", f"some of {METRICS}", sorted(unknown))
    if {"kid", "fid"} & set(metrics):
        net = InceptionFeatures(options.inception)
        ref_feats, ref_images = reference_features(net, ref, size=size, options=options)
        t0 = time.time()
        feats = net(images)
        result["inception_seconds"] = round(time.time() - t0, 1)
        result["num_reference"] = len(ref_feats)
        if "kid" in metrics:
            m, s = kid(feats, ref_feats)
            result["kid"], result["kid_std"] = m, s
        if "fid" in metrics:
            result["fid"] = fid(feats, ref_feats)
    else:
        ref_images, _ = load_images(ref, size, ref_num or len(images))
    if "swd" in metrics:
        result["swd"] = sliced_wasserstein(from_uint8(images), from_uint8(ref_images))
    if {"acc", "cas"} & set(metrics):
        if labels is None or (np.asarray(labels) < 0).all():
            raise CascadeError("class accuracy needs class-conditional samples", "labels", "none")
        if "acc" in metrics:
            model, meta = C.load(options.classifier or DEFAULT_CLASSIFIER)
            pred = C.predict(model, C.to_input(images)).argmax(-1).numpy()
            result["class_accuracy"] = float((pred == np.asarray(labels)).mean())
            result["classifier_test_accuracy"] = meta.get("test_accuracy")
        if "cas" in metrics:
            ref_imgs, ref_labels = load_images(ref, 32, ref_num)
            model = C.fit(images, np.asarray(labels), int(np.max(labels)) + 1, log=options.log)
            pred = C.predict(model, C.to_input(ref_imgs)).argmax(-1).numpy()
            result["cas"] = float((pred == ref_labels).mean())
    return result


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--base", help="base stage to sample (with --sr / --refiner for a cascade)")
    src.add_argument("--images", help="score a folder (or .npz) of images instead")
    p.add_argument("--sr", default="")
    p.add_argument("--refiner", default="")
    p.add_argument("--ref", required=True,
                   help="reference images, e.g. ../shared/data/cifar10/test")
    p.add_argument("--ref-num", type=int, default=0, help="reference images used (0 = all)")
    p.add_argument("--ref-held-out", action="store_true",
                   help="score against --ref-num other reference images (disjoint from the "
                        "reported set): for choosing checkpoints and settings")
    p.add_argument("--num", type=int, default=1000,
                   help="samples to draw (1k quick ... 50k paper protocol)")
    p.add_argument("--metrics", default="kid,fid", help=f"comma-separated, of {','.join(METRICS)}")
    p.add_argument("--steps", type=int, default=30,
                   help="base steps; 0: as the stage says (a distilled stage's own sampling)")
    p.add_argument("--sr-steps", type=int, default=30, help="SR steps; 0: as the stage says")
    p.add_argument("--sampler", default="dpmpp_2m")
    p.add_argument("--spacing", default="karras",
                   help="step spacing (a distilled stage: the one it records, trailing)")
    p.add_argument("--sr-sampler", default="", help="the SR stage's sampler (default: --sampler)")
    p.add_argument("--sr-spacing", default="", help="the SR stage's spacing (default: --spacing)")
    p.add_argument("--s", type=float, default=0.1,
                   help="conditioning augmentation level for the SR stage")
    p.add_argument("--truncated", action="store_true",
                   help="truncated (not re-noised) augmentation")
    p.add_argument("--guidance", type=float, default=1.0)
    p.add_argument("--refine-steps", type=int, default=10,
                   help="refiner steps over the part it re-noises; 0: as the stage says")
    p.add_argument("--refine-strength", type=float, default=0.3,
                   help="how much of the refiner's schedule it re-noises the SR output to")
    p.add_argument("--text-encoder", default="",
                   help="a text base stage: the T5 encoder its prompts are encoded with")
    p.add_argument("--prompt", default="a photo of a {}",
                   help="a text base stage: the prompt of each sample, {} replaced by its class "
                        "name (the classes of --ref)")
    p.add_argument("--dtype", default="fp32", choices=("auto", "fp32", "bf16", "fp16"),
                   help="sampling precision (auto: bf16 where the device computes it natively)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu",
                   help="where the cascade samples: cpu, cuda, cuda:N or auto (cuda when present)")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--inception", default=None, help="path to the FID Inception TorchScript file")
    p.add_argument("--classifier", default=None,
                   help=f"classifier for 'acc' (default {DEFAULT_CLASSIFIER.name})")
    p.add_argument("--cache", default=str(CACHE_DIR), help="reference feature cache")
    p.add_argument("--save-samples", default="", help="also write the samples to this .npz")
    p.add_argument("--json", default="", help="append the result as one JSON line to this file")
    return p


def _images(args) -> tuple:
    """(uint8 images, labels or None, the setting that made them) of a folder or a cascade."""
    if args.images:
        size = ImageSource(args.images).native_size()
        images, labels = load_images(args.images, size)
        return images, None if (labels < 0).all() else labels, {"images": args.images}
    device = pick_device(args.device)
    base = load_stage(args.base, device, dtype="fp32")
    sr = load_stage(args.sr, device, dtype="fp32") if args.sr else None
    ref = load_stage(args.refiner, device, dtype="fp32") if args.refiner else None
    settings = CascadeSettings(steps=args.steps, sr_steps=args.sr_steps, sampler=args.sampler,
                               spacing=args.spacing, sr_sampler=args.sr_sampler,
                               sr_spacing=args.sr_spacing, s=args.s, truncated=args.truncated,
                               guidance=args.guidance, refine_steps=args.refine_steps,
                               refine_strength=args.refine_strength, dtype=args.dtype,
                               batch=args.batch)
    if ref is not None:
        settings.refiner_plan(ref)  # a bad strength is refused before anything samples
    prompts = None
    if base.config.text.width:
        if not args.text_encoder:
            raise CascadeError("this base stage is conditioned on text: say which encoder",
                               f"--text-encoder ({base.config.text.encoder})", "none")
        encoder = PromptEncoder.load(args.text_encoder)
        encoder.encoder.to(device)
        prompts = Prompts(encoder, args.prompt, ImageSource(args.ref).class_names)
    images, labels = sample_cascade(Cascade(base, sr, ref), args.num, settings, seed=args.seed,
                                    prompts=prompts)
    keys = ("base", "sr", "refiner", "steps", "sr_steps", "sampler", "spacing", "sr_sampler",
            "sr_spacing", "s", "truncated", "guidance", "seed") + (
        ("text_encoder", "prompt") if prompts else ()) + (
        ("refine_steps", "refine_strength") if ref else ())
    ran = {f"{role}_sampling": sampling_of(settings.plan(stage, steps)) for role, stage, steps in
           (("base", base, args.steps), ("sr", sr, args.sr_steps)) if stage is not None}
    if ref is not None:
        ran["refiner_sampling"] = sampling_of(settings.refiner_plan(ref))
    return images, labels, {**{k: getattr(args, k) for k in keys}, **ran,
                            "dtype": precision.resolve_name(args.dtype, base.device)}


def sampling_of(plan) -> list:
    """[sampler, steps, spacing] a stage was sampled with (steps 0 resolved: a distilled
    stage's own), for the record."""
    return [plan.sampler, plan.steps, plan.spacing]


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    try:
        images, labels, setting = _images(args)
        if args.save_samples:
            np.savez(args.save_samples, images=images,
                     labels=labels if labels is not None else np.full(len(images), -1))
        options = EvalOptions(metrics=tuple(metrics), ref_num=args.ref_num,
                              held_out=args.ref_held_out, inception=args.inception,
                              classifier=args.classifier,
                              cache_dir=Path(args.cache) if args.cache else None)
        scores = evaluate(images, labels, args.ref, options=options)
    except CascadeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result = {**setting, **scores}
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(result) + "\n")
    return 0

if __name__ == "__main__":
    sys.exit(main())
