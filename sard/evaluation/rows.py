"""The rows of the benchmark: what each segmenter is trained on, besides the normal images.

A row is ``none`` (the normal images alone: the floor), a synthesis method of :mod:`sard.synthesis`
(``real``, ``sard``, ``cutpaste``, ``draem``: that method's pairs), or methods joined by ``+``: the union
of their pairs (``real+sard``: the real training third, augmented, plus SARD's pairs, the data an
inspection engineer with a handful of real defects has). Every set of a union has ``n_per_defect`` pairs
per defect type and a batch draws its pairs uniformly from the union, so ``real+sard`` trains on real and
SARD pairs in equal shares.
"""

from __future__ import annotations

from ..synthesis import METHODS

NONE = "none"
# The practitioner's question in one table: the floor, the real defects, SARD, both, and the baselines.
DEFAULT_ROWS = ("none", "real", "sard", "real+sard", "cutpaste", "draem", "real+draem")


def components(row: str) -> tuple[str, ...]:
    """The synthesis methods whose pairs ``row`` trains on (empty for ``none``).

    Raises:
        ValueError: a part that is not a synthesis method, a repeated part, or ``none`` inside a union.
    """
    if row == NONE:
        return ()
    parts = tuple(row.split("+"))
    unknown = [p for p in parts if p not in METHODS]
    if unknown or len(set(parts)) != len(parts) or not all(parts):
        raise ValueError(
            f"unknown row {row!r}: use none, one of {', '.join(METHODS)}, or several joined by + (real+sard)"
        )
    return parts


def parse_rows(text: str) -> list[str]:
    """Comma-separated rows, checked, in the order given, without repeats."""
    rows = list(dict.fromkeys(r.strip() for r in text.split(",") if r.strip()))
    errors = []
    for row in rows:
        try:
            components(row)
        except ValueError as error:
            errors.append(str(error))
    if errors or not rows:
        raise ValueError("; ".join(errors) or "no rows given")
    return rows


def synthesis_methods(rows: list[str]) -> list[str]:
    """The synthetic sets ``rows`` need, each once, in the order of :data:`sard.synthesis.METHODS`."""
    needed = {m for row in rows for m in components(row)}
    return [m for m in METHODS if m in needed]
