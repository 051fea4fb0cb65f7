"""Random streams named by integers: every image, step or item draws from its own generator.

``seeded_generator(seed, i, j)`` is a pure function of its integers, so a result depends only on its own
coordinates (not on batch sizes, process counts or what ran before), and resuming a run redraws exactly the
streams an uninterrupted one would have drawn. numpy's ``SeedSequence`` mixes the integers, so neighbouring
tuples give unrelated streams.
"""

from __future__ import annotations

import numpy as np
import torch


def seeded_generator(*entropy: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded from ``SeedSequence(entropy)``, e.g. ``(seed, step, process_index)``."""
    state = np.random.SeedSequence([int(e) for e in entropy]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))
