"""The dashboard: runs the engine in a child process (owned by one thread worker) and shows it live.

Data flows one way: the worker reads events from the training process, appends them
to a buffer and posts a tiny ``EventsReady`` message that coalesces (``can_replace``),
so training never waits for drawing. The UI folds buffered events into
``RunState`` and panes redraw on timers: text a few times a second, plots at most
``refresh`` times a second and only when their data changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

from textual import work
from textual.app import App, ComposeResult
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.events import Print, Resize
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Footer, RichLog
from textual.worker import get_current_worker

from engine.run import events as ev
from engine.run.config import TrainConfig
from engine.run.errors import EXIT_STOPPED, end_code
from tui.keys import bindings
from tui.runs_screen import RunsScreen
from tui.screens import Choice, ConfusionScreen, HelpScreen, quit_dialog
from tui.state import RunState
from tui.terminal import TerminalGuard
from tui.widgets.classes import ClassesPane
from tui.widgets.device import DevicePane, DeviceSample, NvmlReader, sample_device
from tui.widgets.plots import AccuracyPlot, LossPlot, PlotPane
from tui.widgets.progress import ProgressPane, RunHeader


class Engine(Protocol):
    """What the app needs from a training engine (engine.session.child.TrainerProcess, or a fake)."""

    def start(self) -> None: ...
    def events(self, poll: float = 0.2) -> Iterator[ev.Event | None]: ...
    def send(self, command: str) -> bool: ...
    def close(self, timeout: float = 15.0) -> None: ...
    def alive(self) -> bool: ...

    @property
    def pid(self) -> int | None: ...


EngineFactory = Callable[[TrainConfig], Engine]


def process_engine(cfg: TrainConfig) -> Engine:
    from engine.session.child import TrainerProcess

    return TrainerProcess(cfg)


_NEVER = object()
W = TypeVar("W", bound=Widget)


class EventsReady(Message):
    """New engine events are in the app's buffer. A newer one replaces an unprocessed older one."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, EventsReady)


class LogPane(RichLog):
    """Engine messages, warnings, and anything printed while the app runs."""

    following = True
    """Whether the newest line is in view; kept over a resize (a shrink would otherwise leave
    older lines on screen), lost when the user scrolls up to read."""

    def on_print(self, event: Print) -> None:
        if event.text.strip():
            self.write(event.text.rstrip("\n"))

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self.following = new_value >= self.max_scroll_y

    def on_resize(self, event: Resize) -> None:
        super().on_resize(event)
        if self.following:
            self.scroll_end(animate=False, immediate=False, x_axis=False)

    def is_current(self) -> bool:
        """Whether the newest line is in view (RichLog scrolls to it after the next refresh)."""
        return not self.following or self.scroll_offset.y >= self.max_scroll_y


