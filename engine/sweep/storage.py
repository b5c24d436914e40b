"""Where a sweep's study lives: Optuna's storages (SQLite, PostgreSQL, a journal file), opened
with a heartbeat where Optuna keeps one, and every way of failing to open said in one line."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from engine.run.errors import first_line

if TYPE_CHECKING:
    from engine.sweep.plan import SweepPlan

JOURNAL = "journal:"
"""``--storage journal:PATH``: Optuna's journal file (one file several processes append to)."""


def open_storage(plan: SweepPlan) -> Any:
    """The study's storage. SQLite and PostgreSQL (Optuna's RDBStorage) keep a heartbeat: a trial
    whose sweep was killed is marked failed after ``3 x heartbeat`` seconds of silence and tried
    again once, with its values. A journal file has no heartbeat in Optuna."""
    import sqlalchemy.exc
    from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
    from optuna.storages.journal import JournalFileBackend

    url = plan.storage_url
    if url.startswith(JOURNAL):
        return JournalStorage(JournalFileBackend(url.removeprefix(JOURNAL)))
    retry = RetryHeartbeatStaleTrialCallback(max_retry=1)
    for attempt in range(5):
        try:
            return RDBStorage(
                url,
                heartbeat_interval=plan.heartbeat,
                grace_period=3 * plan.heartbeat,
                heartbeat_stale_trial_callback=retry,
                engine_kwargs={"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {},
            )
        except sqlalchemy.exc.DBAPIError:
            # Two workers that reach a new database at once both create Optuna's tables, and the
            # slower one fails: its next try finds them made.
            if attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


class StorageError(Exception):
    """The study's storage cannot be opened: said in one line (what, and what to do)."""


def open_study_or_say(plan: SweepPlan) -> Any:
    """open_study, with every way a storage fails to open as a StorageError."""
    try:
        return open_study(plan)
    except ImportError as exc:  # Optuna's, caused by the missing driver
        missing = getattr(exc.__cause__, "name", None) or getattr(exc, "name", None) or "a database driver"
        raise StorageError(f"{plan.storage_url}: needs the module {missing} (PostgreSQL: pip install "
                           f"'cifar-tui[postgres]', which brings psycopg)") from None  # fmt: skip
    except Exception as exc:  # sqlalchemy's, optuna's and the OS's own: one line, never a traceback
        raise StorageError(f"cannot open the study in {plan.storage_url}: {first_line(exc)}") from None


def open_study(plan: SweepPlan) -> Any:
    import warnings

    import optuna

    # The sweep says what happened to each trial itself; Optuna's own log would repeat it with a
    # traceback for every failed trial, and warn that heartbeats are experimental.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    storage = open_storage(plan)
    samplers = {
        "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed),
        "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
        "grid": lambda seed: optuna.samplers.GridSampler({p.name: p.grid() for p in plan.params}, seed=seed),
    }
    pruners = {
        "asha": lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=1),
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0),
        "none": lambda: optuna.pruners.NopPruner(),
    }
    study = optuna.create_study(study_name=plan.name, storage=storage, sampler=samplers[plan.sampler](0),
                                pruner=pruners[plan.pruner](), direction="maximize", load_if_exists=True)  # fmt: skip
    # A new sweep on this box draws as seed 0 does: the same command gives the same trials. A
    # sweep that goes on draws on from another seed (seed 0 again would repeat the values of the
    # first trials), and workers sharing a study each draw from their own entropy (the same seed
    # on two boxes would give both the same values at the same time).
    if plan.storage:
        study.sampler = samplers[plan.sampler](None)
    elif held := len(study.get_trials(deepcopy=False)):
        study.sampler = samplers[plan.sampler](held)
    return study
