"""A sweep's search space: ``--space NAME=KIND:VALUES``, checked against the run options before
anything is created (torch-free).

Kinds: ``log:LO..HI`` and ``float:LO..HI`` (a real number, sampled on a log or a linear scale),
``int:LO..HI``, ``choice:A,B,C`` (any option's values, as the command line takes them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KINDS = ("log", "float", "int", "choice")


@dataclass(frozen=True)
class Param:
    """One swept option: its run option name (``weight_decay`` for ``--weight-decay``) and range."""

    name: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    choices: tuple[str, ...] = ()

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    def sample(self, trial: Any) -> Any:
        """The trial's value, from Optuna's ``trial.suggest_*``."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high))
        return trial.suggest_float(self.name, self.low, self.high, log=self.kind == "log")

    def grid(self) -> list[Any]:
        """The values a grid search tries (choices; every int; for a real range, its ends)."""
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1))
        return [self.low, self.high]

    def edges(self) -> list[str]:
        """The values that stand for the whole range when the options are checked."""
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "int":
            return [str(int(self.low)), str(int(self.high))]
        return [repr(self.low), repr(self.high)]


class SpaceError(ValueError):
    """A search space that cannot be swept, said in one line."""


def parse_param(text: str) -> Param:
    """``lr=log:0.05..0.8`` -> Param; SpaceError saying what is wrong."""
    name, eq, spec = text.partition("=")
    kind, colon, values = spec.partition(":")
    name = name.strip().lstrip("-").replace("-", "_")
    if not eq or not colon or not name or not values:
        raise SpaceError(f"--space {text!r}: expected NAME=KIND:VALUES, e.g. lr=log:0.05..0.8 or cutout=choice:0,8")
    if kind not in KINDS:
        raise SpaceError(f"--space {text!r}: the kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if kind == "choice":
        choices = tuple(v.strip() for v in values.split(","))
        if not all(choices) or len(set(choices)) != len(choices):
            raise SpaceError(f"--space {text!r}: choices must be distinct and not empty")
        return Param(name, kind, choices=choices)
    low_text, dots, high_text = values.partition("..")
    try:
        low, high = (int(low_text), int(high_text)) if kind == "int" else (float(low_text), float(high_text))
    except ValueError:
        raise SpaceError(f"--space {text!r}: expected LOW..HIGH numbers, e.g. {kind}:1..8") from None
    if not dots or not low < high or (kind == "log" and low <= 0):
        raise SpaceError(
            f"--space {text!r}: needs LOW < HIGH" + (" and LOW > 0 on a log scale" if kind == "log" else "")
        )
    return Param(name, kind, float(low), float(high))


def read_space_file(path: str) -> list[str]:
    """A TOML file's ``[space]`` table as ``--space`` texts: ``lr = "log:0.05..0.8"``, or a list
    for a choice (``cutout = [0, 8, 12]``). SpaceError in one line for a file that is not one."""
    import tomllib

    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise SpaceError(f"--space-file {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SpaceError(f"--space-file {path}: not TOML ({str(exc).splitlines()[0]})") from None
    space = data.get("space")
    unknown = sorted(set(data) - {"space"})
    if not isinstance(space, dict) or not space or unknown:
        why = f"unknown table or key {unknown[0]!r}" if unknown else 'no [space] table with NAME = "KIND:VALUES"'
        raise SpaceError(f"--space-file {path}: {why}")
    texts = []
    for name, value in space.items():
        if isinstance(value, list) and value and all(isinstance(v, str | int | float) for v in value):
            texts.append(f"{name}=choice:" + ",".join(str(v) for v in value))
        elif isinstance(value, str):
            texts.append(f"{name}={value}")
        else:
            raise SpaceError(f'--space-file {path}: {name} must be "KIND:VALUES" or a list of choices')
    return texts


def parse_space(texts: list[str]) -> list[Param]:
    params = [parse_param(t) for t in texts]
    names = [p.name for p in params]
    if dupes := sorted({n for n in names if names.count(n) > 1}):
        raise SpaceError(f"--space: {dupes[0]} is given twice")
    if not params:
        raise SpaceError("say what to sweep: --space NAME=KIND:VALUES (one or more)")
    return params


def trial_argv(base: list[str], values: dict[str, Any]) -> list[str]:
    """The run's command line: the sweep's own options, then each swept option's value."""
    argv = list(base)
    for name, value in values.items():
        argv += ["--" + name.replace("_", "-"), value if isinstance(value, str) else repr(value)]
    return argv
