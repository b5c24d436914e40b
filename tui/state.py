"""What the dashboard knows about a run, built from engine events alone.

Plain Python, no Textual and no torch: the app, the snapshot tests and a replay of
``events.jsonl`` all fold the same events into this state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.run import events as ev
from engine.run import steering
from engine.run.events import Phase
from engine.run.wording import event_lines
from tui.series import Series

STATE_LABELS: dict[str, str] = {
    Phase.STARTING: "starting the training process",
    Phase.LOADING_DATA: "loading data",
    Phase.DOWNLOADING: "downloading",
    Phase.BUILDING_MODEL: "building the model",
    Phase.COMPILING: "compiling",
    Phase.FINDING_LR: "finding the learning rate",
    Phase.TRAINING: "training",
    Phase.EVALUATING: "evaluating",
    Phase.SAVING: "saving a checkpoint",
    Phase.WAITING_FOR_ROOM: "waiting for disk room",
    Phase.PAUSED: "paused",
    Phase.FINISHED: "finished",
    Phase.STOPPED: "stopped",
    Phase.FAILED: "failed",
}
ENDED = (Phase.FINISHED, Phase.STOPPED, Phase.FAILED)


@dataclass
class RunState:
    """Everything the panes show. ``version`` bumps whenever anything changes."""

    point_budget: int = 400
    state: str = Phase.STARTING
    message: str = ""
    started: ev.RunStarted | None = None
    config: dict[str, Any] = field(default_factory=dict)
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps_per_epoch: int = 0
    global_step: int = 0
    start_global_step: int = 0  # where this session of the run began (a resume starts later)
    loss: float | None = None
    lr: float | None = None
    images_per_sec: float = 0.0
    data_wait: float = 0.0
    elapsed: float = 0.0
    eval_seconds: float | None = None
    last_eval: ev.Evaluation | None = None
    best_accuracy: float | None = None
    epochs_done: list[ev.EpochEnd] = field(default_factory=list)
    last_checkpoint: str = ""
    finished: ev.Finished | None = None
    failed: ev.Failed | None = None
    lr_scale: float = 1.0
    """The steered multiplier on the scheduled LR."""
    early_stop: str = ""
    target_accuracy: float = 0.0
    steered: list[ev.Steered] = field(default_factory=list)
    lr_found: ev.LrFound | None = None
    """The learning-rate range test's record (--lr-find)."""
    """Steering acts applied (refused ones are only in the log)."""
    paused_at: float | None = None
    """Wall-clock time the trainer actually paused (from its Paused event)."""
    version: int = 0
    _eta: float | None = None
    _eta_elapsed: float = 0.0
    train_loss: Series = field(init=False)
    learning_rate: Series = field(init=False)
    test_loss: Series = field(init=False)
    test_accuracy: Series = field(init=False)
    train_accuracy: Series = field(init=False)
    requested_accuracy: Series = field(init=False)
    """Results of evaluate-now (key e), at the fractional epoch they were taken."""
    requested_loss: Series = field(init=False)
    log: list[tuple[str, str]] = field(default_factory=list)
    """New (level, line) log entries not yet shown; the log pane drains them."""

    def __post_init__(self) -> None:
        self.train_loss = Series(self.point_budget)
        self.learning_rate = Series(self.point_budget)
        # Per-epoch series are short by nature, but a 10,000-epoch run must stay cheap too.
        self.test_loss = Series(self.point_budget)
        self.test_accuracy = Series(self.point_budget)
        self.train_accuracy = Series(self.point_budget)
        self.requested_accuracy = Series(self.point_budget)
        self.requested_loss = Series(self.point_budget)

    @property
    def ended(self) -> bool:
        return self.state in ENDED

    @property
    def class_names(self) -> list[str]:
        return self.started.class_names if self.started else []

    def apply(self, e: ev.Event) -> None:
        """Fold one event into the state."""
        self.version += 1
        self.log.extend(event_lines(e))
        if isinstance(e, ev.Status):
            if not (self.ended and e.state not in ENDED):
                self.state = e.state
                self.message = e.message
        elif isinstance(e, ev.Progress):
            self._progress(e)
        elif isinstance(e, ev.RunStarted):
            # A resumed run's new session: an earlier session's end (read back by attach) is history.
            if self.ended:
                self.finished, self.failed, self.state = None, None, Phase.STARTING
            self.started = e
            self.config = e.config
            self.epochs = int(e.config.get("epochs", 0))
            self.steps_per_epoch = e.steps_per_epoch
            self.epoch, self.step = e.start_epoch, e.start_step
            self.global_step = e.start_epoch * e.steps_per_epoch + e.start_step
            self.start_global_step = self.global_step
            self.lr_scale = e.lr_scale
            self.early_stop = str(e.config.get("early_stop") or "")
            self.target_accuracy = float(e.config.get("target_accuracy") or 0.0)
        elif isinstance(e, ev.Steered):
            self._steered(e)
        elif isinstance(e, ev.LrFound):
            self.lr_found = e
        elif isinstance(e, ev.Evaluation):
            self.last_eval = e
            self.eval_seconds = e.seconds
            at = e.epoch + e.step / max(1, self.steps_per_epoch)
            if e.reason == "request":
                self.requested_accuracy.add(at, 100 * e.accuracy)
                self.requested_loss.add(at, e.loss)
            elif e.reason == "interval":  # --eval-every: points of the test curves between epoch ends
                self.test_accuracy.add(at, 100 * e.accuracy)
                self.test_loss.add(at, e.loss)
        elif isinstance(e, ev.EpochEnd):
            self.epochs_done.append(e)
            self.epoch = e.epoch
            self.step = 0
            self.test_loss.add(e.epoch, e.test_loss)
            self.test_accuracy.add(e.epoch, 100 * e.test_accuracy)
            self.train_accuracy.add(e.epoch, 100 * e.train_accuracy)
            self.best_accuracy = max(e.test_accuracy, self.best_accuracy or 0.0)
        elif isinstance(e, ev.CheckpointSaved):
            self.last_checkpoint = e.path
        elif isinstance(e, ev.Paused):
            self.paused_at = e.t
        elif isinstance(e, ev.Finished):
            self.finished = e
            self.state = Phase.FINISHED if e.reason == "completed" else Phase.STOPPED
        elif isinstance(e, ev.Failed):
            self.failed = e
            self.state = Phase.FAILED
            self.message = e.message

    def _steered(self, e: ev.Steered) -> None:
        if e.refused:
            return
        self.steered.append(e)
        if e.what == steering.LR_SCALE:
            self.lr_scale = e.new
        elif e.what == steering.EPOCHS:
            self.epochs = int(e.new)
        elif e.what == steering.EARLY_STOP:
            self.early_stop = steering.rule_text(e.new, e.new_extra)
        elif e.what == steering.TARGET:
            self.target_accuracy = e.new

    def steer_values(self) -> dict[str, str]:
        """What the steering dialog starts from: each steerable value as a person types it."""
        return {
            steering.LR_SCALE: steering.shown(steering.LR_SCALE, self.lr_scale),
            steering.EPOCHS: str(self.epochs),
            steering.EARLY_STOP: self.early_stop or "off",
            steering.TARGET: steering.shown(steering.TARGET, self.target_accuracy),
        }

    def _progress(self, e: ev.Progress) -> None:
        self.epoch, self.epochs, self.step = e.epoch, e.epochs, e.step
        self.steps_per_epoch, self.global_step = e.steps_per_epoch, e.global_step
        self.loss, self.lr = e.loss, e.lr
        self.images_per_sec = (
            e.images_per_sec if not self.images_per_sec else 0.7 * self.images_per_sec + 0.3 * e.images_per_sec
        )
        self.data_wait = e.data_wait
        self.elapsed = e.elapsed
        self._update_eta(e.elapsed)
        self.train_loss.add(e.global_step, e.loss)
        self.learning_rate.add(e.global_step, e.lr)

    def eta_seconds(self) -> float | None:
        """Remaining time, at the run's own average pace over this session (training and
        evaluation together once an epoch has ended, so it neither jumps at epoch boundaries nor
        forgets the evaluations). Never from the speed of the last interval: that swings with
        every slow batch. Within the first epoch the estimate also counts down between updates and
        moves a fifth of the way to each new one, so a slow start settles instead of swinging."""
        if self.ended or self._eta is None:
            return None
        return self._eta

    def _update_eta(self, elapsed: float) -> None:
        done = self.global_step - self.start_global_step
        if not self.steps_per_epoch or done < 2 or elapsed <= 0:
            return  # the first steps carry start-up costs (workers, allocations): no pace yet
        steps_left = max(0, (self.epochs - self.epoch) * self.steps_per_epoch - self.step)
        raw = steps_left * elapsed / done
        if self.epochs_done:
            self._eta = raw
        else:
            raw += (self.epochs - self.epoch) * (self.eval_seconds or 0.0)
            if self._eta is None:
                self._eta = raw
            else:
                counted_down = max(0.0, self._eta - (elapsed - self._eta_elapsed))
                self._eta = counted_down + 0.2 * (raw - counted_down)
        self._eta_elapsed = elapsed

    def drain_log(self) -> list[tuple[str, str]]:
        entries, self.log = self.log, []
        return entries
