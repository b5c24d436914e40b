"""A sweep's space and options: every bad one is one line and exit 2, and nothing is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.sweep.cli import sweep_main
from engine.sweep.space import Param, SpaceError, parse_param, parse_space, trial_argv


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("lr", "expected NAME=KIND:VALUES"),
        ("lr=log", "expected NAME=KIND:VALUES"),
        ("=log:0.1..1", "expected NAME=KIND:VALUES"),
        ("lr=normal:0.1..1", "the kind must be one of log, float, int, choice"),
        ("lr=log:0..1", "LOW > 0 on a log scale"),
        ("lr=float:1..1", "needs LOW < HIGH"),
        ("lr=float:2..1", "needs LOW < HIGH"),
        ("lr=float:0.1", "expected LOW..HIGH numbers"),
        ("lr=float:a..b", "expected LOW..HIGH numbers"),
        ("epochs=int:1.5..3", "expected LOW..HIGH numbers"),
        ("cutout=choice:0,,8", "choices must be distinct and not empty"),
        ("cutout=choice:8,8", "choices must be distinct and not empty"),
    ],
)
def test_a_malformed_space_says_what_is_wrong(text: str, said: str) -> None:
    with pytest.raises(SpaceError, match=said):
        parse_param(text)


def test_a_space_reads_into_the_options_a_trial_takes() -> None:
    params = parse_space(["lr=log:0.05..0.8", "weight-decay=float:0..1e-3", "epochs=int:2..4", "cutout=choice:0,8"])
    assert params == [
        Param("lr", "log", 0.05, 0.8),
        Param("weight_decay", "float", 0.0, 1e-3),
        Param("epochs", "int", 2, 4),
        Param("cutout", "choice", choices=("0", "8")),
    ]
    assert [p.grid() for p in params] == [[0.05, 0.8], [0.0, 1e-3], [2, 3, 4], ["0", "8"]]
    argv = trial_argv(["--recipe", "fast"], {"lr": 0.1, "weight_decay": 1e-4, "epochs": 3, "cutout": "8"})
    assert argv == ["--recipe", "fast", "--lr", "0.1", "--weight-decay", "0.0001", "--epochs", "3", "--cutout", "8"]
    with pytest.raises(SpaceError, match="lr is given twice"):
        parse_space(["lr=log:0.1..1", "lr=float:0.1..1"])
    with pytest.raises(SpaceError, match="say what to sweep"):
        parse_space([])


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--space", "lr=float:-1..1"], "--space lr: --lr -1.0: --lr must be > 0.0"),
        (["--space", "learning-rate=log:0.1..1"], "not an option a run can sweep"),
        (["--space", "run-dir=choice:a,b"], "not an option a run can sweep"),
        (["--space", "batch-size=choice:16,many"], "--space batch_size"),
        (["--space", "loader=choice:tensor,nonsense"], "--space loader"),
        (["--space", "lr=log:0.1..1", "--epochs", "0"], "--epochs"),
        (["--space", "lr=log:0.1..1", "--trials", "0"], "--heartbeat and --top must be at least 1"),
        (["--space", "lr=log:0.1..1", "--run-dir", "x"], "--run-dir is the sweep's to set"),
        (["--space", "lr=log:0.1..1", "--nproc", "2"], "--nproc is the sweep's to set"),
        (["--space", "lr"], "expected NAME=KIND:VALUES"),
        (["--space", "lr=log:0.1..1", "--storage", "sqlite:////nonexistent/x.db"], "unable to open database file"),
        (["--space", "lr=log:0.1..1", "--storage", "nonsense"], "cannot open the study in nonsense"),
        (["--space", "lr=log:0.1..1", "--storage", "mysql://x"], "needs the module MySQLdb"),
        ([], "say what to sweep"),
    ],
)
def test_a_bad_sweep_is_refused_in_one_line_before_anything_is_written(
    argv: list[str], said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"
    assert sweep_main(["s", "--runs-root", str(runs), "--data", "demo", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cifar-tui") and said in err and "\n" not in err, err
    assert not runs.exists()


def test_a_sweep_name_and_a_status_of_nothing_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sweep_main(["../up", "--runs-root", str(tmp_path), "--space", "lr=log:0.1..1"]) == 2
    assert "sweep name '../up'" in capsys.readouterr().err
    assert sweep_main(["none", "--runs-root", str(tmp_path), "--status"]) == 2
    assert "no sweep in" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_parallel_trials_each_see_one_gpu_of_those_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.sweep.plan import SweepPlan
    from engine.sweep.study import Sweep

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    plan = SweepPlan("s", "runs", parse_space(["lr=log:0.1..1"]), ["--data", "demo"], 4, parallel=2)
    sweep = Sweep(plan, report=lambda _t: None)
    assert [(sweep.trial_env(slot) or {}).get("CUDA_VISIBLE_DEVICES") for slot in (0, 1)] == ["3", "5"]
    on_cpu = Sweep(SweepPlan("s", "runs", plan.params, ["--device", "cpu"], 4, parallel=2), report=lambda _t: None)
    assert on_cpu.trial_env(0) is None  # --device cpu: the environment as it is
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert Sweep(plan, report=lambda _t: None).trial_env(1) is None  # no GPU visible


def test_the_seeds_verdict_calls_a_gap_smaller_than_the_spread_noise() -> None:
    from engine.sweep.seeds import SeedSummary, verdict

    close = [SeedSummary(4, 0.912, 0.009, 3), SeedSummary(7, 0.905, 0.004, 3)]
    assert verdict(close).startswith("verdict: noise: trial 4 leads trial 7 by 0.70 points, less than their spread")
    apart = [SeedSummary(4, 0.93, 0.004, 3), SeedSummary(7, 0.905, 0.006, 3)]
    assert verdict(apart).startswith("verdict: trial 4 is better than trial 7 by 2.50 points, more than")
    assert "too few seeds" in verdict([SeedSummary(4, 0.93, 0.0, 1), SeedSummary(7, 0.9, 0.01, 3)])
    assert "nothing to compare" in verdict(close[:1])


@pytest.mark.parametrize(("argv", "said"), [(["--seeds", "1"], "--seeds must be between 2 and 100"),
                                           (["--seeds", "3", "--top", "0"], "must be at least 1"),
                                           (["--seeds", "3"], "no sweep in")])  # fmt: skip
def test_seeds_of_nothing_are_refused(argv: list[str], said: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    assert sweep_main(["s", "--runs-root", str(tmp_path / "runs"), *argv]) == 2
    assert said in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_toml_space_file_gives_the_same_space_as_the_options(tmp_path: Path) -> None:
    from engine.sweep.space import read_space_file

    good = tmp_path / "space.toml"
    good.write_text('# the long spaces live here\n[space]\nlr = "log:0.05..0.8"\nweight-decay = "log:1e-4..1e-3"\n'
                    "cutout = [0, 8, 12]\n")  # fmt: skip
    from_file = parse_space(read_space_file(str(good)))
    assert from_file == parse_space(["lr=log:0.05..0.8", "weight-decay=log:1e-4..1e-3", "cutout=choice:0,8,12"])


@pytest.mark.parametrize(("text", "said"), [
    (None, "No such file or directory"),
    ("[space\nlr=", "not TOML"),
    ("[other]\nx = 1\n", "unknown table or key 'other'"),
    ("[space]\n", "no [space] table"),
    ("[space]\nlr = 0.1\n", "lr must be \"KIND:VALUES\" or a list of choices"),
    ("[space]\nlr = \"log:1..0.1\"\n", "needs LOW < HIGH"),
    ("[space]\nlr = \"log:0.1..1\"\n", "lr is given twice"),
])  # fmt: skip
def test_a_bad_space_file_is_one_line_and_nothing_is_written(text: str | None, said: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    path = tmp_path / "space.toml"
    if text is not None:
        path.write_text(text)
    runs = tmp_path / "runs"
    argv = ["s", "--runs-root", str(runs), "--data", "demo", "--space-file", str(path), "--space", "lr=log:0.1..1"]
    assert sweep_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert said in err and "\n" not in err, err
    assert not runs.exists()


def test_a_sweep_that_goes_on_or_shares_its_study_draws_new_values(tmp_path: Path) -> None:
    """Seed 0 for a new sweep (the same command, the same trials); a sweep that goes on, or two
    workers on one shared study, must not draw the values already drawn."""
    from engine.sweep.plan import SweepPlan
    from engine.sweep.storage import open_study

    def first_draw(plan: SweepPlan) -> float:
        study = open_study(plan)
        trial = study.ask()
        value = trial.suggest_float("lr", 1e-4, 1.0, log=True)
        study.tell(trial, 0.5)
        return value

    space = parse_space(["lr=log:1e-4..1"])
    local = SweepPlan("s", str(tmp_path / "a"), space, [], 4, sampler="random")
    (tmp_path / "a" / "s.sweep").mkdir(parents=True)
    fresh = first_draw(local)
    (tmp_path / "b" / "s.sweep").mkdir(parents=True)
    assert first_draw(SweepPlan("s", str(tmp_path / "b"), space, [], 4, sampler="random")) == fresh  # seed 0
    assert first_draw(local) != fresh  # went on: another seed
    shared = [SweepPlan("s", str(tmp_path / box), space, [], 4, sampler="random",
                        storage=f"journal:{tmp_path / 'study.journal'}") for box in ("c", "d")]  # fmt: skip
    for plan in shared:
        plan.folder.mkdir(parents=True)
    assert first_draw(shared[0]) != first_draw(shared[1])
