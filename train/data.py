"""Training data: image folders and .npz arrays, with randomness keyed to each sample.

Every random choice for one training example (flip, crop, label dropout,
timestep, noise, augmentation level, blur) comes from a generator seeded with
that example's global position in the run, so a resumed run and a run split
over several processes see exactly the same examples.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from cascade_core import CascadeError, NoiseSource, condition_augment, downsample, from_uint8
from cascade_core.process.augment import draw_training_augmentation
from cascade_core.process.deblock import deblock

# every random choice of an example is drawn from a generator keyed seed * EXAMPLE_KEY_STRIDE + n,
# n its global index in the run; the data order of epoch e is a permutation seeded
# seed * EPOCH_SEED_MIX + e
EXAMPLE_KEY_STRIDE = 2 ** 40
GOLDEN_RATIO_FRACTION = 0.6180339887498949
EPOCH_SEED_MIX = 7919
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"}


CACHE_BUDGET_BYTES = 2 * 2 ** 30  # decoded images kept in memory at most (CIFAR-10 at 32px: 147 MB)


class ImageSource:
    """Uniform access to an image folder or an .npz file: ``load(i)`` gives uint8 HWC RGB."""

    def __init__(self, path):
        self.path = Path(path)
        self.files: list[Path] = []
        self.array = None
        self.cache: tuple[int, np.ndarray] | None = None  # (size, every image decoded at it)
        if not self.path.exists():
            raise CascadeError("training data not found", "an image folder or an .npz file",
                               str(self.path))
        if self.path.is_file():
            self._open_npz()
        else:
            self._open_folder()

    def _open_folder(self):
        subdirs = sorted(d for d in self.path.iterdir()
                         if d.is_dir() and not d.name.startswith("."))
        if subdirs:
            self.class_names = tuple(d.name for d in subdirs)
            per_class = [sorted(f for f in d.iterdir() if f.suffix.lower() in IMAGE_EXTS)
                         for d in subdirs]
            empty = [d.name for d, fs in zip(subdirs, per_class) if not fs]
            if empty:
                raise CascadeError(f"class folders without images in {self.path}",
                                   "images in every class folder", empty[:5])
            self.files = [f for fs in per_class for f in fs]
            self.labels = np.concatenate([np.full(len(fs), i) for i, fs in enumerate(per_class)])
        else:
            self.class_names = ()
            self.files = sorted(f for f in self.path.iterdir() if f.suffix.lower() in IMAGE_EXTS)
            self.labels = np.full(len(self.files), -1)
        if not self.files:
            raise CascadeError(f"no images in {self.path}",
                               f"files ending in {sorted(IMAGE_EXTS)}", "none")

    def _open_npz(self):
        if self.path.suffix != ".npz":
            raise CascadeError("training data file must be an .npz archive", "*.npz",
                               self.path.name)
        try:
            z = np.load(self.path, allow_pickle=False)
            images = z["images"]
        except KeyError:
            raise CascadeError(f"{self.path.name} has no 'images' array",
                               "keys 'images' [, 'labels']", sorted(z.files)) from None
        except (OSError, ValueError) as e:
            raise CascadeError(f"cannot read {self.path.name} ({e})") from None
        rgb = images.ndim == 4 and 3 in (images.shape[1], images.shape[3])
        if not rgb or images.dtype != np.uint8:
            raise CascadeError(f"{self.path.name}: 'images' must be uint8 NHWC or NCHW RGB",
                               "(N, H, W, 3) uint8", f"{images.shape} {images.dtype}")
        self.array = images if images.shape[3] == 3 else images.transpose(0, 2, 3, 1)
        if len(self.array) == 0:
            raise CascadeError(f"{self.path.name} holds no images", ">= 1 image", 0)
        self.labels = np.full(len(self.array), -1)
        if "labels" in z.files:
            self.labels = z["labels"].astype(np.int64)
        self.class_names = ()
        if "class_names" in z.files:
            self.class_names = tuple(str(c) for c in z["class_names"])
        if len(self.labels) != len(self.array):
            raise CascadeError(f"{self.path.name}: one label per image", len(self.array),
                               len(self.labels))
        if not self.class_names and (self.labels >= 0).any():
            self.class_names = tuple(str(i) for i in range(int(self.labels.max()) + 1))

    def __len__(self) -> int:
        return len(self.array) if self.array is not None else len(self.files)

    def drop(self, indices):
        """Leave the images at ``indices`` out of the set (unreadable ones, --bad-data skip);
        before ``preload``, which caches by position."""
        keep = np.setdiff1d(np.arange(len(self.files)), np.asarray(list(indices), dtype=int))
        self.files = [self.files[i] for i in keep]
        self.labels = self.labels[keep]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def native_size(self) -> int:
        """Side of the first image (used when scoring a folder of samples at their own size)."""
        if self.array is not None:
            return int(self.array.shape[1])
        with Image.open(self.files[0]) as f:
            return min(f.size)

    def preload(self, size: int, budget_bytes: int = CACHE_BUDGET_BYTES, log=None) -> bool:
        """Decode (and resize) every image once, into memory, so that training reads arrays
        instead of decoding JPEGs at every step (15-20% of a CPU step otherwise). Skipped, with
        a line saying so, when the set at ``size`` would take more than ``budget_bytes``."""
        need = len(self) * size * size * 3
        say = log or _silent
        if need > budget_bytes:
            say(f"images not cached: {len(self)} at {size}px need {need / 2**20:.0f} MB, more "
                f"than {budget_bytes / 2**20:.0f} MB (they are decoded at every step instead)")
            return False
        t0 = time.time()
        cache = np.empty((len(self), size, size, 3), dtype=np.uint8)
        for i in range(len(self)):
            cache[i] = self.load(i, size)
        self.cache = (size, cache)
        say(f"decoded {len(self)} images at {size}px into memory ({need / 2**20:.0f} MB) in "
            f"{time.time() - t0:.0f} s")
        return True

    def load(self, i: int, size: int) -> np.ndarray:
        """Image ``i`` as uint8 (size, size, 3): shorter side resized with anti-aliasing,
        centre-cropped."""
        if self.cache is not None and self.cache[0] == size:
            return self.cache[1][i]
        if self.array is not None:
            img = Image.fromarray(self.array[i])
        else:
            try:
                with Image.open(self.files[i]) as f:
                    img = f.convert("RGB")
            except (UnidentifiedImageError, OSError) as e:
                raise CascadeError(
                    f"cannot read image {self.files[i]} ({type(e).__name__})") from None
        w, h = img.size
        if (w, h) != (size, size):
            scale = size / min(w, h)
            img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))),
                             Image.BICUBIC, reducing_gap=None)
            w, h = img.size
            left, top = (w - size) // 2, (h - size) // 2
            img = img.crop((left, top, left + size, top + size))
        return np.asarray(img, dtype=np.uint8)


@dataclass
class ExampleMaker:
    """Turns one image and its key into a training example for a stage of ``role``."""

    role: str
    resolution: int
    low_res: int
    crop: int
    crop_fraction: float
    batch: int
    flip: bool
    label_dropout: float
    timesteps: int
    refiner_max_t: float
    s_max: float
    aug_schedule: str
    blur_prob: float
    blur_range: tuple
    deblock: float = 0.0
    shift: int = 0

    def __call__(self, image: np.ndarray, label: int, key: int) -> dict:
        g = torch.Generator().manual_seed(int(key))
        x = from_uint8(image)
        if self.deblock:  # at the image's stored grid, before a flip or crop moves it
            x = deblock(x[None], self.deblock)[0]
        u = torch.rand(3, generator=g)
        if self.flip and u[0] < 0.5:
            x = x.flip(-1)
        if self.shift:
            x = shifted(x, torch.randint(self.shift + 1, (2,), generator=g).tolist())
        low = None
        if self.role == "sr":
            low = downsample(x[None], self.low_res)[0]
        elif self.role == "refiner":  # a softened copy of the target: what an SR stage hands over
            soft = downsample(x[None], max(self.resolution // 2, 1))
            low = F.interpolate(soft, size=x.shape[-2:], mode="bilinear", align_corners=False)[0]
        if self.crop and low is not None and self.crops_step(key):
            x, low = self._crop(x, low, g)
        example = {"x0": x, "label": torch.tensor(-1 if u[1] < self.label_dropout else int(label))}
        t_max = self.timesteps
        if self.role == "refiner":
            t_max = max(1, int(self.refiner_max_t * self.timesteps))
        example["t"] = torch.randint(t_max, (), generator=g)
        example["noise"] = torch.randn(x.shape, generator=g)
        if low is not None:
            s, sigma = draw_training_augmentation(1, self.s_max, self.blur_prob,
                                                  blur_range=self.blur_range, generator=g)
            example["cond"] = condition_augment(low[None], s, NoiseSource([g]),
                                                schedule=self.aug_schedule, blur_sigma=sigma)[0]
            example["s"] = s[0]
        return example

    def crops_step(self, key: int) -> bool:
        """Whether the optimizer step this example belongs to trains on crops. The choice is per
        step, so a batch (and every micro-batch and process of it) shares one shape; steps
        follow the golden-ratio sequence, which spreads ``crop_fraction`` of them evenly."""
        if self.crop_fraction >= 1:
            return True
        step = (int(key) % EXAMPLE_KEY_STRIDE) // self.batch
        return (step * GOLDEN_RATIO_FRACTION) % 1.0 < self.crop_fraction

    def _crop(self, x, low, g):
        f = x.shape[-1] // low.shape[-1]
        c, H = self.crop, x.shape[-1]
        top, left = (torch.randint((H - c) // f + 1, (2,), generator=g) * f).tolist()
        return (x[:, top:top + c, left:left + c],
                low[:, top // f:(top + c) // f, left // f:(left + c) // f])


def shifted(x: torch.Tensor, by: list[int]) -> torch.Tensor:
    """CHW ``x`` moved right and down by ``by`` = (dx, dy) pixels, the uncovered strips filled
    by reflection. A grid fixed to the stored image (JPEG's 8 px blocks) then sits at a random
    phase from the border, so a stage cannot learn to draw it from the border."""
    dx, dy = by
    if not dx and not dy:
        return x
    h, w = x.shape[-2:]
    if max(dx, dy) >= min(h, w):
        raise CascadeError("--shift must be smaller than the training images",
                           f"< {min(h, w)} px", max(dx, dy))
    return F.pad(x[None], (dx, 0, dy, 0), mode="reflect")[0, :, :h, :w]


@dataclass
class PairMaker:
    """A (target, its downsampled low-res copy, label) example for the shallow cascade."""

    resolution: int
    low_res: int
    flip: bool
    label_dropout: float

    def __call__(self, image: np.ndarray, label: int, key: int) -> dict:
        g = torch.Generator().manual_seed(int(key))
        x = from_uint8(image)
        u = torch.rand(2, generator=g)
        if self.flip and u[0] < 0.5:
            x = x.flip(-1)
        return {"x_high": x, "x_low": downsample(x[None], self.low_res)[0],
                "label": torch.tensor(-1 if u[1] < self.label_dropout else int(label))}


class KeyedDataset(torch.utils.data.Dataset):
    """Indexed by (dataset index, sample key) pairs from ``KeyedBatchSampler``."""

    def __init__(self, source: ImageSource, maker: ExampleMaker):
        self.source, self.maker = source, maker

    def __len__(self):
        return len(self.source)

    def __getitem__(self, item):
        idx, key = item
        return self.maker(self.source.load(idx, self.maker.resolution),
                          int(self.source.labels[idx]), key)


@dataclass(frozen=True)
class BatchOrder:
    """Which examples make which optimizer steps: the global ``batch``, split into ``accum``
    micro-batches, for steps ``start_step + 1 .. steps`` of a run seeded ``seed``."""

    batch: int
    steps: int
    seed: int
    start_step: int = 0
    accum: int = 1


class KeyedBatchSampler(torch.utils.data.Sampler):
    """Yields this rank's share of each micro-batch as (index, key) lists, from ``start_step`` on.

    Global sample n (n = step * batch + j) is dataset item perm_epoch[n % N]
    with epoch = n // N, and its key is ``seed * 2**40 + n``.
    """

    def __init__(self, n_items: int, order: BatchOrder, rank: int = 0, world: int = 1):
        self.n, self.batch, self.accum = n_items, order.batch, order.accum
        self.rank, self.world, self.seed = rank, world, order.seed
        self.start, self.steps = order.start_step, order.steps
        self.micro = self.batch // self.accum
        if self.micro % world:
            raise CascadeError("batch size must split evenly across processes",
                               f"a multiple of {world * self.accum}", self.batch)
        self.share = self.micro // world
        self._perm_epoch, self._perm = -1, None

    def _item(self, n):
        epoch = n // self.n
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(self.seed * EPOCH_SEED_MIX + epoch)
            self._perm = torch.randperm(self.n, generator=g)
            self._perm_epoch = epoch
        return int(self._perm[n % self.n])

    def __iter__(self):
        for step in range(self.start, self.steps):
            for m in range(self.accum):
                first = step * self.batch + m * self.micro + self.rank * self.share
                yield [(self._item(n), self.seed * EXAMPLE_KEY_STRIDE + n)
                       for n in range(first, first + self.share)]

    def __len__(self):
        return (self.steps - self.start) * self.accum


def loader(source, maker, order: BatchOrder, *, workers: int = 0, rank: int = 0, world: int = 1):
    """Batches of keyed examples for optimizer steps ``order.start_step + 1 .. order.steps`` of
    this rank."""
    sampler = KeyedBatchSampler(len(source), order, rank=rank, world=world)
    context = "spawn" if workers and os.name != "nt" else None
    # a private generator: creating the iterator must not draw from the global RNG (dropout's),
    # or a resumed run would see different dropout masks than an uninterrupted one
    return torch.utils.data.DataLoader(KeyedDataset(source, maker), batch_sampler=sampler,
                                       num_workers=workers,
                                       generator=torch.Generator().manual_seed(order.seed),
                                       multiprocessing_context=context)


VERIFY_BUDGET_S = 60.0


def _silent(*args, **kwargs):
    pass
  # --verify-data auto decodes everything when that takes about this long


def _decodes(path: Path) -> bool:
    try:
        with Image.open(path) as img:
            img.convert("RGB")
        return True
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return False


def open_source(cfg, size: int, log=None) -> tuple[ImageSource, list[str]]:
    """The run's images: opened, checked (``--verify-data``/``--bad-data``) and, with
    ``--cache-images``, decoded once at ``size`` into memory. Returns (source, skipped files)."""
    source = ImageSource(cfg.data)
    skipped = verify_source(source, cfg.verify_data, bad_data=cfg.bad_data, log=log)
    if cfg.cache_images:
        source.preload(size, log=log)
    return source, skipped


def verify_source(source: ImageSource, verify: str, bad_data: str, log=None) -> list[str]:
    """Decode every image before training (an .npz needs nothing). ``auto`` times the first 200
    images and goes on when the whole set takes at most ``VERIFY_BUDGET_S``. Unreadable files are
    an error naming them, or with ``bad_data == "skip"`` are left out and returned."""
    if source.array is not None:
        return []
    verify = "on" if bad_data == "skip" else verify
    n = len(source.files)
    if verify == "off":
        return []
    t0, probe = time.time(), min(n, 200)
    bad = [i for i in range(probe) if not _decodes(source.files[i])]
    estimate = (time.time() - t0) / max(probe, 1) * n
    if verify == "auto" and estimate > VERIFY_BUDGET_S:
        (log or _silent)(f"data check skipped: decoding all {n} images would take about "
                         f"{estimate:.0f} s (--verify-data on forces it)")
        return []
    bad += [i for i in range(probe, n) if not _decodes(source.files[i])]
    names = [str(source.files[i]) for i in bad]
    if bad and bad_data == "error":
        raise CascadeError(f"{len(bad)} image(s) in {source.path} do not decode",
                           "images that decode (or --bad-data skip to leave them out)", names[:5])
    source.drop(bad)
    if not source.files:
        raise CascadeError(f"no readable images in {source.path}", "at least one", 0)
    return names
