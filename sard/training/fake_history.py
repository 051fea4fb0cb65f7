"""A history of past fakes for the discriminator (SimGAN's image history buffer; Shrivastava et al., CVPR 2017).

Measured on this project's data (docs/dmg_measurements.md), the denoiser erases the discriminator's lead within
a few dozen joint steps, and a discriminator given the lead back (four updates per denoiser update) swings the
fills from one look to another: each side answers only the other's latest move. Showing the discriminator past
fakes beside the current ones makes it remember what it already rejected, so the denoiser cannot win by going
back to it.

:class:`FakeHistory` is the one piece of training state that is not a network or an optimiser: the trainer keeps
it, every discriminator block exchanges fakes with it, and checkpoints store it, so a resumed run goes on bit for
bit. Its randomness (which slots are read) comes with the batch, as every other draw of a step.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class Fakes(NamedTuple):
    """Fakes as the clean-view discriminator judges them: each image with its mask, level and defect label."""

    image: torch.Tensor  # (B, C, H, W): the prediction pasted into the real background
    mask: torch.Tensor  # (B, 1, H, W)
    t: torch.Tensor  # (B,): the level the prediction was made from
    label: torch.Tensor  # (B,)


class FakeHistory:
    """Up to ``capacity`` past fakes.

    :meth:`exchange` swaps the first ``fraction`` of a batch's fakes for stored ones and stores those fakes in
    their place (SimGAN: half from the history, and the history's read half replaced by the newest). Until
    the history is full, fakes are only stored. Each process keeps its own.
    """

    def __init__(self, capacity: int, fraction: float = 0.5):
        if capacity < 1 or not 0.0 < fraction <= 1.0:
            raise ValueError(f"FakeHistory needs capacity >= 1 and fraction in (0, 1], got {capacity}, {fraction}.")
        self.capacity, self.fraction = capacity, fraction
        self.stored: Fakes | None = None  # allocated at the first exchange, with the shapes of the fakes
        self.size = 0

    def exchange(self, fakes: Fakes, draws: torch.Tensor) -> Fakes:
        """The fakes the discriminator judges now: ``fakes`` with their first ``round(fraction * B)`` swapped for
        stored ones once the history is full; ``draws`` (`(B,)`, uniform in [0, 1)) pick the slots read."""
        fakes = Fakes(*(part.detach() for part in fakes))
        if self.stored is None:
            self.stored = Fakes(*(part.new_zeros((self.capacity, *part.shape[1:])) for part in fakes))
        n = fakes.image.shape[0]
        if self.size < self.capacity:  # filling: store, judge the batch as it is
            count = min(n, self.capacity - self.size)
            for slot, part in zip(self.stored, fakes):
                slot[self.size : self.size + count] = part[:count]
            self.size += count
            return fakes
        swapped = round(self.fraction * n)
        slots = (draws[:swapped] * self.capacity).long().clamp(max=self.capacity - 1).unique()
        # A slot drawn twice is swapped once; the batch positions that would have read it again keep their fake.
        positions = torch.arange(len(slots), device=slots.device)
        judged = []
        for slot, part in zip(self.stored, fakes):
            old = slot[slots].clone()
            slot[slots] = part[positions]
            mixed = part.clone()
            mixed[positions] = old
            judged.append(mixed)
        return Fakes(*judged)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The stored fakes and the count, as tensors (empty before the first exchange)."""
        if self.stored is None:
            return {}
        return {**self.stored._asdict(), "size": torch.tensor(self.size)}

    def load_state_dict(self, state: dict[str, torch.Tensor], device=None) -> None:
        if not state:
            self.stored, self.size = None, 0
            return
        stored = Fakes(*(state[name].to(device, copy=True) for name in Fakes._fields))
        if stored.image.shape[0] != self.capacity:
            raise ValueError(f"The checkpoint's fake history holds {stored.image.shape[0]} fakes, this run "
                             f"{self.capacity}: resume with the same --fake_history.")
        self.stored, self.size = stored, int(state["size"])
