"""What each part of SARD is worth: the variants of the ablation and its settings.

Each variant turns exactly one switch of the base recipe:

- ``base``: SARD as configured (retrained with the ablation's budget, or a given checkpoint);
- ``no_mask_head`` (DMG): the discriminator's mask-aware head off, the global head only. The term that
  lets that head judge the clean prediction (``lambda_x0``) goes with it: it has no other head to use;
- ``lambda_rec_0``: no reconstruction loss, the adversarial losses only;
- ``background_noised`` (RCD): the base model; at each step the background is re-noised to the step's level
  (RePaint) instead of passed through clean;
- ``unconstrained`` (RCD): the base model; the network updates the whole crop at every step and the result is
  pasted inside the mask only at the end (what inpainting pipelines without RCD do).

The first three are trained (same seed, data, budget); the last two reuse the base model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from .. import config as configs
from ..config import ConfigError
from ..training.config import TrainConfig
from .config import EvalConfig


@dataclass(frozen=True)
class Variant:
    """One switch turned: training overrides (a model of its own) or sampling options (the base model)."""

    name: str
    claim: str  # the idea it tests: "DMG", "RCD" or "" (the base, and lambda_rec)
    description: str
    train: dict = field(default_factory=dict)  # TrainConfig keys that differ from the base
    background: str = "clean"
    region_constraint: bool = True

    @property
    def model(self) -> str:
        """The model it samples with: its own when it changes training, else the base model."""
        return self.name if self.train else "base"


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("base", "", "SARD as configured"),
        Variant("no_mask_head", "DMG", "discriminator: global head only", train={"mask_head": False}),
        Variant("lambda_rec_0", "", "no reconstruction loss (adversarial only)", train={"lambda_rec": 0.0}),
        Variant("background_noised", "RCD", "background re-noised at each step (RePaint)", background="noised"),
        Variant("unconstrained", "RCD", "no region constraint; pasted at the end", region_constraint=False),
    )
}

# Training keys that change how fast or where a run goes, not what it learns.
RUNTIME_KEYS = ("data_root", "output_dir", "resume", "num_threads", "max_train_minutes", "push_to_hub",
                "hub_model_id", "sample_every", "log_every", "checkpoint_every", "checkpoints_total_limit")


@dataclass
class AblationConfig:
    """The ablation's settings (``train/configs/ablation-*.yaml``).

    Attributes:
        train_config: the base model's training recipe (a ``train/configs`` YAML; relative paths are read
            from the ablation config's folder).
        train: overrides of that recipe for every trained model, the base included (the budget: max_steps).
        categories: per-category overrides of ``train``, e.g. ``{magnetic_tile: {resolution: 640, init_from:
            PATH}}``: a stage-2 recipe trains at each category's own image scale, from that category's stage-1 model.
        eval_config: the evaluation harness's config (the main table's), and ``eval`` its overrides.
        eval_categories: per-category overrides of ``eval``, e.g. ``{magnetic_tile: {input_norm: per_image}}``: the
            main table's harness for a category that needs its own (``eval-cpu-magnetic-tile.yaml``'s keys).
        probe_per_defect: held-out masks per defect type filled by every variant for the realism figures.
        ring_width: width in working-scale pixels of the ring around the mask (contrast, texture, drift).
        figure_per_defect: rows per defect type in the side-by-side figure.
        fidelity: options of ``train/fidelity.py`` (e.g. ``{masks_per_type: 16}``) for the fidelity figures of every
            variant that samples as the pipeline does (the base and the trained variants); ``null``: not measured.
    """

    train_config: str
    eval_config: str
    train: dict = field(default_factory=dict)
    categories: dict = field(default_factory=dict)
    eval: dict = field(default_factory=dict)
    eval_categories: dict = field(default_factory=dict)
    probe_per_defect: int = 24
    ring_width: int = 3
    figure_per_defect: int = 2
    fidelity: dict | None = field(default_factory=dict)

    def training(self, variant: Variant, data_root: str, category: str, output_dir: str | Path) -> TrainConfig:
        """The training config of ``variant``'s model: the recipe, the budget, the variant's switch."""
        run = {"data_root": str(data_root), "category": category, "output_dir": str(output_dir), "resume": "latest"}
        recipe = {**self.train, **(self.categories.get(category) or {})}
        base = configs.load(TrainConfig, self.train_config, {**recipe, **run})
        if variant.train:
            same = [k for k, v in variant.train.items() if getattr(base, k) == v]
            if same:
                raise ConfigError(
                    f"The base recipe already has {', '.join(f'{k} = {variant.train[k]}' for k in same)}: "
                    f"{variant.name} would be the base model. Leave it out with --variants, or change the recipe."
                )
        return configs.load(TrainConfig, self.train_config, {**recipe, **variant.train, **run})

    def validate(self) -> None:
        for name, overrides in (("categories", self.categories), ("eval_categories", self.eval_categories)):
            if not isinstance(overrides, dict) or not all(isinstance(v, dict) for v in overrides.values()):
                raise ConfigError(f"{name} must map a category to its overrides, e.g. "
                                  "{magnetic_tile: {resolution: 640}}.")
        for name, overrides in [("eval", self.eval or {}), *((f"eval_categories.{c}", v)
                                                            for c, v in self.eval_categories.items())]:
            fixed = sorted({"background", "region_constraint"} & set(overrides))
            if fixed:
                raise ConfigError(f"{name} sets {', '.join(fixed)}, which each variant sets for itself; remove it.")
        for key in ("probe_per_defect", "ring_width", "figure_per_defect"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise ConfigError(f"{key} must be a whole number of at least 1, got {getattr(self, key)!r}.")
        if self.fidelity is not None and not isinstance(self.fidelity, dict):
            raise ConfigError("fidelity must be options of train/fidelity.py, e.g. {masks_per_type: 16}, or null.")
        for category in self.eval_categories:  # a misspelt key stops the ablation before anything is trained
            self.evaluation(category)

    def eval_overrides(self, category: str | None = None) -> dict:
        """``eval``, with ``category``'s own overrides on top."""
        return {**(self.eval or {}), **(self.eval_categories.get(category) or {})}

    def evaluation(self, category: str | None = None) -> EvalConfig:
        """The harness of ``category`` (None: the one every category shares before its own overrides)."""
        return configs.load(EvalConfig, self.eval_config, self.eval_overrides(category))

    def identity(self) -> dict:
        """What the numbers depend on: the recipe and harness as loaded (not their file names)."""
        train = dataclasses.asdict(configs.load(TrainConfig, self.train_config, {**self.train, "data_root": "."}))
        for key in (*RUNTIME_KEYS, "category"):
            train.pop(key, None)
        identity = {"train": train, "categories": self.categories, "eval": self.evaluation().identity(),
                    "probe_per_defect": self.probe_per_defect, "ring_width": self.ring_width,
                    "fidelity": self.fidelity}
        if self.eval_categories:  # added later: only when used, so that earlier runs' identity stays the same
            identity["eval_categories"] = {c: self.evaluation(c).identity() for c in sorted(self.eval_categories)}
        return identity


def load_ablation_config(path: str | Path, overrides: dict | None = None) -> AblationConfig:
    """An :class:`AblationConfig` from YAML; ``train_config`` and ``eval_config`` relative to its folder."""
    path = Path(path)
    values = {**configs.read_yaml(path), **(overrides or {})}
    for key in ("train_config", "eval_config"):
        if key in values and not Path(values[key]).is_absolute():
            values[key] = str(path.parent / values[key])
    return configs.build(AblationConfig, values, str(path))


def parse_variants(text: str | None) -> list[Variant]:
    """``no_mask_head,unconstrained`` -> those variants and the base (every variant is compared with it), in
    the order of :data:`VARIANTS`; None or "" -> all."""
    names = [n for n in (text or "").split(",") if n] or list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ConfigError(f"Unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}.")
    return [v for name, v in VARIANTS.items() if name in names or name == "base"]
