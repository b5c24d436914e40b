"""Stop is honoured in every phase; a second press escalates; a stalled reader never stalls training."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path

from engine.run import events as ev
from engine.run.controls import Controls
from engine.run.rundir import read_events
from engine.session.child import CHANNEL_BUFFER, ChildSession, final_event_in
from engine.session.worker import EventChannel
from engine.train.checkpoint import load_checkpoint
from engine.train.trainer import Trainer
from tests.helpers.common import Recorder, screen_text, tiny_config
from tests.helpers.pty_app import PtyApp, count_in_events
from tests.helpers.scripted import ScriptedSession, script, tutorial_config
from tests.helpers.waiting import app_until as until
from tests.helpers.waiting import wait_until
from tui.app import CifarTui, make_app
from tui.screens.dialogs import Choice


def test_stop_before_training_began_ends_the_child_at_once_and_writes_nothing(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path)
    proc = ChildSession(cfg)
    proc.start()
    proc.send("stop_save")  # while the child is still importing torch and loading data
    events = [e for e in proc.events() if e is not None]
    proc.close()
    finished = [e for e in events if isinstance(e, ev.Finished)]
    assert len(finished) == 1 and finished[0].reason == "stopped" and finished[0].global_step == 0
    assert not any(isinstance(e, ev.RunStarted | ev.Failed | ev.CheckpointSaved) for e in events)
    assert not Path(cfg.run_dir).exists()


def test_stop_during_setup_in_process_leaves_no_run_directory(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path)
    controls = Controls()
    holder: list[Trainer] = []
    rec = Recorder()

    def sink(event: ev.Event) -> None:
        rec(event)
        if isinstance(event, ev.Status) and event.state == "loading_data":
            controls.stop(save=True, cause="test")
            assert holder[0].end_if_not_started("test")

    holder.append(Trainer(cfg, sink, controls))
    finished = holder[0].run()
    assert finished.reason == "stopped" and len(rec.of(ev.Finished)) == 1
    assert not Path(cfg.run_dir).exists()


def test_stop_during_a_long_evaluation_is_honoured_before_it_ends(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, epochs=3, test_limit=1000, eval_batch_size=10)
    controls = Controls()

    def sink(event: ev.Event) -> None:
        rec(event)
        if isinstance(event, ev.Status) and event.state == "evaluating":
            controls.stop(save=True, cause="test")

    rec = Recorder()
    finished = Trainer(cfg, sink, controls).run()
    assert finished.reason == "stopped" and not rec.of(ev.Evaluation)
    ckpt = load_checkpoint(Path(finished.checkpoint))
    assert ckpt["global_step"] == finished.global_step == 8  # the epoch's training is kept


def test_stop_with_nothing_trained_saves_no_checkpoint(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, epochs=2)
    controls = Controls()
    rec = Recorder()

    def sink(event: ev.Event) -> None:
        rec(event)
        if isinstance(event, ev.RunStarted):
            controls.stop(save=True, cause="test")

    finished = Trainer(cfg, sink, controls).run()
    assert finished.reason == "stopped" and finished.checkpoint == ""
    assert not rec.of(ev.CheckpointSaved)
    assert not list((Path(cfg.run_dir) / "checkpoints").glob("*.pt"))


class _NeverReads:
    """A socket pair whose far end is never read: the kernel buffers fill, send blocks."""

    def __init__(self) -> None:
        self.a, self.b = socket.socketpair()
        self.conn = Connection(os.dup(self.a.fileno()))


def test_event_channel_never_blocks_on_a_reader_that_stopped_reading() -> None:
    pair = _NeverReads()
    gone = threading.Event()
    channel = EventChannel(pair.conn, gone.set, max_pending=5000)
    big = {"kind": "log", "message": "x" * 2000, "level": "info"}
    for _ in range(2000):  # 4 MB: far more than any socket buffer
        channel.put(big)
    for i in range(20000):
        channel.put({"kind": "progress", "global_step": i})
    assert channel.dropped > 0  # progress past the bound is dropped, never waited for
    assert not gone.is_set()
    pair.b.close()  # the reader goes away: the sender notices, nothing hangs
    wait_until(gone.is_set, what="the channel to notice the reader is gone")
    assert channel.close(timeout=5) is False


def test_the_runs_end_is_recovered_from_events_jsonl_for_this_session_only(tmp_path: Path) -> None:
    """When the channel could not bring the final event (the app was stopped as the run ended),
    the reader takes it from events.jsonl, but never an earlier session's end of a resumed run."""
    cfg = tiny_config(tmp_path)
    rec = Recorder()
    Trainer(cfg, rec).run()
    started = rec.of(ev.RunStarted)[0]
    found = final_event_in(Path(cfg.run_dir), since=started.t)
    assert isinstance(found, ev.Finished) and found.reason == "completed"
    assert final_event_in(Path(cfg.run_dir), since=found.t + 1) is None


