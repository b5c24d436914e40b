"""The dashboard app: one run's session followed by a thread worker, shown by the dashboard screen.

Data flows one way: the worker reads the session's events into the controller's buffer and
posts a tiny ``EventsReady`` message that coalesces (``can_replace``), so training never waits
for drawing. The UI folds buffered events into the run state; the screen redraws on timers.
Keys go the other way, through the controller's session to the trainer.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from textual import work
from textual.app import SystemCommand
from textual.css.query import NoMatches
from textual.events import Resize
from textual.message import Message
from textual.screen import Screen
from textual.worker import get_current_worker

from engine.run import events as ev
from engine.run.config import TrainConfig
from engine.run.controls import Command
from engine.run.steering import SteerAct
from engine.session.base import Session
from tui.controller import Lifecycle, RunController, SessionFactory
from tui.keys import ACTS_ON_TRAINING, KEYS, bindings
from tui.notify import end_notice, notification_escapes, offline_config
from tui.screens.batch import BatchScreen
from tui.screens.confusion import ConfusionScreen
from tui.screens.dashboard import DashboardScreen
from tui.screens.dialogs import Choice, offline_dialog, stop_dialog
from tui.screens.help import HelpScreen
from tui.screens.runs import RunsScreen
from tui.steering_keys import SteeringApp
from tui.telemetry import DeviceSample, NvmlReader, sample_device
from tui.terminal import TerminalGuard
from tui.widgets.plots import LossPlot


def child_session(cfg: TrainConfig) -> Session:
    from engine.session.child import ChildSession

    return ChildSession(cfg)


class EventsReady(Message):
    """New engine events are in the controller's buffer. A newer one replaces an unprocessed older one."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, EventsReady)


