"""Measuring what a synthetic data set is worth: train a segmenter on it, test on held-out real anomalies.

- :mod:`.config`: the evaluation's settings (YAML plus command-line overrides).
- :mod:`.segmenters`: a SegFormer-B0-like network and a small U-Net, trained from scratch.
- :mod:`.metrics`: pixel confusion counts, IoU of the defect class, mIoU, pixel accuracy.
- :mod:`.harness`: synthesise, train, test, per method and category.
- :mod:`.report`: the markdown table, the CSV and the bar chart.
- :mod:`.realism`: contrast and texture energy inside a mask against a ring around it; background drift.
- :mod:`.ablation`, :mod:`.probe`, :mod:`.ablation_report`: the ablation's variants and settings, the realism
  probe on held-out masks, and its table, chart and figure (train/ablate.py).
- :mod:`.fidelity`, :mod:`.c2st`, :mod:`.fidelity_report`: how close a model's defects come to real ones at full
  resolution (issue #17): the classifier two-sample test, texture, contrast, diversity across seeds and the
  background's exactness on held-out masks, and their CSV and table (train/fidelity.py).
"""