def test_reader_ends_when_the_last_output_line_has_no_newline(tmp_path: Path) -> None:
    proc = ChildSession(tiny_config(tmp_path))
    parent, child = socket.socketpair()
    proc.process = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdout.write('last words'); sys.exit(3)"],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    proc._conn = Connection(os.dup(parent.fileno()))
    parent.close()
    child.close()
    result: list[list[ev.Event]] = []
    reader = threading.Thread(target=lambda: result.append([e for e in proc.events() if e is not None]), daemon=True)
    reader.start()
    reader.join(60)
    assert not reader.is_alive(), "the reader hung after the child exited"
    logs = [e.message for e in result[0] if isinstance(e, ev.Log)]
    assert logs == ["last words"]
    assert isinstance(result[0][-1], ev.Failed) and "exited with code 3" in result[0][-1].message


def test_a_stopped_dashboard_never_stalls_training_and_catches_up(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["--data", "demo", "--weights", "none", "--train-limit", "2000", "--test-limit", "16", "--batch-size", "4",
            "--arch", "mobilenet_v3_small", "--device", "cpu", "--loader", "tensor", "--epochs", "400", "--progress-hz", "1000",
            "--run-dir", str(run)]  # fmt: skip
    app = PtyApp(args)
    try:
        wait_until(lambda: count_in_events(run, '"kind":"progress"') > 0, what="training")
        os.kill(app.pid, signal.SIGSTOP)
        size_at_stop = (run / "events.jsonl").stat().st_size
        # Training must write well past what the channel's kernel buffers can hold while the app is stopped.
        limit = 2 * 4 * 2 * CHANNEL_BUFFER  # both sockets' send and receive buffers, doubled by Linux, twice over
        wait_until(lambda: (run / "events.jsonl").stat().st_size - size_at_stop > limit,
                   what=f"training to write {limit} bytes of events while the app is stopped")  # fmt: skip
        os.kill(app.pid, signal.SIGCONT)
        steps = count_in_events(run, '"kind":"progress"')
        assert steps > 0
        os.kill(app.pid, signal.SIGTERM)
        assert app.wait() == 128 + signal.SIGTERM
    finally:
        app.kill()
    events = read_events(run)
    assert isinstance(events[-1], ev.Finished)
    global_steps = [e.global_step for e in events if isinstance(e, ev.Progress)]
    assert global_steps == sorted(global_steps) and len(set(global_steps)) == len(global_steps)


class _Stubborn(ScriptedSession):
    """A trainer that never answers a stop (stuck in a long call)."""

    can_kill = True

    def __init__(self, events: list[ev.Event]) -> None:
        super().__init__(events)
        self.killed = False

    def events(self, poll: float = 0.2) -> Iterator[ev.Event | None]:
        yield from self.script
        while not self.closed and not self.killed:
            yield None
            threading.Event().wait(0.05)

    def kill(self) -> None:
        self.killed = True


async def test_second_quit_escalates_and_ctrl_c_twice_never_stacks_dialogs() -> None:
    cfg = tutorial_config()
    engine = _Stubborn(script(cfg, 1))
    app = make_app(cfg, lambda _c: engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.2)
        await pilot.press("ctrl+c")
        await pilot.pause(0.1)
        assert isinstance(app.screen, Choice)
        await pilot.press("ctrl+c")  # the second Ctrl-C answers the dialog (save and quit), never a second one
        await pilot.pause(0.1)
        assert not isinstance(app.screen, Choice)
        assert engine.commands == ["stop_save"]
        assert app.is_running  # waiting for the trainer to save
        await pilot.press("q")  # again: stop waiting
        await pilot.pause(0.2)
    assert engine.killed and app.return_code == 130


class _WaitingForRoom(_Stubborn):
    """A trainer that, told to save and stop, waits for disk room and says so (three quit timeouts
    long), then gives up its final checkpoint."""

    def events(self, poll: float = 0.2) -> Iterator[ev.Event | None]:
        yield from self.script
        while "stop_save" not in self.commands:
            yield None
            threading.Event().wait(0.05)
        for _ in range(60):
            yield ev.Status("waiting_for_room", "to save the final checkpoint in /runs/x/checkpoints, 0m30s left")
            threading.Event().wait(0.05)
        yield ev.Finished("stopped", 1, 8, 0.5, 0.5, 3.0, "/runs/x/checkpoints/step-00000004.pt", "app quit",
                          unsaved="the final checkpoint was NOT saved (No space left on device)")  # fmt: skip


async def save_and_quit(app: CifarTui, second_key: bool = False) -> None:
    """q, "Save and quit" (or q again: its safe answer), then wait until the app ends itself (the
    loop is a hang guard only)."""
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.2)
        await pilot.press("q")
        await until(pilot, lambda: isinstance(app.screen, Choice))
        if second_key:
            await pilot.press("q")
        else:
            await pilot.click("#save")
        for _ in range(400):
            if not app.is_running:
                break
            await pilot.pause(0.05)


