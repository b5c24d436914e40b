"""The dashboard's keys that act on a run rather than watch it: the LR multiplier (``-``, ``+``),
the steering dialog (``t``), and the answer to the learning-rate finder's offer (a run started
with ``--lr-find`` waits, paused, for it). :class:`tui.app.CifarTui` builds on it."""

from __future__ import annotations

from textual import events

from engine.run import events as ev
from engine.run import steering
from engine.run.controls import Command
from engine.run.steering import SteerAct
from tui.leaving import LeavingApp
from tui.screens.lr_find import LrFindScreen
from tui.screens.steer import SteerDialog


class SteeringApp(LeavingApp):
    """An app that steers the run it follows."""

    _lr_question = False  # the run waits, paused, for an answer to its LR finder
    _typed_ahead: list[events.Key] | None = None
    """Keys that came while the steering dialog was opening (None: it is not opening)."""
    _replaying = False
    _replayed: events.Key | None = None

    def _send(self, command: Command, note: str, steer: SteerAct | None = None) -> None:
        """Send a command to the trainer, saying ``note`` (the app defines it)."""

    def steer_source(self) -> str:
        """Who steers, as the run's events say it: this dashboard, an attached one, a browser."""
        if self.is_web:
            return steering.BROWSER
        return steering.DASHBOARD if self.controller.owns_training else steering.ATTACHED

    def action_steer_lr(self, factor: float) -> None:
        act = SteerAct(steering.LR_SCALE, factor, 1.0, self.steer_source())
        self._send(Command.STEER, f"LR multiplier x{self.run_state.lr_scale * factor:g} at the next batch…", act)

    def action_steer(self) -> None:
        def send(acts: list[SteerAct] | None) -> None:
            for act in acts or []:
                shown = steering.shown(act.what, act.value, act.extra)
                self._send(Command.STEER, f"{steering.NAMES[act.what]} {shown} at the next batch…", act)

        self.push_screen(SteerDialog(self.run_state.steer_values(), self.steer_source(), self._play_typed_ahead), send)

    async def on_event(self, event: events.Event) -> None:
        # Keys typed (or pasted) right after t are kept from the moment t comes in (its action runs
        # only once it has passed the focused widget) until the dialog's first field has the focus,
        # then played into it: they land in the fields they were meant for, never on the dashboard.
        if isinstance(event, events.Key) and not event.is_forwarded and event is not self._replayed:
            if self._typed_ahead is not None:
                self._typed_ahead.append(event)
                return
            if event.key == "t" and self.screen is self.screen_stack[0] and self.controller.training_running():
                self._typed_ahead = []
                self.set_timer(2.0, self._play_typed_ahead)  # should the dialog not open, nothing is lost
        await super().on_event(event)

    def _play_typed_ahead(self) -> None:
        if self._typed_ahead is not None and not self._replaying:
            self._replaying = True
            self.run_worker(self._replay(), group="typed-ahead")

    async def _replay(self) -> None:
        """The kept keys in order, each handled before the next (a tab moves the focus before the
        keys after it come), then keys go their usual way again."""
        from textual._wait import wait_for_idle

        while self._typed_ahead:
            key = self._typed_ahead.pop(0)
            self._replayed = events.Key(key.key, key.character)
            self.post_message(self._replayed)
            await wait_for_idle(0)
        self._typed_ahead, self._replaying = None, False

    def note_lr_question(self, event: ev.Event) -> None:
        """Follow whether the run waits for an answer to its finder (until it resumes or ends)."""
        if isinstance(event, ev.LrFound | ev.Resumed | ev.Finished | ev.Failed):
            self._lr_question = isinstance(event, ev.LrFound) and event.asks

    def ask_about_lr(self) -> None:
        """Offer the finder's suggestion, once, while the run waits for it."""
        if self._lr_question and not isinstance(self.screen, LrFindScreen) and self.controller.training_running():
            self._lr_question = False
            self.push_screen(LrFindScreen(self.run_state), self._lr_answer)

    def _lr_answer(self, choice: str | None) -> None:
        """Train at the finder's suggestion (a multiplier on --lr from the first step) or at --lr."""
        found = self.run_state.lr_found
        if choice == "use" and found is not None and found.valley is not None:
            act = SteerAct(steering.LR_SCALE, found.valley / found.lr, 0.0, self.steer_source())
            self._send(Command.STEER, f"training at lr {found.valley:.2e}…", act)
        self._send(Command.RESUME, "training…")
