"""How close a SARD model's defects come to real ones: the fidelity figures of issue #17 for one category.

    python train/fidelity.py --checkpoint CKPT --data_root ROOT --category CAT --output_dir OUT

Held-out real masks (protocol split) are painted into held-out normal images with ``pipe(image, mask)``, and
the full-resolution outputs are compared with the real defects the masks came from (see
``sard/evaluation/fidelity.py`` for every definition): a classifier two-sample test (0.5 = indistinguishable),
the texture ratio and contrast against the real defects' p10..p90, the diversity across seeds against the real
defects' spatial spread, and the background's exactness; and two controls: the classifier test between the real
defects and the same defects pasted into the normal images (copy-paste), and between the real defects and the
same defects resampled to the model's working scale and back (the ceiling its resolution sets). Writes:

- ``OUT/fidelity.csv``: one row per defect type and a row ``all`` for the category;
- ``OUT/fidelity.md``: the same as a markdown table, with the goals of issue #17 and the settings;
- ``OUT/fidelity_items.csv``: the figures of every painted mask;
- ``OUT/c2st_crops.png``: pairs of the crops the classifier sees (real above painted), and all of them in
  ``OUT/c2st_crops.npz`` (``real``, ``painted``, ``pasted``, ``roundtrip``: `(N, 3, S, S)`: grey levels,
  high-pass, mask;
  ``defect``);
- ``OUT/fidelity.json``: the settings, notes and timings.
"""

from sard.config import ConfigError
from sard.datasets import DatasetError
from sard.evaluation.fidelity_run import main
from sard.loading import CheckpointError

if __name__ == "__main__":
    try:
        main()
    except (ConfigError, DatasetError, CheckpointError) as error:  # the user's input: no traceback
        raise SystemExit(f"error: {error}") from None
