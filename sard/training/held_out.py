"""The discriminator's accuracy on held-out defects, as the loss log (``losses.csv``) records it.

Every ``held_out_every`` steps the trainer measures each head on held-out real crops against the denoiser's
fakes, per level ``t`` (columns ``held_out_acc_<head>_t<t>``; 0.5 is chance). What a run's discriminator did
is summed up over the last quarter of its training: early accuracy says little, as both networks still move.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

HEADS = ("global", "mask")


@dataclass(frozen=True)
class HeldOutAccuracy:
    """Each head's mean held-out accuracy per level over the steps ``first_step..last_step`` (``n`` of them)."""

    first_step: int
    last_step: int
    n: int
    accuracy: dict[str, dict[int, float]]  # head -> level -> mean accuracy (heads the run did not have: absent)


def read_loss_log(path: str | Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def held_out_accuracy(rows: list[dict], tail: float = 0.25) -> HeldOutAccuracy | None:
    """The summary over the last ``tail`` of the measured steps; None when the run never measured it."""
    measured = [r for r in rows if any(r.get(f"held_out_acc_{head}_t1") for head in HEADS)]
    if not measured:
        return None
    last = measured[-max(1, int(len(measured) * tail)) :]
    levels = sorted({int(k.rsplit("_t", 1)[1]) for k in last[0] if k.startswith("held_out_acc_")})
    accuracy = {}
    for head in HEADS:
        values = {t: [float(r[f"held_out_acc_{head}_t{t}"]) for r in last if r.get(f"held_out_acc_{head}_t{t}")]
                  for t in levels}
        if all(values.values()):
            accuracy[head] = {t: sum(v) / len(v) for t, v in values.items()}
    return HeldOutAccuracy(int(last[0]["step"]), int(last[-1]["step"]), len(last), accuracy)
