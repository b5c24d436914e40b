"""A sweep on Optuna: its samplers (TPE, random, grid), pruners (successive halving, Hyperband,
median) and storage (SQLite in the runs folder, or any URL Optuna takes, PostgreSQL among them);
this module writes no search and no coordination of its own.

Every trial is an ordinary run (``python -m engine`` with the sweep's options and the trial's
values, in ``RUNS/<sweep>-tNNN``), so the runs screen, attach, steer, export and resume work on
it unchanged. The sweep reads each trial's test accuracy per epoch from its events.jsonl and
reports it to Optuna; a trial Optuna prunes is stopped through its control socket (saving),
ends as ``pruned`` and frees its place for the next. A trial that crashes or diverges is
recorded as failed with its cause and the sweep goes on. A stop signal (Ctrl-C, a lost
terminal) stops the running trials, saving, and ends the sweep; the same command again goes on
with the study: finished trials stay, interrupted ones are tried again from the start (their
values first). Optuna's heartbeat marks a trial whose sweep was killed (SIGKILL) as failed once
it has been silent for a minute, and retries it once."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from engine.run.control_socket import trainer_alive
from engine.run.controls import PRUNED_CAUSE, STOPPED_FROM_SWEEP
from engine.sweep.plan import SweepPlan
from engine.sweep.process import RunProcess, Slots, epoch_ends, failure, start_run, stop_cause, stop_run
from engine.sweep.space import trial_argv
from engine.sweep.storage import JOURNAL, open_study
from engine.sweep.trials import counted, finished


class TrialFailed(Exception):
    """The trial's run failed (crashed, diverged, refused): recorded as failed, the sweep goes on."""


class TrialInterrupted(Exception):
    """The sweep was stopped while the trial ran: recorded as failed (interrupted), tried again."""


