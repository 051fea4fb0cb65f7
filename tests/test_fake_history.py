"""FakeHistory (sard/training/fake_history.py): SimGAN's history of past fakes, filled, then exchanged with."""

from __future__ import annotations

import pytest
import torch

from sard.training.fake_history import FakeHistory, Fakes


def _fakes(first: int, n: int = 4) -> Fakes:
    """``n`` fakes numbered from ``first``: every part of fake ``i`` holds ``i``, so where it went can be read back."""
    ids = torch.arange(first, first + n)
    return Fakes(ids[:, None, None, None].float().expand(n, 3, 8, 8).clone(),
                 (ids % 2)[:, None, None, None].float().expand(n, 1, 8, 8).clone(), ids.clone(), ids.clone())


def _ids(fakes: Fakes) -> list[int]:
    return fakes.image[:, 0, 0, 0].long().tolist()


def test_fills_first_then_swaps_half_the_batch_for_stored_fakes():
    history = FakeHistory(capacity=8)
    assert _ids(history.exchange(_fakes(0), torch.rand(4))) == [0, 1, 2, 3]  # filling: judged as they are
    assert _ids(history.exchange(_fakes(4), torch.rand(4))) == [4, 5, 6, 7]
    assert history.size == 8 and _ids(history.stored) == list(range(8))

    judged = history.exchange(_fakes(8), torch.tensor([0.3, 0.9, 0.0, 0.0]))  # slots 2 and 7 for the first half
    assert _ids(judged) == [2, 7, 10, 11]
    # Each part travels with its fake: mask, level and label are the stored fake's own.
    assert judged.t.tolist() == judged.label.tolist() == [2, 7, 10, 11]
    assert judged.mask[:, 0, 0, 0].tolist() == [0.0, 1.0, 0.0, 1.0]
    assert _ids(history.stored) == [0, 1, 8, 3, 4, 5, 6, 9]  # the newest fakes took the read slots


def test_a_slot_drawn_twice_is_swapped_once():
    history = FakeHistory(capacity=4)
    history.exchange(_fakes(0), torch.rand(4))
    judged = history.exchange(_fakes(4), torch.tensor([0.5, 0.6, 0.0, 0.0]))  # both draws read slot 2
    assert _ids(judged) == [2, 5, 6, 7]
    assert _ids(history.stored) == [0, 1, 4, 3]


def test_fakes_leave_the_graph():
    history = FakeHistory(capacity=2)
    fakes = _fakes(0, 2)
    fakes = fakes._replace(image=fakes.image.requires_grad_())
    assert not history.exchange(fakes, torch.rand(2)).image.requires_grad
    assert not history.stored.image.requires_grad


def test_state_round_trip_and_a_history_of_another_size_is_refused():
    history = FakeHistory(capacity=6)
    assert history.state_dict() == {}
    history.exchange(_fakes(0), torch.rand(4))
    restored = FakeHistory(capacity=6)
    restored.load_state_dict(history.state_dict())
    assert restored.size == 4
    draws = torch.tensor([0.1, 0.95, 0.5, 0.5])
    for _ in range(2):  # the first exchange fills the last two slots, the second swaps: both must agree
        a, b = history.exchange(_fakes(10), draws), restored.exchange(_fakes(10), draws)
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    with pytest.raises(ValueError, match="holds 6 fakes, this run 3"):
        FakeHistory(capacity=3).load_state_dict(history.state_dict())
    with pytest.raises(ValueError, match="capacity >= 1"):
        FakeHistory(capacity=0)
