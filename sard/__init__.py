"""SARD: segmentation-aware industrial anomaly synthesis by region-constrained few-step diffusion."""

from pathlib import Path

from .denoiser import SARDDenoiser
from .discriminator import MaskAwareDiscriminator
from .pipeline import SARDPipeline
from .scheduler import SARDScheduler

__version__ = "0.1.0"

_BUNDLED = Path(__file__).resolve().parent / "checkpoints" / "magnetic-tile"
# The checkpoint shipped with the package (a model of magnetic-tile surfaces), or None until one is bundled.
DEFAULT_CHECKPOINT: str | None = str(_BUNDLED) if (_BUNDLED / "model_index.json").is_file() else None

__all__ = [
    "DEFAULT_CHECKPOINT",
    "MaskAwareDiscriminator",
    "SARDDenoiser",
    "SARDPipeline",
    "SARDScheduler",
]
