"""Training options: one frozen dataclass, written as JSON into every run folder."""
from __future__ import annotations

import dataclasses
import inspect
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidtoon.errors import VidtoonError

#: the pixel-space training targets (``--target``) made from each photo by trainer.edges
TARGETS = ("surface", "toon")


@dataclass(frozen=True)
class TrainOptions:
    """Everything a training run depends on (defaults: the recipe of the trained ``classic`` model)."""

    photos: str = ""                      # folder of real photos (any sizes)
    cartoons: str = ""                    # folder of cartoon images (any sizes)
    out: str = "runs"                     # parent folder of the numbered run folders
    arch: str = "fast"                    # generator: "fast", "toon" or "cartoongan" (the paper's)
    g_config: dict[str, Any] = field(default_factory=dict)  # generator constructor keywords (widths...)
    d_width: int = 16                     # discriminator first-layer channels (32 in the paper)
    d_spectral: bool = True               # spectral norm on D: a weaker, steadier D for short runs
    gan_loss: str = "lsgan"               # "bce" (paper) or "lsgan"
    content_net: str = "efficientnet-lite0"  # feature network of the content loss
    content_weights: str | None = None    # local weights file (needed for vgg19)
    content_weight: float = 0.02          # w in L = L_adv + w * L_con (paper: 10 on VGG19; see README/MODEL_CARD)
    surface_weight: float = 50.0          # squared error to the flattened surface target (0 = off)
    target: str = "surface"               # that target: "surface" (mean shift + Canny on the photo) or "toon"
                                          # (mean shift + tones + outlines of the flat image, trainer.edges)
    adv_weight: float = 1.0               # weight of the adversarial term of G (AnimeGANv3's tail: small)
    flat_weight: float = 5.0              # edge-aware flatness prior on G(p) (0 = off)
    line_boost: float = 10.0              # extra weight of outline pixels in the surface term
    crop: int = 128                       # training crop size in pixels
    batch: int = 8                        # images per step (paper: 8)
    init_steps: int = 1500                # initialization phase (no adversarial loss), in steps
    steps: int = 5000                     # adversarial phase steps
    lr: float = 2e-4                      # Adam learning rate (G and D), adversarial phase
    init_lr: float = 1e-3                 # G's learning rate in the initialization phase
    betas: tuple[float, float] = (0.5, 0.999)  # Adam betas
    lr_decay_every: int = 2500            # step decay: multiply lr by lr_decay_gamma every N adversarial steps
    lr_decay_gamma: float = 0.5
    ema_decay: float = 0.998              # EMA of G's weights (params_ema)
    cartoon_kinds: tuple[str, ...] = ()   # keep only these `kind`s of the cartoons' MANIFEST.tsv (empty: all)
    holdout: float = 0.0                  # fraction of images kept out of training (by file-name hash), for evaluation
    sample_every: int = 250               # sample grid every N steps
    checkpoint_every: int = 250           # checkpoint every N steps
    log_every: int = 10                   # loss CSV row every N steps
    seed: int = 0
    threads: int = 0                      # torch CPU threads (0: all cores)
    amp: bool = True                      # mixed precision on CUDA (ignored on CPU)
    device: str = "auto"                  # "auto", "cpu", "cuda", "cuda:N"
    init_from: str | None = None          # start G (and D) from this run folder or checkpoint (fine-tuning)

    def validate(self) -> "TrainOptions":
        """Raise VidtoonError for an option that cannot work; return self."""
        from vidtoon.trainer.features import CONTENT_NETS
        from vidtoon.networks import ARCHS

        checks = [
            (self.arch in ARCHS, f"--arch must be one of {', '.join(ARCHS)}"),
            (self.gan_loss in ("bce", "lsgan"), "--gan-loss must be bce or lsgan"),
            (self.target in TARGETS, f"--target must be one of {', '.join(TARGETS)}"),
            (self.adv_weight >= 0, "--adv-weight must be >= 0"),
            (self.content_net in CONTENT_NETS, f"--content-net must be one of {', '.join(CONTENT_NETS)}"),
            (self.crop >= 32 and self.crop % 8 == 0, "--crop must be a multiple of 8, at least 32"),
            (self.batch >= 1, "--batch must be at least 1"),
            (self.init_steps >= 0 and self.steps >= 0, "step counts must be >= 0"),
            (self.lr > 0 and self.init_lr > 0, "--lr must be positive"),
            (min(self.content_weight, self.surface_weight, self.flat_weight) >= 0, "loss weights must be >= 0"),
            (0 <= self.holdout < 1, "--holdout must be in [0, 1)"),
            (0 <= self.ema_decay < 1, "--ema-decay must be in [0, 1)"),
            (min(self.sample_every, self.checkpoint_every, self.log_every) >= 1, "intervals must be >= 1"),
        ]
        for ok, msg in checks:
            if not ok:
                raise VidtoonError(msg)
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise VidtoonError(f"--device must be auto, cpu, cuda or cuda:N (got {self.device!r})")
        known = [p for p in inspect.signature(ARCHS[self.arch]).parameters if p not in ("self", "args", "kwargs")]
        unknown = [k for k in self.g_config if k not in known]
        if unknown:
            raise VidtoonError(f"--g-config {', '.join(unknown)}: not an option of the {self.arch} generator "
                               f"(its options: {', '.join(known)})")
        return self

    def to_json(self) -> str:
        """The resolved options as JSON (what the run folder stores)."""
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json_file(cls, path: str | Path) -> "TrainOptions":
        """Read options written by :meth:`to_json` (for --resume)."""
        data = json.loads(Path(path).read_text())
        data["betas"] = tuple(data["betas"])
        data["cartoon_kinds"] = tuple(data.get("cartoon_kinds", ()))
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
