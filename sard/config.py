"""Run configurations (training, evaluation, ablation): dataclasses read from YAML, then ``--key value``
overrides, validated before anything heavy starts, with one error type.

Each configuration is a dataclass (:class:`~sard.training.config.TrainConfig`,
:class:`~sard.evaluation.config.EvalConfig`, :class:`~sard.evaluation.ablation.AblationConfig`) with an
optional ``validate()`` that raises :class:`ConfigError` listing every bad key. :func:`load` builds one from a
YAML file and overrides; :func:`add_override_arguments` and :func:`parse_overrides` give every key a
``--key value`` command-line flag, parsed with the key's type.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path
from typing import TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration that cannot run; the message says which key and what to do."""


def field_types(cls: type) -> dict[str, type]:
    """The dataclass's keys and their types, in declaration order."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def read_yaml(path: str | Path) -> dict:
    """The mapping in a YAML file (empty file: ``{}``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"No config file at {path}.")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys to values.")
    return values


def build(cls: type[T], values: dict, source: str = "") -> T:
    """``cls(**values)``, validated; unknown keys and missing required keys (fields without a default) are
    refused with the known keys listed. ``source`` (a file name) prefixes the messages."""
    known = field_types(cls)
    unknown = sorted(set(values) - set(known))
    required = {f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    missing = sorted(required - set(values))
    if unknown or missing:
        problems = [unknown and f"Unknown config key(s): {', '.join(unknown)}",
                    missing and f"missing config key(s): {', '.join(missing)}"]
        prefix = f"{source}: " if source else ""
        raise ConfigError(f"{prefix}{'; '.join(filter(None, problems))}. Known keys: {', '.join(known)}.")
    config = cls(**values)
    if hasattr(config, "validate"):
        config.validate()
    return config


def load(cls: type[T], path: str | Path | None = None, overrides: dict | None = None) -> T:
    """A ``cls`` config from a YAML file (keys as in ``cls``; none: the defaults), then ``overrides``."""
    values = read_yaml(path) if path else {}
    return build(cls, {**values, **(overrides or {})}, str(path or ""))


def parse_value(name: str, kind: type, text: str):
    """One command-line value with the type of its config key: bools as true/false/1/0/yes/no, lists as
    comma- or space-separated items."""
    try:
        if kind is bool:
            lowered = text.lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return lowered in ("true", "1", "yes")
        if typing.get_origin(kind) is list:
            (item,) = typing.get_args(kind)
            return [item(v) for v in text.replace(",", " ").split()]
        return kind(text)
    except ValueError:
        raise ConfigError(f"--{name}: cannot read {text!r} as {getattr(kind, '__name__', kind)}") from None


def add_override_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """A ``--key V`` flag for every key of ``cls``, its default shown in the help."""
    defaults = cls()
    for name in field_types(cls):
        parser.add_argument(f"--{name}", default=None, metavar="V", help=f"(default: {getattr(defaults, name)})")


def parse_overrides(args: argparse.Namespace, cls: type) -> dict:
    """The keys of ``cls`` given on the command line (see :func:`add_override_arguments`), parsed."""
    types = field_types(cls)
    return {name: parse_value(name, kind, getattr(args, name)) for name, kind in types.items()
            if getattr(args, name, None) is not None}