async def test_a_trainer_waiting_for_disk_room_is_not_cut_off_and_the_lost_end_sets_the_exit_code() -> None:
    cfg = tutorial_config()
    engine = _WaitingForRoom(script(cfg, 1)[:-1])  # (its own end comes later)
    app = make_app(cfg, lambda _c: engine, quit_timeout_s=1.0)
    await save_and_quit(app)
    assert not engine.killed and app.return_code == 1


async def test_quitting_while_the_final_checkpoint_waits_for_room_offers_to_keep_waiting() -> None:
    cfg = tutorial_config()
    waiting = ev.Status("waiting_for_room", "to save the final checkpoint in /runs/x/checkpoints, 29m50s left")
    engine = ScriptedSession([*script(cfg, 1), waiting])
    app = make_app(cfg, lambda _c: engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: "waiting for disk room" in screen_text(app))
        await pilot.press("q")
        await until(pilot, lambda: isinstance(app.screen, Choice))
        assert "waiting for disk room" in screen_text(app) and "Save and quit" not in screen_text(app)
        await pilot.click("#cancel")  # keep waiting: nothing sent
        await pilot.press("q")
        await until(pilot, lambda: isinstance(app.screen, Choice))
        await pilot.click("#nosave")  # give it up
        await until(pilot, lambda: engine.commands == ["stop"])


def test_a_long_evaluation_says_how_far_it_is(tmp_path: Path) -> None:
    rec = Recorder()
    trainer = Trainer(tiny_config(tmp_path, test_limit=200, eval_batch_size=50), rec)
    trainer.status_every_s = 0.0  # every batch (2 s on a real run)
    trainer.run()
    messages = [e.message for e in rec.of(ev.Status) if e.state == "evaluating" and "/s, ETA" in e.message]
    assert all(m.startswith("evaluating: ") for m in messages)
    assert [m.split()[1] for m in messages[:3]] == ["50/200", "100/200", "150/200"]


async def test_no_answer_from_the_trainer_escalates_after_the_timeout() -> None:
    cfg = tutorial_config()
    engine = _Stubborn(script(cfg, 1))
    app = make_app(cfg, lambda _c: engine, quit_timeout_s=0.5)
    await save_and_quit(app, second_key=True)  # q q: the dialog's safe answer, save and quit
    assert engine.commands == ["stop_save"] and engine.killed and app.return_code == 130


async def test_the_command_palettes_quit_asks_as_q_does_and_a_stop_exits_130() -> None:
    """Ctrl+P, Quit: the same way out as ``q`` (the dialog while training), never a bare exit 0."""
    cfg = tutorial_config()
    session = ScriptedSession(script(cfg, 1))
    app = make_app(cfg, lambda _c: session, quit_timeout_s=0.5)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.run_state.started is not None)
        await pilot.press("ctrl+p")
        await pilot.press(*"quit")
        await pilot.pause(0.5)  # the palette searches as it is typed
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, Choice), why=lambda: app.screen)
        await pilot.click("#nosave")
        await until(pilot, lambda: not app.is_running or app.return_code is not None)
    assert session.commands == ["stop"] and app.return_code == 130
