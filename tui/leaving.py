"""The dashboard's ways out, in one place: q and Ctrl+C (asking first while training), a second
q that stops waiting, a lost terminal or a stop signal, detaching; each ends with the exit code
the controller decides. :class:`tui.app.CifarTui` builds on it."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time

from textual import work
from textual.app import App

from engine.run.controls import Command
from engine.run.events import Phase
from tui.controller import Lifecycle, RunController
from tui.screens.dialogs import Choice, quit_dialog
from tui.state import RunState
from tui.terminal import TerminalGuard


class LeavingApp(App[int]):
    """An app that follows one run and leaves it as the run's owner must."""

    HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
    controller: RunController
    guard: TerminalGuard | None
    on_hangup: str
    quit_timeout_s: float
    _quit_dialog: Choice | None = None
    _ui_loop: asyncio.AbstractEventLoop | None = None

    @property
    def run_state(self) -> RunState:
        return self.controller.run_state

    def refresh_text(self) -> None:
        """Fold in what the trainer sent and redraw the text panes (the app defines it)."""

    def fold_events(self) -> None:
        """Fold in the trainer's last events (the app defines it)."""

    # -- signals and a lost terminal: the trainer saves and stops, the terminal is restored ---
    def _install_signal_handlers(self) -> None:
        loop = self._ui_loop = asyncio.get_running_loop()
        if self.guard is not None:
            self.guard.claim_signals()  # it handles them, even while the loop is blocked
            return
        for sig in self.HANDLED_SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.on_terminal_lost, sig.name, 128 + int(sig), False)

    def on_terminal_lost(self, reason: str, code: int, hangup: bool) -> None:
        """The terminal is gone or a stop signal came (maybe on the guard's thread, the UI loop
        blocked): the controller tells the trainer at once, then the loop is asked to quit. If it
        cannot, the guard ends the process, and the trainer, its channel closed, saves and stops."""
        self.controller.terminal_lost(reason, code, hangup=hangup, on_hangup=self.on_hangup)
        if self._ui_loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already closed
                self._ui_loop.call_soon_threadsafe(self._quit_after_loss, reason)

    def _quit_after_loss(self, reason: str) -> None:
        if self.controller.detached_message:
            self._leave(self.controller.signal_code)
        elif self.controller.training_running() and self.controller.owns_training:
            self.run_state.log.append(("warning", f"{reason}: saving a checkpoint and stopping"))
            self._stop_then_quit(Command.STOP_SAVE)
        else:
            self._finish_quit()

    # -- leaving: every way out goes through here ---------------------------------------------
    def action_quit_app(self) -> None:
        if self.controller.lifecycle is Lifecycle.QUITTING:  # pressed again while the trainer winds down
            self._escalate("quit pressed again")
        elif self._quit_dialog is not None:  # Ctrl-C twice: the safe answer, never a second dialog
            self._quit_dialog.dismiss("save")
        elif not self.controller.training_running() or not self.controller.owns_training:
            self._finish_quit()
        else:
            self._quit_dialog = quit_dialog(waiting_for_room=self.run_state.state == Phase.WAITING_FOR_ROOM)
            self.push_screen(self._quit_dialog, self._quit_answer)

    async def action_quit(self) -> None:
        """Textual's own quit (the command palette's Quit): the same way out as ``q``."""
        self.action_quit_app()

    def _quit_answer(self, choice: str | None) -> None:
        self._quit_dialog = None
        if choice in ("save", "nosave"):
            self._stop_then_quit(Command.STOP_SAVE if choice == "save" else Command.STOP)

    def _stop_then_quit(self, command: Command) -> None:
        if self.controller.quit_to(command):
            self.refresh_text()
            self._wait_and_exit()

    def _escalate(self, why: str) -> None:
        self.controller.kill(why)
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
            if time.monotonic() - self.controller.last_event_at >= self.quit_timeout_s:
                for task in pending:
                    task.cancel()
                self._escalate(f"no answer from the trainer in {self.quit_timeout_s:.0f}s")
                return
            # Still at work and saying so (waiting for disk room to save its final checkpoint): wait on.
        self._finish_quit()

    def _finish_quit(self) -> None:
        self.fold_events()  # the trainer's last events, before deciding the exit code
        self._leave(self.controller.exit_code())

    def _leave(self, code: int) -> None:
        self.controller.lifecycle = Lifecycle.LEAVING
        self.exit(result=code, return_code=code)

    async def on_unmount(self) -> None:
        with contextlib.suppress(RuntimeError):
            loop = asyncio.get_running_loop()
            for sig in self.HANDLED_SIGNALS:
                with contextlib.suppress(NotImplementedError, ValueError):
                    loop.remove_signal_handler(sig)
        # Never leave a trainer behind: cancel the worker and close the session (the child stops).
        self.workers.cancel_group(self, "trainer")
        if self.controller.session is not None:
            self.controller.session.close()
        self.workers.cancel_group(self, "telemetry")
