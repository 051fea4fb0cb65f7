"""Measuring what a synthetic data set is worth: train a segmenter on it, test on held-out real anomalies.

- :mod:`.config`: the evaluation's settings (YAML plus command-line overrides).
- :mod:`.segmenters`: a SegFormer-B0-like network and a small U-Net, trained from scratch.
- :mod:`.metrics`: pixel confusion counts, IoU of the defect class, mIoU, pixel accuracy.
- :mod:`.harness`: the training and test sets, the segmenter's training and its confusion counts.
- :mod:`.rows`, :mod:`.aggregate`: the benchmark's rows (methods and unions) and the mean and spread over seeds.
- :mod:`.benchmark`: the benchmark itself (synthesise, train, test, report; ``train/evaluate.py``).
- :mod:`.report`: the markdown tables, the CSV and the bar chart, and the CSV and table helpers every report uses.
- :mod:`.realism`: contrast and texture energy inside a mask against a ring around it; background drift.
- :mod:`.ablation`, :mod:`.ablation_run`, :mod:`.probe`, :mod:`.ablation_report`: the ablation's variants and
  settings, its run (``train/ablate.py``), the realism probe on held-out masks, and its table, chart and figure.
- :mod:`.fidelity`, :mod:`.c2st`, :mod:`.fidelity_report`: how close a model's defects come to real ones at full
  resolution (issue #17): the classifier two-sample test, texture, contrast, diversity across seeds and the
  background's exactness on held-out masks, and their CSV and table; :mod:`.fidelity_run` is
  ``train/fidelity.py``.
"""