class CifarTui(SteeringApp):
    """The cifar-tui dashboard. ``return_code`` is 0 when training completed, 2 on bad input."""

    CSS_PATH = "app.tcss"
    TITLE = "cifar-tui"
    BINDINGS = bindings()

    def __init__(self, cfg: TrainConfig, session_factory: SessionFactory = child_session, *,
                 refresh_hz: float = 1.0, text_hz: float = 2.0, telemetry_s: float = 2.0, point_budget: int = 400,
                 guard: TerminalGuard | None = None, on_hangup: str = "stop", quit_timeout_s: float = 60.0,
                 notify_desktop: bool = True) -> None:  # fmt: skip
        super().__init__(driver_class=guard.driver_class() if guard is not None else None)
        self.cfg, self.guard, self.on_hangup, self.quit_timeout_s = cfg, guard, on_hangup, quit_timeout_s
        self.refresh_hz, self.text_hz, self.telemetry_s, self.notify_desktop = refresh_hz, text_hz, telemetry_s, notify_desktop  # fmt: skip
        self.controller = RunController(session_factory, point_budget)
        self.dashboard = DashboardScreen(self.controller.run_state, refresh_hz)
        self._quit_dialog: Choice | None = None
        self._remote_lock = threading.Lock()
        self._ui_loop: asyncio.AbstractEventLoop | None = None
        self._nvml = NvmlReader()  # initialised at the first GPU reading, once
        self._footer_running: bool | None = None  # what the footer's keys were last checked against
        self._held: list[tuple[Command, str, SteerAct | None]] = []  # keys pressed before the trainer was reached

    @property
    def session(self) -> Session | None:
        return self.controller.session

    @property
    def events_seen(self) -> int:
        """Events folded into the run state so far (tests and screenshots wait on it)."""
        return self.controller.events_seen

    def get_default_screen(self) -> DashboardScreen:
        return self.dashboard

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """The command palette (Ctrl+P) offers the dashboard's keys too; its Quit is ``q``'s."""
        yield from super().get_system_commands(screen)
        for key in KEYS:
            if "(" not in key.action:  # scrolling the log by pages means nothing from the palette
                yield SystemCommand(
                    key.footer, f"{key.brief} (key: {key.label})", getattr(self, f"action_{key.action}")
                )

    def on_mount(self) -> None:
        self.set_interval(1.0 / self.text_hz, self.refresh_text)
        self.set_interval(min(0.5, 1.0 / self.refresh_hz), self.dashboard.refresh_plots)
        self.set_interval(self.telemetry_s, self.sample_telemetry)
        self.refresh_text()
        self._install_signal_handlers()
        self.start_training(self.cfg)

    def on_resize(self, event: Resize) -> None:
        self.dashboard.fit(event.size.width, event.size.height)

    # -- the worker that follows the session ------------------------------------------------
    def start_training(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.controller.restart(self.run_state.point_budget)
        self.dashboard.follow(self.run_state)
        self.run_state.message = "importing torch, starting the training process"
        self._follow_session(cfg)

    @work(thread=True, exclusive=True, exit_on_error=False, group="trainer", description="training process")
    def _follow_session(self, cfg: TrainConfig) -> None:
        worker, controller = get_current_worker(), self.controller
        session = controller.open(cfg)
        try:
            session.start()
            controller.session_ready = True
            self.call_from_thread(self._send_held)
            for event in session.events():
                if worker.is_cancelled:
                    break
                if event is not None:
                    controller.put(event)
                    self.post_message(EventsReady())
        except Exception as exc:  # the channel broke: show it, never crash the UI
            controller.put(ev.Failed("crash", f"lost the training process: {exc}"))
            self.post_message(EventsReady())
        finally:
            session.close()

    def on_events_ready(self, _: EventsReady) -> None:
        for event in self.controller.take():
            self.note_lr_question(event)
            if isinstance(event, ev.Finished | ev.Failed):
                self.dashboard.show_device(None)  # the trainer is gone: its last sample would mislead
                if self.notify_desktop and abs(time.time() - event.t) < 60:  # live, not a replay
                    self.desktop_notify(*end_notice(event))
            if isinstance(event, ev.Failed):
                self._on_failure(event)
        if self.controller.lifecycle is Lifecycle.DETACHED:
            self._leave(0)  # the trainer goes on alone
        else:
            self.ask_about_lr()

    def desktop_notify(self, title: str, body: str) -> None:
        """The bell, and a desktop notification where the terminal forwards one."""
        self.bell()
        if self._driver is not None:
            self._driver.write(notification_escapes(title, body))
            self._driver.flush()

    def _on_failure(self, failure: ev.Failed) -> None:
        if failure.error != "download":  # a download failure gets its own dialog instead
            self.notify(failure.message, title="training failed", severity="error", timeout=10)
            return
        offline, what = offline_config(self.cfg, failure)
        self.push_screen(offline_dialog(what), lambda a: self.start_training(offline) if a == "offline" else None)

    def fold_events(self) -> None:
        self.on_events_ready(EventsReady())

    def refresh_text(self) -> None:
        # Events also arrive by message; taking any left in the buffer here means a message lost or
        # coalesced away can delay them half a second at most, never hide a run's last events.
        self.fold_events()
        self.dashboard.attached = not self.controller.owns_training
        with contextlib.suppress(NoMatches):  # tearing down: the panes are already gone
            self.dashboard.refresh_text()
        running = self.controller.training_running()
        # The footer shows the keys that act now (once the dashboard is up: a refresh before that is lost).
        if running != self._footer_running and self.dashboard.is_mounted:
            self._footer_running = running
            self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ACTS_ON_TRAINING:
            return self.controller.can_detach() if action == "detach" else self.controller.training_running()
        return True

    def action_not_now(self, action: str) -> None:
        """A key that acts on training, pressed while none runs: say so rather than do nothing."""
        self.notify("nothing to detach" if action == "detach" else "no training is running", severity="warning")

    def is_settled(self) -> bool:
        """Every buffered event folded in and every pane showing it (tests and screenshots wait on this)."""
        return not self.unsettled()

    def unsettled(self) -> list[str]:
        """What is not shown yet (empty: settled); a test that waited in vain says this."""
        pending = self.controller.pending()
        return ([f"{pending} buffered events"] if pending else []) + self.dashboard.unsettled()

    def sample_telemetry(self) -> None:
        if self.run_state.started is not None and not self.run_state.ended:
            self._sample_worker()

    @work(thread=True, exclusive=True, exit_on_error=False, group="telemetry")
    def _sample_worker(self) -> None:
        session, started = self.controller.session, self.run_state.started
        on_gpu = bool(started and started.device.startswith("cuda"))
        uuids = list(started.gpu_uuids) if started else []
        index = int(started.device.split(":")[1]) if started and ":" in started.device else 0
        pids = list(started.pids) if started else []
        sample = sample_device(session.pid if session else None, self._nvml if on_gpu else None, uuids, index, pids)
        self.call_from_thread(self._show_sample, sample)

    def _show_sample(self, sample: DeviceSample) -> None:
        self.dashboard.show_device(sample)

    async def on_unmount(self) -> None:
        await super().on_unmount()
        self._nvml.close()

    # -- keys -----------------------------------------------------------------------------------
    def _send(self, command: Command, note: str, steer: SteerAct | None = None) -> None:
        session = self.controller.session
        if not self.controller.session_ready and not self.run_state.ended:
            # The dashboard is up before its trainer is reached (a browser tab's first keys, a fast
            # typist): the key is kept and sent once the session has started, never dropped.
            self._held.append((command, note, steer))
            self.notify(f"{note} (as soon as the trainer is reached)", timeout=3)
            return
        if session is None or self.run_state.ended:
            self.notify("no training is running", severity="warning")
        elif not session.remote:  # our own child: a local pipe, never slow
            ok = session.send(command, steer=steer)
            self.notify(note, timeout=2) if ok else self.notify("no training is running", severity="warning")
        else:
            self.notify(note, timeout=2)
            self._send_remote(session, command, steer)

    def _send_held(self) -> None:
        held, self._held = self._held, []
        for command, note, steer in held:
            self._send(command, note, steer)

    @work(thread=True, group="control", exclusive=False)
    def _send_remote(self, session: Session, command: Command, steer: SteerAct | None = None) -> None:
        """A run in another process is steered over its control socket: a round trip that may take
        seconds on a busy machine, so it runs here, never on the UI loop (one lock keeps keys in order)."""
        with self._remote_lock:
            ok = session.send(command, steer=steer)
        if not ok:
            self.call_from_thread(self.notify, f"{command}: the trainer did not take it (gone?)", severity="warning")

    def action_pause(self) -> None:
        self._send(Command.TOGGLE_PAUSE, self.controller.pause_note())

    def action_save(self) -> None:
        self._send(Command.SAVE, "saving a checkpoint at the next batch…")

    def action_evaluate(self) -> None:
        self._send(Command.EVALUATE, "evaluating on the test split…")

    def action_scroll_log(self, pages: int) -> None:
        self.dashboard.scroll_log(pages)

    def action_confusion(self) -> None:
        started = self.run_state.started
        self.push_screen(ConfusionScreen(self.run_state.last_eval, started.run_dir if started else ""))

    def action_batch_view(self) -> None:
        started = self.run_state.started
        self.push_screen(BatchScreen(started.run_dir if started else ""))

    def action_cycle_plots(self) -> None:
        self.dashboard.cycle_plots()

    def action_log_scale(self) -> None:
        with contextlib.suppress(NoMatches):
            self.dashboard.change_loss_plot(LossPlot.toggle_log_scale)

    def action_smoothing(self) -> None:
        with contextlib.suppress(NoMatches):
            self.dashboard.change_loss_plot(LossPlot.cycle_smoothing)

    def action_runs(self) -> None:
        started = self.run_state.started
        root = Path(started.run_dir).parent if started else Path(self.cfg.runs_root)
        self.push_screen(RunsScreen(root, started.run_dir if started else ""))

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_stop_training(self) -> None:
        if not self.controller.training_running():
            self.notify("no training is running", severity="warning")
            return

        def answer(choice: str | None) -> None:
            if choice in ("save", "nosave"):
                self._send(Command.STOP_SAVE if choice == "save" else Command.STOP, "stopping at the next batch…")

        self.push_screen(stop_dialog(), answer)

    def action_detach(self) -> None:
        """Leave training running in the background and close the dashboard (cifar-tui attach brings it back)."""
        if self.controller.detach():
            self.notify("detaching…", timeout=2)
        else:
            self.notify("nothing to detach", severity="warning")


def make_app(cfg: TrainConfig, session_factory: SessionFactory | None = None, **options: Any) -> CifarTui:
    """The one factory used by the CLI and by tests."""
    return CifarTui(cfg, session_factory or child_session, **options)
