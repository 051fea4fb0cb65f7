"""Synthesising (image, mask) training sets at scale: SARD and the baselines it is measured against.

- :mod:`.foreground`: where the product is in a normal image, so that masks stay on it.
- :mod:`.masks`: masks drawn from the training masks, augmented (flips, rotations, scale, shift).
- :mod:`.perlin`, :mod:`.draem`: DRAEM's Perlin-noise masks filled with a foreign texture.
- :mod:`.cutpaste`: CutPaste's patch and scar.
- :mod:`.methods`: one synthesiser per method (``sard``, ``cutpaste``, ``draem``, ``real``).
- :mod:`.writer`: the MVTec-layout writer with a manifest; resumable and sharded across processes.
- :mod:`.cli`: the command line of ``train/synthesize.py``.
"""

from .methods import METHODS, build_synthesizer
from .writer import SynthesisSettings, synthesize_category

__all__ = ["METHODS", "SynthesisSettings", "build_synthesizer", "synthesize_category"]
