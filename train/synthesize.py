"""Synthesise (image, mask) pairs for a category: SARD or a baseline, in the MVTec-AD layout.

    python train/synthesize.py --checkpoint CKPT --data_root ROOT --category CAT \
        --method sard|cutpaste|draem|real --n_per_defect N --output_dir OUT

writes ``OUT/CAT/test/<defect>/*.png``, ``OUT/CAT/ground_truth/<defect>/*_mask.png``, ``OUT/CAT/train/good/``
(the normal images) and ``OUT/CAT/manifest.jsonl``. Rerunning skips what exists. To share the work among
processes, launch it with accelerate (one process per GPU; on CPUs add ACCELERATE_USE_CPU=true):

    accelerate launch --multi_gpu --num_processes 8 train/synthesize.py ...
"""

from sard.synthesis.cli import main

if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as error:  # bad input (ConfigError, DatasetError, settings): no traceback
        raise SystemExit(f"error: {error}") from None
