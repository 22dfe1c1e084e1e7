"""The released ADM (guided-diffusion, jul-2021) and improved-diffusion (march-2021) files.

Each entry holds what a file's shapes cannot say, from the flags in the two
repositories' READMEs. Entries are keyed by ``adm.fingerprint`` of the file's
(key, shape) list; the fingerprints were computed from key/shape manifests that
``tests/fixtures/adm/make_fixtures.py`` builds with the reference code's own
constructors (``tests/fixtures/adm/manifests.json.gz``), never from our code.
Files with the same shapes share every setting (the LSUN and unconditional
256px ADM files, for one), so one entry lists all their names.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

GUIDED = "openai/guided-diffusion README (jul-2021 release)"
IMPROVED = "openai/improved-diffusion README (march-2021 release)"
GUIDED_URL = "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/"
IMPROVED_URL = "https://openaipublic.blob.core.windows.net/diffusion/march-2021/"


@dataclass(frozen=True)
class TableEntry:
    """What a released file is, beyond its shapes. Every field but the first three can be
    overridden when loading or converting."""

    files: tuple
    fingerprint: str
    what: str
    family: str = "unet"                # unet (a diffusion stage) | classifier (a noisy classifier)
    role: str = "base"                  # base | sr (stages only; a classifier has no role)
    resolution: int = 64
    low_res: int = 0
    num_heads: int = 4
    num_head_channels: int = 0          # > 0 overrides num_heads
    qkv_order: str = "legacy"
    schedule: str = "linear"
    timesteps: int = 1000
    noise_input: str = "timestep"       # timestep (t * 1000 / T) or timestep_raw (t)
    classes: str = "imagenet"           # "imagenet", or "" for unconditional files
    # classifiers only: their depth and multipliers are not decidable from shapes
    channel_mult: tuple = ()
    num_res_blocks: int = 0
    attention_resolutions: tuple = ()
    url: str = ""


def _classifier(size: int, fp: str, *, mult: tuple, depth: int, schedule: str) -> TableEntry:
    return TableEntry(files=(f"{size}x{size}_classifier.pt",), fingerprint=fp,
                      what=f"ADM noisy classifier, ImageNet {size}px ({GUIDED})",
                      family="classifier", role="", resolution=size, num_head_channels=64,
                      schedule=schedule, channel_mult=mult, num_res_blocks=depth,
                      attention_resolutions=(32, 16, 8), url=GUIDED_URL)


RELEASED = (
    TableEntry(("64x64_diffusion.pt",), "8d51f3cd464a9d93",
               f"ADM-G base, ImageNet 64px ({GUIDED})",
               resolution=64, num_head_channels=64, qkv_order="new", schedule="cosine",
               url=GUIDED_URL),
    TableEntry(("128x128_diffusion.pt",), "554598b9f306edeb",
               f"ADM-G base, ImageNet 128px ({GUIDED})",
               resolution=128, num_heads=4, url=GUIDED_URL),
    TableEntry(("256x256_diffusion.pt",), "df0112d39f62a529",
               f"ADM-G base, ImageNet 256px ({GUIDED})",
               resolution=256, num_head_channels=64, url=GUIDED_URL),
    TableEntry(("256x256_diffusion_uncond.pt", "lsun_bedroom.pt", "lsun_cat.pt", "lsun_horse.pt",
                "lsun_horse_nodropout.pt"), "3aeb4babcb60e229",
               f"ADM unconditional 256px: ImageNet, LSUN bedroom/cat/horse ({GUIDED})",
               resolution=256, num_head_channels=64, classes="", url=GUIDED_URL),
    TableEntry(("512x512_diffusion.pt",), "ead1829fe6bd0974",
               f"ADM-G base, ImageNet 512px ({GUIDED})",
               resolution=512, num_head_channels=64, url=GUIDED_URL),
    TableEntry(("64_256_upsampler.pt",), "45b1bfd1d49e6421",
               f"ADM-U upsampler 64->256px ({GUIDED})",
               role="sr", resolution=256, low_res=64, num_heads=4, url=GUIDED_URL),
    TableEntry(("128_512_upsampler.pt",), "94139ba61437c743",
               f"ADM-U upsampler 128->512px ({GUIDED})",
               role="sr", resolution=512, low_res=128, num_head_channels=64, url=GUIDED_URL),
    _classifier(64, "099578719c2e82df", mult=(1, 2, 3, 4), depth=4, schedule="cosine"),
    _classifier(128, "f3381788740e892b", mult=(1, 1, 2, 3, 4), depth=2, schedule="linear"),
    _classifier(256, "c17f1f23f5c7a224", mult=(1, 1, 2, 2, 4, 4), depth=2, schedule="linear"),
    _classifier(512, "e95f7df7dd312d62", mult=(0.5, 1, 1, 2, 2, 4, 4), depth=2, schedule="linear"),
    TableEntry(("cifar10_uncond_50M_500K.pt",), "359e4443d891217e",
               f"improved DDPM, CIFAR-10 32px, unconditional ({IMPROVED})", resolution=32,
               schedule="cosine", timesteps=4000, classes="", url=IMPROVED_URL),
    TableEntry(("imagenet64_uncond_100M_1500K.pt",), "3042676c965bce13",
               f"improved DDPM, ImageNet 64px, unconditional ({IMPROVED})", resolution=64,
               schedule="cosine", timesteps=4000, classes="", url=IMPROVED_URL),
    TableEntry(("imagenet64_cond_270M_250K.pt",), "6e47baa2862f9edc",
               f"improved DDPM, ImageNet 64px, class-conditional ({IMPROVED})", resolution=64,
               schedule="cosine", timesteps=4000, noise_input="timestep_raw", url=IMPROVED_URL),
    TableEntry(("upsample_cond_500K.pt",), "7760738d9ba298cf",
               f"improved DDPM upsampler 64->256px, class-conditional ({IMPROVED})", role="sr",
               resolution=256, low_res=64, timesteps=4000, noise_input="timestep_raw",
               url=IMPROVED_URL),
    TableEntry(("lsun_uncond_100M_1200K_bs128.pt", "lsun_uncond_100M_2400K_bs64.pt"),
               "fa216c151a1e2c1a",
               f"improved DDPM, LSUN bedroom 256px, unconditional ({IMPROVED})", resolution=256,
               num_heads=1, classes="", url=IMPROVED_URL),
)


@cache
def imagenet_class_names() -> tuple:
    """The 1000 ImageNet class names in index order: OpenAI CLIP's cleaned names, unique and
    comma-free (its two repeats renamed: 744 "projectile", 837 "dark glasses")."""
    text = (Path(__file__).parent / "data" / "imagenet_classes.txt").read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line)


def entry_for_file(name: str) -> TableEntry | None:
    """The entry listing a released file name (for download hints; loading never uses names)."""
    return next((e for e in RELEASED if name in e.files), None)
