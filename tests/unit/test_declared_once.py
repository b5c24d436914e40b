"""Concepts declared once: the key map (app, help, --help, README), config option kinds."""

from __future__ import annotations

from dataclasses import fields

from engine.run.config import TrainConfig
from engine.run.field_kinds import FIELD_KINDS, NOT_COMPARED, RESUME_MAY_CHANGE, RUNS, TRAINS, WRITTEN
from tests.helpers.common import ROOT
from tui.keys import KEYS, bindings, epilog_lines, help_text, readme_table
from tui.options import dashboard_parser


def test_readme_key_table_is_the_key_map() -> None:
    assert readme_table() in (ROOT / "README.md").read_text(), "regenerate README's table: tui.keys.readme_table()"


def test_every_key_is_bound_helped_and_in_help() -> None:
    bound = {b.key for b in bindings()}
    help_screen, usage = help_text(), dashboard_parser().format_help()
    for k in KEYS:
        assert k.key in bound
        assert f"[b]{k.label}[/b]" in help_screen
        assert f"{k.label} {k.brief}" in usage
    assert "\n".join(epilog_lines()) in usage


def test_every_option_has_a_kind_and_the_lists_derive_from_it() -> None:
    names = {f.name for f in fields(TrainConfig)}
    assert set(FIELD_KINDS) == names
    assert {kind for kind, _ in FIELD_KINDS.values()} == {TRAINS, RUNS, WRITTEN}
    # How it runs and where it is written may change on a resume; of what it trains, only the
    # length, its stop rules and SyncBatchNorm. The list as the trainer kept it by hand before it was derived, and
    # the label given at the start (name, tags, notes: a resume may rename the run):
    assert {
        "epochs", "device", "run_dir", "runs_root", "log_every", "progress_hz", "workers", "eval_batch_size",
        "data_dir", "resume", "overwrite", "compile", "loader", "explicit", "keep", "save_wait", "rank_timeout",
        "sync_bn", "name", "tags", "notes", "eval_every", "early_stop", "target_accuracy", "lr_find", "lr_find_start",
        "lr_find_end", "lr_find_steps",
    } == RESUME_MAY_CHANGE  # fmt: skip
    assert {n for n, (kind, _) in FIELD_KINDS.items() if kind != TRAINS} == RESUME_MAY_CHANGE - {
        "epochs", "sync_bn", "early_stop", "target_accuracy"}  # fmt: skip
    assert set(NOT_COMPARED) == {"run_dir", "runs_root", "overwrite", "explicit", "progress_hz", "save_wait",
                                 "name", "tags", "notes"}  # fmt: skip


def test_seed_means_the_rng_seed_and_the_tutorial_is_the_tutorial() -> None:
    import re

    from tests.helpers.common import ROOT

    # "seed" is the RNG seed (--seed); the project this grew from is "the tutorial", everywhere.
    tutorial_as_seed = re.compile(r"seed tutorial|the seed's|seed's own|seed's loop|as the seed\b|seed_loop", re.I)
    files = [p for d in ("engine", "tui", "bench", "docs", "tests") for p in (ROOT / d).rglob("*")
             if p.suffix in (".py", ".md", ".sh") and p.name != "test_declared_once.py"]  # fmt: skip
    found = [f"{p.relative_to(ROOT)}:{i}" for p in [*files, ROOT / "README.md"]
             for i, line in enumerate(p.read_text().splitlines(), 1) if tutorial_as_seed.search(line)]  # fmt: skip
    assert not found, found


def test_a_ranks_exit_code_is_mapped_in_one_place() -> None:
    import engine.cli
    import engine.headless
    from engine.run.errors import EXIT_CRASH, EXIT_OK, EXIT_STOPPED, rank_exit_code

    # torchrun restarts or ends the group for any non-zero code: a stop or an end is 0, a failure its own.
    assert [rank_exit_code(c, ended=False) for c in (EXIT_STOPPED, 130, 143, EXIT_CRASH, 2)] == [0, 0, 0, 1, 2]
    assert rank_exit_code(EXIT_CRASH, ended=True) == EXIT_OK  # ended, its end unsaved: the launcher says so
    assert not hasattr(engine.cli, "rank_exit_code") and "EXIT_OK" not in vars(engine.headless)


def test_no_module_grows_past_300_lines_without_saying_why() -> None:
    from tests.helpers.common import ROOT

    long = {str(p.relative_to(ROOT)): n for d in ("engine", "tui") for p in (ROOT / d).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 320}  # fmt: skip
    unexplained = [f"{name} ({n} lines)" for name, n in long.items()
                   if "on purpose" not in (ROOT / name).read_text().split('"""')[1]]  # fmt: skip
    assert not unexplained, unexplained
