"""Training a SARD checkpoint (needs the ``train`` extra: accelerate, pyyaml, tensorboard, tqdm).

- :mod:`.config`: :class:`~sard.training.config.TrainConfig`, one dataclass loaded from YAML with ``--key value``.
- :mod:`.crops`: batches of augmented crops around the training masks, a pure function of (seed, step, process).
- :mod:`.losses`: the formulas of the DMG losses (docs/METHOD.md, "DMG").
- :mod:`.dmg`: :class:`~sard.training.dmg.DMGLoss`, both losses of a step on the networks and a batch.
- :mod:`.trainer`: :func:`~sard.training.trainer.train`, the loop (``train/train_sard.py``).
- :mod:`.checkpoints`: checkpoints that survive being killed; :mod:`.model_card`; :mod:`.previews`: the sample grid;
  :mod:`.held_out`: the discriminator's held-out accuracy from the loss log.
"""
