"""Train a SARD checkpoint: a diffusion-GAN denoiser with the mask-aware discriminator (docs/METHOD.md).

The same command runs on one CPU, one GPU, or many GPUs and nodes:

    accelerate launch train/train_sard.py --config train/configs/debug.yaml \
        --data_root DATA --category CAT --output_dir runs/CAT [--max_steps N] [--resume latest]

Several processes on a machine without GPUs (gloo): ``ACCELERATE_USE_CPU=true accelerate launch --multi_gpu
--num_processes N train/train_sard.py ...``.

Every config key can be overridden as ``--key value``. Checkpoints (``checkpoint-N/``) load with
``SARDPipeline.from_pretrained``; the final pipeline and its model card are written to ``--output_dir``.
The loop is :func:`sard.training.trainer.train`, the losses :class:`sard.training.dmg.DMGLoss`.
"""

from sard.config import ConfigError
from sard.datasets import DatasetError
from sard.training.config import parse_args
from sard.training.trainer import train

if __name__ == "__main__":
    try:
        train(parse_args())
    except (ConfigError, DatasetError) as error:  # the user's input: the message says what to fix, no traceback
        raise SystemExit(f"error: {error}") from None
