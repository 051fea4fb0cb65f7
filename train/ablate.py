"""What each part of SARD is worth: train the ablation's variants on a category, benchmark each one, report.

    python train/ablate.py --data_root ROOT --category CAT --config train/configs/ablation-cpu.yaml \
        --output_dir OUT [--variants base,no_mask_head,lambda_rec_0,background_noised,unconstrained] \
        [--base_checkpoint PATH]

Trains the base model and the training-time variants (same recipe, seed and budget, one switch changed each),
benchmarks every variant with the main table's harness, probes the realism of its fills on the same held-out
masks, and writes ``OUT/ablation.md``, ``.csv``, ``.png`` and ``OUT/figure-CAT.png``. Resumable. The variants are
described in ``sard/evaluation/ablation.py``, the run in ``sard/evaluation/ablation_run.py``.
"""

from sard.config import ConfigError
from sard.datasets import DatasetError
from sard.evaluation.ablation_run import main

if __name__ == "__main__":
    try:
        main()
    except (ConfigError, DatasetError) as error:
        raise SystemExit(f"error: {error}") from None
