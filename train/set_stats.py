"""Where a data set's defects sit and how they look, per defect type: real defects against synthetic sets.

    python train/set_stats.py --data_root ../shared/data OUT/synthetic/seed-0/sard --category ball_screw

One table, a row per (root, defect type): the masks' area, the tone of their surroundings against the whole
image, the contrast and the texture ratio inside them (``sard/evaluation/set_stats.py`` defines each).
"""

from sard.datasets import DatasetError
from sard.evaluation.set_stats import main

if __name__ == "__main__":
    try:
        main()
    except (DatasetError, ValueError) as error:  # the user's input: no traceback
        raise SystemExit(f"error: {error}") from None