class Sweep:
    """Runs a plan's remaining trials, ``plan.parallel`` at a time. Several sweeps (processes,
    machines) may work on one study: trial numbers come from the storage, so each trial knows
    whether it is within the trial count and the count is exact."""

    SNAPSHOT_S = 2.0
    """Seconds between rewrites of the sweep screen's file (trials.json)."""

    def __init__(self, plan: SweepPlan, report: Callable[[Any], None], say: Callable[[str], None] = print) -> None:
        self.plan, self.report, self.say = plan, report, say
        self.stopping = threading.Event()
        self.running: dict[int, RunProcess] = {}
        self.lock = threading.Lock()
        self.slots = Slots(plan.parallel, plan.base)

    def run(self) -> int:
        """Run the sweep to its trial count or a stop signal; the exit code (0, or 130 stopped)."""
        study = open_study(self.plan)
        self._one_ask_at_a_time(study)
        self._await_stale(study)
        self._retry_interrupted(study)
        left = self.plan.trials - len(finished(study.get_trials(deepcopy=False)))
        if left <= 0:
            self.say(f"sweep {self.plan.name}: all {self.plan.trials} trials are done")
            return 0
        self.say(f"sweep {self.plan.name}: {left} of {self.plan.trials} trials to run, {self.plan.parallel} at a time; "
                 f"study in {self.plan.storage_url}")  # fmt: skip
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        done = threading.Event()
        self._snapshot(study, live=True)
        threading.Thread(target=self._keep_snapshot, args=(study, done), name="sweep-snapshot", daemon=True).start()
        try:
            while True:
                try:
                    study.optimize(self._objective, n_jobs=self.plan.parallel, catch=(TrialFailed, TrialInterrupted),
                                   callbacks=[self._finished])  # fmt: skip
                    break
                except ValueError as exc:
                    # A trial of ours whose heartbeat a loaded machine delayed past the grace period
                    # was failed as stale (and its retry queued) by another thread's check: Optuna
                    # then cannot record its end. The sweep goes on with the retry.
                    if "Cannot tell a FAIL trial" not in str(exc) or self.stopping.is_set():
                        raise
        finally:
            done.set()
            for s, handler in previous.items():
                signal.signal(s, handler)
            self._snapshot(study, live=False)
        if self.stopping.is_set():
            self.say(f"sweep {self.plan.name}: stopped; the running trials saved and stopped. The same command "
                     f"goes on: interrupted trials are tried again with their values")  # fmt: skip
            return 130
        return 0

    @staticmethod
    def _one_ask_at_a_time(study: Any) -> None:
        """Optuna's threads (``n_jobs``) each ask the study for a trial; two of them could take the
        same queued trial (a retry) from SQLite, which has no row locks, and run it twice, in one
        run folder. This process's asks go one at a time (PostgreSQL's row locks keep boxes apart)."""
        ask, lock = study.ask, threading.Lock()

        def ask_alone(*args: Any, **kwargs: Any) -> Any:
            with lock:
                return ask(*args, **kwargs)

        study.ask = ask_alone

    def _keep_snapshot(self, study: Any, done: threading.Event) -> None:
        """The sweep screen's file, rewritten every few seconds while the sweep runs."""
        while not done.wait(self.SNAPSHOT_S):
            self._snapshot(study, live=True)

    def _snapshot(self, study: Any, *, live: bool) -> None:
        from engine.sweep.snapshot import write_snapshot

        try:
            write_snapshot(self.plan, study, live=live)
        except Exception as exc:  # a full disk or a storage hiccup costs the screen a refresh, never the sweep
            self.say(f"sweep {self.plan.name}: could not write the screen's file: {type(exc).__name__}: {exc}")

    def _await_stale(self, study: Any) -> None:
        """Trials left running by a sweep of this box that was killed: their trainers are gone, but
        the study counts them as running until Optuna's heartbeat check fails them (3 missed beats).
        Wait for that, so that their retries run now instead of the sweep stopping short."""
        from optuna.storages import fail_stale_trials
        from optuna.trial import TrialState

        if self.plan.storage_url.startswith(JOURNAL):
            return  # (no heartbeat in a journal file: nothing would fail them)

        def dead() -> list[Any]:
            return [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                    if "run_dir" in t.user_attrs and Path(t.user_attrs["run_dir"]).is_dir()
                    and not trainer_alive(Path(t.user_attrs["run_dir"]))]  # fmt: skip

        if left := dead():
            self.say(f"sweep {self.plan.name}: {len(left)} trials were left running by a sweep that was killed; "
                     f"waiting up to {3 * self.plan.heartbeat + 2} s for Optuna to fail and retry them")  # fmt: skip
        deadline = time.monotonic() + 3 * self.plan.heartbeat + 2
        while dead() and time.monotonic() < deadline:
            time.sleep(0.5)
            fail_stale_trials(study)

    def _retry_interrupted(self, study: Any) -> None:
        """Trials a stop interrupted run again first, with their values (from the start). The new
        trial names the one it stands in for (a finished trial's attributes cannot change)."""
        from optuna.trial import TrialState

        trials = study.get_trials(deepcopy=False)
        retried = {t.user_attrs.get("retry_of") for t in trials}
        for t in trials:
            # (a retry the stop kept from starting has its values only as Optuna's fixed ones)
            values = t.params or t.system_attrs.get("fixed_params")
            if t.state == TrialState.FAIL and t.user_attrs.get("interrupted") and values and t.number not in retried:
                study.enqueue_trial(values, user_attrs={"retry_of": t.number}, skip_if_exists=False)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        """Stop: no new trial; the running ones save and stop (they have sessions of their own)."""
        self.stopping.set()
        with self.lock:
            for proc in self.running.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)

    def _within_count(self, trial: Any) -> bool:
        """Whether this trial is one of the first ``--trials`` that count: the storage numbered it."""
        before = [t for t in counted(trial.study.get_trials(deepcopy=False)) if t.number < trial.number]
        return len(before) < self.plan.trials

    def _objective(self, trial: Any) -> float:
        if self.stopping.is_set() or not self._within_count(trial):
            trial.study.stop()
            trial.set_user_attr("interrupted" if self.stopping.is_set() else "surplus", True)
            raise TrialInterrupted("the sweep was stopped" if self.stopping.is_set() else "the trial count is reached")
        values = {p.name: p.sample(trial) for p in self.plan.params}
        run_dir = self.plan.run_dir(trial.number)
        trial.set_user_attr("run_dir", str(run_dir))
        args = [*trial_argv(self.plan.base, values), "--run-dir", str(run_dir),
                "--name", f"{self.plan.name}-t{trial.number:03d}"]  # fmt: skip
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        log_path = self.plan.folder / f"t{trial.number:03d}.log"
        try:
            with self.slots.taken() as slot:
                env = self.slots.env(slot)
                trial.set_user_attr("device", f"GPU {env['CUDA_VISIBLE_DEVICES']}" if env else "cpu")
                try:
                    with self.lock:  # no trial starts once a stop has been sent to the running ones
                        if self.stopping.is_set():
                            trial.set_user_attr("interrupted", True)
                            raise TrialInterrupted("the sweep was stopped")
                        proc = start_run(args, log_path, env)
                        self.running[trial.number] = proc
                    return self._follow(trial, proc, run_dir, log_path)
                finally:
                    with self.lock:
                        self.running.pop(trial.number, None)
        finally:
            self._stop_when_counted(trial.study)

    def trial_env(self, slot: int) -> dict[str, str] | None:
        """The environment of the trial in ``slot`` (Slots.env: one GPU each where there are GPUs)."""
        return self.slots.env(slot)

    def _stop_when_counted(self, study: Any) -> None:
        if len(finished(study.get_trials(deepcopy=False))) >= self.plan.trials:
            study.stop()

    def _follow(self, trial: Any, proc: RunProcess, run_dir: Path, log_path: Path) -> float:
        """Report each epoch's test accuracy; stop the run if Optuna prunes it; its result."""
        import optuna

        reported, best, pruned = 0, 0.0, False
        while True:
            code = proc.poll()
            for e in epoch_ends(run_dir)[reported:]:
                reported += 1
                best = max(best, e.test_accuracy)
                trial.report(e.test_accuracy, e.epoch)
                # (never at the last epoch: the run has ended, and whether its process was still
                # saving when this looked must not decide between completed and pruned)
                if not pruned and code is None and e.epoch < e.epochs and trial.should_prune():
                    pruned = stop_run(run_dir, PRUNED_CAUSE)
            if code is not None:
                break
            time.sleep(0.5)
        trial.set_user_attr("epochs", reported)
        trial.set_user_attr("best_accuracy", best if reported else None)
        cause = stop_cause(run_dir)  # pruned or stopped by hand on the sweep screen
        if cause == STOPPED_FROM_SWEEP:
            trial.set_user_attr("cause", cause)
            raise TrialFailed(cause)
        if pruned or cause == PRUNED_CAUSE:
            raise optuna.TrialPruned(f"pruned after {reported} epochs at {best:.1%}")
        if self.stopping.is_set() and code in (130, 143):
            trial.set_user_attr("interrupted", True)
            raise TrialInterrupted("stopped with the sweep (saved)")
        if code != 0:
            cause = failure(log_path, code)
            trial.set_user_attr("cause", cause)
            raise TrialFailed(cause)
        return best

    def _finished(self, study: Any, trial: Any) -> None:
        self._snapshot(study, live=True)
        if not trial.user_attrs.get("surplus") and trial.params:  # (one a stop kept from starting: no line)
            self.report(trial)
