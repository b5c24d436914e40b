"""What a sweep is: its plan (space, run options, count, sampler, pruner, storage), kept in
RUNS/<name>.sweep/sweep.json, and the check of its space against the run options (torch-free)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.run.errors import first_line
from engine.sweep.space import Param, SpaceError

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("asha", "hyperband", "median", "none")
PLAN_FILE = "sweep.json"
SNAPSHOT = "trials.json"
"""What the sweep screen reads: the trials as the sweep last saw them (engine/sweep/snapshot.py)."""
SEEDS_FILE = "seeds.json"
"""The best trials' accuracy with other seeds (``--seeds``: engine/sweep/seeds.py)."""


@dataclass
class SweepPlan:
    """What a sweep is: kept in RUNS/<name>.sweep/sweep.json, so that --status needs no options."""

    name: str
    runs_root: str
    params: list[Param]
    base: list[str]
    trials: int
    sampler: str = "tpe"
    pruner: str = "asha"
    parallel: int = 1
    storage: str = ""
    heartbeat: int = 10
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return Path(self.runs_root) / f"{self.name}.sweep"

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{(self.folder / 'study.db').resolve()}"

    def run_dir(self, number: int) -> Path:
        return Path(self.runs_root) / f"{self.name}-t{number:03d}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["params"] = [asdict(p) for p in self.params]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepPlan:
        params = [Param(p["name"], p["kind"], p["low"], p["high"], tuple(p["choices"])) for p in data["params"]]
        return cls(**{**data, "params": params})


def check_space(params: list[Param], base: list[str]) -> None:
    """Every swept option is a run option, and every value (a range's ends) passes the same checks
    as on the command line, with the sweep's other options: SpaceError in one line otherwise."""
    import contextlib
    import io

    from engine.options import build_parser, config_from_args
    from engine.run.config import TrainConfig, validate
    from engine.run.errors import UserError

    fields = set(TrainConfig.__dataclass_fields__)
    for p in params:
        if p.name not in fields or p.name in ("run_dir", "runs_root", "resume", "name", "overwrite"):
            raise SpaceError(f"--space {p.name}: not an option a run can sweep ({p.option} is not a training setting)")
        for value in p.edges():
            argv = [*base, p.option, value]
            said = io.StringIO()
            try:
                with contextlib.redirect_stderr(said):
                    args = build_parser(argv).parse_args(argv)
                validate(config_from_args(args))
            except SystemExit:
                why = said.getvalue().strip().splitlines()[-1:] or ["refused"]
                raise SpaceError(f"--space {p.name}: {why[0].removeprefix('cifar-tui: error: ')}") from None
            except (UserError, ValueError) as exc:
                raise SpaceError(f"--space {p.name}: {p.option} {value}: {first_line(exc)}") from None