class CifarTui(App[int]):
    """The cifar-tui dashboard. ``return_code`` is 0 when training completed, 2 on bad input."""

    CSS_PATH = "app.tcss"
    TITLE = "cifar-tui"
    BINDINGS = bindings()

    def __init__(
        self,
        cfg: TrainConfig,
        engine_factory: EngineFactory = process_engine,
        *,
        refresh_hz: float = 1.0,
        text_hz: float = 2.0,
        telemetry_s: float = 2.0,
        point_budget: int = 400,
        guard: TerminalGuard | None = None,
        on_hangup: str = "stop",
        quit_timeout_s: float = 60.0,
        notify_desktop: bool = True,
    ) -> None:
        super().__init__(driver_class=guard.driver_class() if guard is not None else None)
        self.guard = guard
        self.on_hangup = on_hangup
        self.quit_timeout_s = quit_timeout_s
        self._last_event_at = time.monotonic()
        self.notify_desktop = notify_desktop
        self._quit_dialog: Choice | None = None
        self._remote_lock = threading.Lock()
        self._ui_loop: asyncio.AbstractEventLoop | None = None
        self.cfg = cfg
        self.engine_factory = engine_factory
        self.refresh_hz = refresh_hz
        self.text_hz = text_hz
        self.telemetry_s = telemetry_s
        self.run_state = RunState(point_budget=point_budget)
        self.engine: Engine | None = None
        self._buffer: list[ev.Event] = []
        self._buffer_lock = threading.Lock()
        self._forget_shown()
        self._device_sample: DeviceSample | None = None
        self._nvml = NvmlReader()  # initialised at the first GPU reading, once
        self._quitting = False
        self._plot_view = 0
        self.signal_code = 0
        self._detaching = False
        self.detached_message = ""
        self.events_seen = 0

    # -- layout -----------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield RunHeader(id="header")
        with Horizontal(id="main"):
            with Vertical(id="plots"):
                yield LossPlot(self.run_state, max_fps=self.refresh_hz, id="loss")
                yield AccuracyPlot(self.run_state, max_fps=self.refresh_hz, id="accuracy")
            with Vertical(id="side"):
                yield ProgressPane(id="progress")
                yield DevicePane(id="device")
                yield ClassesPane(id="classes")
        yield LogPane(id="log", max_lines=2000, wrap=False, markup=False, highlight=False)
        yield Footer()

    def on_mount(self) -> None:
        self._dashboard = self.screen
        self.query_one("#progress").border_title = "progress"
        self.query_one("#device").border_title = "device"
        self.query_one("#classes").border_title = "per-class accuracy"
        self.query_one("#log").border_title = "log"
        self.begin_capture_print(self._pane(LogPane), stdout=True, stderr=True)
        self.set_interval(1.0 / self.text_hz, self.refresh_text)
        self.set_interval(min(0.5, 1.0 / self.refresh_hz), self.refresh_plots)
        self.set_interval(self.telemetry_s, self.sample_telemetry)
        self.refresh_text()
        self._install_signal_handlers()
        self.start_training(self.cfg)

    # -- signals: a dropped SSH session (SIGHUP) or a kill (SIGTERM) saves, stops, restores the terminal
    HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGHUP)

    def _install_signal_handlers(self) -> None:
        loop = self._ui_loop = asyncio.get_running_loop()
        if self.guard is not None:
            self.guard.claim_signals()  # it handles them, even while the loop is blocked
            return
        for sig in self.HANDLED_SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self._on_signal, sig)

    def _remove_signal_handlers(self) -> None:
        with contextlib.suppress(RuntimeError):
            loop = asyncio.get_running_loop()
            for sig in self.HANDLED_SIGNALS:
                with contextlib.suppress(NotImplementedError, ValueError):
                    loop.remove_signal_handler(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        self.on_terminal_lost(sig.name, 128 + int(sig), hangup=False)

    def on_terminal_lost(self, reason: str, code: int, hangup: bool) -> None:
        """Called by the TerminalGuard's thread: the terminal is gone or a termination signal came.

        The trainer is told at once from this thread (the UI loop may be blocked); then the loop
        is asked to quit. If it cannot, the guard ends the process and the trainer, seeing its
        channel close, saves and stops by itself (or, detached, goes on)."""
        self.signal_code = code
        engine = self.engine
        if engine is not None and self.owns_training and engine.alive() and not self.run_state.ended:
            detach = getattr(engine, "detach", None)
            if hangup and self.on_hangup == "detach" and detach is not None and detach():
                self.detached_message = f"terminal lost ({reason}): training continues in the background"
            else:
                engine.send("stop_save")
        if self._ui_loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already closed
                self._ui_loop.call_soon_threadsafe(self._quit_after_loss, reason)

    def _quit_after_loss(self, reason: str) -> None:
        if self.detached_message:
            self._quitting = True
            self.exit(result=self.signal_code, return_code=self.signal_code)
        elif self._training_running() and self.owns_training:
            self.run_state.log.append(("warning", f"{reason}: saving a checkpoint and stopping"))
            self._stop_then_quit("stop_save")
        else:
            self._finish_quit()

    def on_resize(self, event: Resize) -> None:
        self.screen.set_class(event.size.width < 100, "-narrow")
        self.screen.set_class(event.size.height < 30, "-short")

    # -- the worker that owns the training process ------------------------------------------
    def start_training(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.run_state = RunState(point_budget=self.run_state.point_budget)
        for plot in self.query(PlotPane):
            plot.state = self.run_state
        self._forget_shown()
        self.run_state.message = "importing torch, starting the training process"
        self._watch_engine(cfg)

    def _forget_shown(self) -> None:
        """Everything is redrawn at the next text refresh."""
        self._shown_version = -1
        self._shown_header: tuple[object, ...] = ("never",)
        self._shown_eval: object = _NEVER
        self._shown_started: object = _NEVER

    @work(thread=True, exclusive=True, exit_on_error=False, group="trainer", description="training process")
    def _watch_engine(self, cfg: TrainConfig) -> None:
        worker = get_current_worker()
        engine = self.engine_factory(cfg)
        self.engine = engine
        try:
            engine.start()
            for event in engine.events():
                if worker.is_cancelled:
                    break
                if event is None:
                    continue
                with self._buffer_lock:
                    self._buffer.append(event)
                self.post_message(EventsReady())
        except Exception as exc:  # the channel broke: show it, never crash the UI
            with self._buffer_lock:
                self._buffer.append(ev.Failed("crash", f"lost the training process: {exc}"))
            self.post_message(EventsReady())
        finally:
            engine.close()

    def on_events_ready(self, _: EventsReady) -> None:
        self._take_events()

    def _take_events(self) -> None:
        with self._buffer_lock:
            batch, self._buffer = self._buffer, []
        if batch:
            self._last_event_at = time.monotonic()
        for event in batch:
            try:
                self.run_state.apply(event)
            except Exception as exc:  # a damaged events.jsonl (attach) must not take the dashboard down
                self.run_state.log.append(("warning", f"skipped a damaged {event.kind} event ({type(exc).__name__})"))
                continue
            self.events_seen += 1
            if isinstance(event, ev.Finished | ev.Failed):
                self._on_run_end(event)
            if isinstance(event, ev.Failed):
                self._on_failure(event)
            elif self._detaching and isinstance(event, ev.Detached):
                self.detached_message = event.message
                self._quitting = True
                self.exit(result=0, return_code=0)

    def _on_run_end(self, event: ev.Finished | ev.Failed) -> None:
        # The trainer is gone: its last CPU/memory sample would only mislead.
        self._device_sample = None
        self._show_device()
        if self.notify_desktop and abs(time.time() - event.t) < 60:  # live, not an attached replay of old news
            if isinstance(event, ev.Failed):
                title, body = "training failed", event.message
            else:
                acc = "n/a" if event.test_accuracy is None else f"{100 * event.test_accuracy:.2f}%"
                title, body = f"training {event.reason}", f"test accuracy {acc}"
            self.desktop_notify(title, body)

    def desktop_notify(self, title: str, body: str) -> None:
        """Bell plus the notification escapes that terminals forward over SSH: OSC 777 (rxvt, foot,
        Ghostty, VS Code) and OSC 9 (iTerm2, Windows Terminal, kitty). Unknown escapes are ignored."""
        clean = " ".join(f"{title}: {body}".replace("\x1b", " ").replace("\x07", " ").replace(";", ",").split())[:200]
        short = " ".join(title.replace(";", ",").split())
        self.bell()
        driver = self._driver
        if driver is not None:
            driver.write(f"\x1b]777;notify;cifar-tui {short};{clean}\x07\x1b]9;cifar-tui: {clean}\x07")
            driver.flush()

    def _on_failure(self, failure: ev.Failed) -> None:
        if failure.error != "download":  # a download failure gets its own dialog instead
            self.notify(failure.message, title="training failed", severity="error", timeout=10)
        if failure.error == "download":
            # No network for one download means none for the other: go fully offline in one step
            # (a local --weights file is kept).
            offline = self.cfg.with_overrides(
                **({"data": "demo"} if failure.detail == "data" else {}),
                **({"weights": "none"} if self.cfg.weights == "imagenet" else {}),
            )
            what = " and ".join(
                part
                for part, used in (("the built-in demo data", offline.data != self.cfg.data),
                                   ("no pretrained weights", offline.weights != self.cfg.weights))
                if used
            )  # fmt: skip
            self.push_screen(
                Choice(
                    f"Download failed (no network?).\nStart now with {what} instead?",
                    [("offline", "Start offline", "primary"), ("cancel", "Stay here", "default")],
                ),
                lambda answer: self.start_training(offline) if answer == "offline" else None,
            )

    # -- drawing on a budget ------------------------------------------------------------------
    def _pane(self, kind: type[W]) -> W:
        """A pane of the dashboard screen, whichever screen is on top (help, runs, a dialog)."""
        return self._dashboard.query_one(kind)

    def _plots(self) -> list[PlotPane]:
        return list(self._dashboard.query(PlotPane))

    def refresh_text(self) -> None:
        with contextlib.suppress(NoMatches):  # tearing down: the panes are already gone
            self._refresh_text()

    def _refresh_text(self) -> None:
        # Events also arrive by message; taking any left in the buffer here means a message lost or
        # coalesced away can delay them half a second at most, never hide a run's last events.
        self._take_events()
        state = self.run_state
        log = self._pane(LogPane)
        for level, line in state.drain_log():
            log.write(f"[{level}] {line}" if level not in ("info", "output") else line)
        if not log.is_current():  # a layout change after the last write left the newest line out of view
            log.scroll_end(animate=False, immediate=False, x_axis=False)
        if state.version == self._shown_version:
            return
        self._shown_version = state.version
        self._pane(ProgressPane).show(state)
        # The other panes change rarely: re-render them only when their inputs changed.
        header_key = (
            id(state.started),
            state.message if state.started is None else "",
            id(state.failed),
            self.owns_training,
        )
        if header_key != self._shown_header:
            self._shown_header = header_key
            self._pane(RunHeader).show(state, attached=not self.owns_training)
        if state.last_eval is not self._shown_eval:
            self._shown_eval = state.last_eval
            self._pane(ClassesPane).show(state.last_eval)
        if state.started is not self._shown_started:
            self._shown_started = state.started
            self._show_device()

    def is_settled(self) -> bool:
        """Every buffered event folded in and every pane showing it (tests and screenshots wait on this)."""
        return not self.unsettled()

    def unsettled(self) -> list[str]:
        """What is not shown yet (empty: settled); a test that waited in vain says this."""
        with self._buffer_lock:
            pending = [f"{len(self._buffer)} buffered events"] if self._buffer else []
        log = self._pane(LogPane)
        if self.run_state.log:
            pending.append(f"{len(self.run_state.log)} log lines to write")
        if getattr(log, "_deferred_renders", None):  # RichLog holds lines written before it knew its size
            pending.append("log lines waiting for the pane's size")
        if not log.is_current():
            pending.append(f"log at line {log.scroll_offset.y} of {log.max_scroll_y}")
        if self._shown_version != self.run_state.version:
            pending.append(f"text panes at version {self._shown_version} of {self.run_state.version}")
        pending += [f"plot {p.id} not redrawn" for p in self._plots() if not p.is_current()]
        return pending

    def refresh_plots(self) -> None:
        for plot in self._plots():
            plot.maybe_redraw()

    def _show_device(self) -> None:
        with contextlib.suppress(NoMatches):  # tearing down: the pane is already gone
            self._show_device_now()

    def _show_device_now(self) -> None:
        s = self.run_state.started
        self._pane(DevicePane).show(
            s.device if s else "", s.device_name if s else "", s.torch_version if s else "",
            s.cuda_version if s else "", s.num_threads if s else 0, self._device_sample,
        )  # fmt: skip

    def sample_telemetry(self) -> None:
        if self.run_state.started is not None and not self.run_state.ended:
            self._sample_worker()

    @work(thread=True, exclusive=True, exit_on_error=False, group="telemetry")
    def _sample_worker(self) -> None:
        engine, started = self.engine, self.run_state.started
        on_gpu = bool(started and started.device.startswith("cuda"))
        uuids = list(started.gpu_uuids) if started else []
        index = int(started.device.split(":")[1]) if started and ":" in started.device else 0
        pids = list(started.pids) if started else []
        sample = sample_device(engine.pid if engine else None, self._nvml if on_gpu else None, uuids, index, pids)
        self.call_from_thread(self._set_sample, sample)

    def _set_sample(self, sample: DeviceSample) -> None:
        self._device_sample = sample
        self._show_device()

    # -- keys -----------------------------------------------------------------------------------
    def _send(self, command: str, note: str) -> None:
        if self.engine is None or self.run_state.ended:
            self.notify("no training is running", severity="warning")
            return
        if self.owns_training and not getattr(self.engine, "remote", False):  # our own child: a local pipe, never slow
            if self.engine.send(command):
                self.notify(note, timeout=2)
            else:
                self.notify("no training is running", severity="warning")
            return
        self.notify(note, timeout=2)
        self._send_remote(self.engine, command)

    @work(thread=True, group="control", exclusive=False)
    def _send_remote(self, engine: Engine, command: str) -> None:
        """An attached run is steered over its control socket: a round trip that may take seconds
        on a busy machine, so it runs here, never on the UI loop (one lock keeps keys in order)."""
        with self._remote_lock:
            ok = engine.send(command)
        if not ok:
            self.call_from_thread(self.notify, f"{command}: the trainer did not take it (gone?)", severity="warning")

    def action_pause(self) -> None:
        self._send("toggle_pause", "resuming…" if self.run_state.state == "paused" else "pausing at the next batch…")

    def action_save(self) -> None:
        self._send("save", "saving a checkpoint at the next batch…")

    def action_evaluate(self) -> None:
        self._send("evaluate", "evaluating on the test split…")

    def action_confusion(self) -> None:
        self.push_screen(ConfusionScreen(self.run_state.last_eval))

    PLOT_VIEWS = (("loss", "accuracy"), ("loss",), ("accuracy",))

    def action_cycle_plots(self) -> None:
        """Both plots, loss only, accuracy only: one big plot reads better in a small terminal."""
        self._plot_view = (self._plot_view + 1) % len(self.PLOT_VIEWS)
        shown = self.PLOT_VIEWS[self._plot_view]
        for plot in self.query(PlotPane):
            plot.display = plot.id in shown

    def action_log_scale(self) -> None:
        self._redraw_loss(LossPlot.toggle_log_scale)

    def action_smoothing(self) -> None:
        self._redraw_loss(LossPlot.cycle_smoothing)

    def _redraw_loss(self, change: Callable[[LossPlot], None]) -> None:
        with contextlib.suppress(NoMatches):
            plot = self._pane(LossPlot)
            change(plot)
            plot.maybe_redraw(now=float("inf"))  # a key's effect shows at once, not at the next tick

    def action_runs(self) -> None:
        started = self.run_state.started
        root = Path(started.run_dir).parent if started else Path(self.cfg.runs_root)
        self.push_screen(RunsScreen(root, started.run_dir if started else ""))

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    @property
    def owns_training(self) -> bool:
        """False when attached to a run that lives in another process: quitting leaves it running."""
        return bool(getattr(self.engine, "owns_training", True))

    def _training_running(self) -> bool:
        return self.engine is not None and self.engine.alive() and not self.run_state.ended

    def action_stop_training(self) -> None:
        if not self._training_running():
            self.notify("no training is running", severity="warning")
            return

        def answer(choice: str | None) -> None:
            if choice in ("save", "nosave"):
                self._send("stop_save" if choice == "save" else "stop", "stopping at the next batch…")

        self.push_screen(
            Choice(
                "Stop training?",
                [
                    ("save", "Save and stop", "primary"),
                    ("nosave", "Stop without saving", "error"),
                    ("cancel", "Cancel", "default"),
                ],
            ),
            answer,
        )

    def action_detach(self) -> None:
        """Leave training running in the background and close the dashboard (cifar-tui attach brings it back)."""
        detach = getattr(self.engine, "detach", None)
        if not self._training_running() or not self.owns_training or detach is None:
            self.notify("nothing to detach", severity="warning")
            return
        if detach():
            self._detaching = True
            self.notify("detaching…", timeout=2)

    def action_quit_app(self) -> None:
        if self._quitting:  # a second press while the trainer winds down: do not wait any longer
            self._escalate("quit pressed again")
            return
        if self._quit_dialog is not None:  # Ctrl-C twice: the safe answer, never a second dialog
            self._quit_dialog.dismiss("save")
            return
        if not self._training_running() or not self.owns_training:
            self._finish_quit()
            return

        def answer(choice: str | None) -> None:
            self._quit_dialog = None
            if choice == "save":
                self._stop_then_quit("stop_save")
            elif choice == "nosave":
                self._stop_then_quit("stop")

        self._quit_dialog = quit_dialog(waiting_for_room=self.run_state.state == "waiting_for_room")
        self.push_screen(self._quit_dialog, answer)

    def _stop_then_quit(self, command: str) -> None:
        if self._quitting:
            return
        self._quitting = True
        assert self.engine is not None
        self.engine.send(command)
        self.run_state.message = (
            "saving a checkpoint and stopping… (q again: stop now without waiting)"
            if command == "stop_save"
            else "stopping… (q again: stop now)"
        )
        self.run_state.version += 1
        self.refresh_text()
        self._wait_and_exit()

    def _escalate(self, why: str) -> None:
        """Stop waiting for the trainer: end its process now (checkpoints on disk stay intact)."""
        kill = getattr(self.engine, "kill", None)
        if kill is not None and self.owns_training:
            kill()
            self.run_state.log.append(("warning", f"{why}: training process ended without waiting"))
        self._finish_quit()

    @work(group="quit")
    async def _wait_and_exit(self) -> None:
        # The trainer sends its final events, then its process ends and its worker with it.
        waits = [asyncio.ensure_future(w.wait()) for w in list(self.workers) if w.group == "trainer"]
        for task in waits:  # however this ends (we may be cancelled as the app exits), no error is left unread
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
        while waits:
            _done, pending = await asyncio.wait(waits, timeout=self.quit_timeout_s)
            if not pending:
                break
            if time.monotonic() - self._last_event_at >= self.quit_timeout_s:
                for task in pending:
                    task.cancel()
                self._escalate(f"no answer from the trainer in {self.quit_timeout_s:.0f}s")
                return
            # Still at work and saying so (waiting for disk room to save its final checkpoint): wait on.
        self._finish_quit()

    def _finish_quit(self) -> None:
        self.on_events_ready(EventsReady())  # fold the trainer's last events in before deciding the exit code
        code = self.exit_code_for_state()
        self.exit(result=code, return_code=code)

    def exit_code_for_state(self) -> int:
        if self.signal_code:
            return self.signal_code
        if not self.owns_training:
            return 0  # an attached dashboard leaving is not the run ending
        end = self.run_state.failed or self.run_state.finished
        return end_code(end) if end is not None else EXIT_STOPPED

    async def on_unmount(self) -> None:
        self._remove_signal_handlers()
        # Never leave a trainer behind: cancel the worker and close the engine (the child stops).
        self.workers.cancel_group(self, "trainer")
        if self.engine is not None:
            self.engine.close()
        self.workers.cancel_group(self, "telemetry")
        self._nvml.close()


def make_app(cfg: TrainConfig, engine_factory: EngineFactory | None = None, **options: Any) -> CifarTui:
    """The one factory used by the CLI and by tests."""
    return CifarTui(cfg, engine_factory or process_engine, **options)
