"""SARD: segmentation-aware industrial anomaly synthesis by region-constrained few-step diffusion."""

from pathlib import Path

from .denoiser import SARDDenoiser
from .discriminator import MaskAwareDiscriminator
from .pipeline import SARDPipeline
from .scheduler import SARDScheduler

__version__ = "0.1.0"

# The checkpoints shipped with the package, one folder each; the default one is a model of magnetic tiles.
BUNDLED_ROOT = Path(__file__).resolve().parent / "checkpoints"
DEFAULT_MODEL = "magnetic-tile"
_BUNDLED = BUNDLED_ROOT / DEFAULT_MODEL
# The default checkpoint's folder, or None until one is bundled.
DEFAULT_CHECKPOINT: str | None = str(_BUNDLED) if (_BUNDLED / "model_index.json").is_file() else None

__all__ = [
    "BUNDLED_ROOT",
    "DEFAULT_CHECKPOINT",
    "DEFAULT_MODEL",
    "MaskAwareDiscriminator",
    "SARDDenoiser",
    "SARDPipeline",
    "SARDScheduler",
]
