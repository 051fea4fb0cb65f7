"""What is a synthetic data set worth? Train the same segmenter on each row's data, test on real defects.

    python train/evaluate.py --data_root ROOT --category CAT [--methods none,real,sard,real+sard,...] \
        --checkpoint CKPT --output_dir OUT [--seeds 0,1,2] [--config CONFIG] [--key value ...]

Per category and seed: synthesise pairs with every method the rows need, train the same segmenter on each row's
pairs plus the normal images, test it on the held-out real anomalies; writes ``OUT/results.csv``,
``results_seeds.csv``, ``results.md`` and ``results.png``, resumable per (category, row, seed). A row is
``none``, a method (``sard``, ``cutpaste``, ``draem``, ``real``) or a union (``real+sard``). ``--checkpoint`` is one
SARD pipeline, or one per category: ``magnetic_tile=PATH,ball_screw=PATH``. Every key of the config can be
overridden as ``--key value``. With ``accelerate launch`` the work is shared among the processes (on CPUs:
``ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2``). The benchmark is
``sard/evaluation/benchmark.py``.
"""

from sard.config import ConfigError
from sard.datasets import DatasetError
from sard.evaluation.benchmark import main

if __name__ == "__main__":
    try:
        main()
    except (ConfigError, DatasetError) as error:  # the user's input: the message says what to fix, no traceback
        raise SystemExit(f"error: {error}") from None
