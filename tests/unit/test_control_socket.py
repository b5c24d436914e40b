"""The control socket's folder is checked, its clients bounded, its peers verified."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from engine.run.control_socket import ControlClient, ControlServer, control_folder
from engine.run.controls import Controls

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")


@pytest.fixture
def tmp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private temp root (AF_UNIX paths must stay short)."""
    root = Path(tempfile.mkdtemp(prefix="ct", dir="/tmp"))
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    yield root
    subprocess.run(["rm", "-rf", str(root)], check=False)


def test_a_symlink_a_file_or_someone_elses_folder_is_refused(tmp_root: Path, tmp_path: Path) -> None:
    place = tmp_root / f"cifar-tui-{os.getuid()}"
    (tmp_path / "elsewhere").mkdir()
    place.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError, match="not a private folder"):
        control_folder()
    place.unlink()
    place.write_text("")
    with pytest.raises(OSError, match="not a private folder"):
        control_folder()
    place.unlink()
    place.mkdir(mode=0o755)
    os.chmod(place, 0o755)
    assert control_folder() == place and oct(place.stat().st_mode & 0o777) == "0o700"  # ours: tightened
    if os.getuid() == 0:
        os.chown(place, 12345, 12345)
        with pytest.raises(OSError, match="not a private folder"):
            control_folder()


def test_stale_sockets_of_dead_runs_are_removed(tmp_root: Path, tmp_path: Path) -> None:
    folder = control_folder()
    stale = folder / "0123456789abcdef.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(stale))
    dead.close()  # the file stays, nobody listens: what kill -9 leaves behind
    server = ControlServer(tmp_path, Controls(), lambda _m: None)
    try:
        assert not stale.exists() and server.path.exists()
    finally:
        server.close()


def test_clients_are_bounded_and_garbage_costs_nothing(tmp_root: Path, tmp_path: Path) -> None:
    warnings: list[str] = []
    controls = Controls()
    server = ControlServer(tmp_path, controls, warnings.append)
    try:
        long_line = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        long_line.connect(str(server.path))
        long_line.sendall(b"x" * 100_000 + b"\n")
        assert b"line too long" in long_line.makefile("rb").readline()
        long_line.close()
        garbage = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        garbage.connect(str(server.path))
        garbage.sendall(b"[" * 900 + b"\n\xff\xfe\n")
        garbage.close()  # abandoned mid-conversation
        idle = []
        for _ in range(ControlServer.MAX_CLIENTS):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(str(server.path))
            idle.append(s)
        time.sleep(0.2)  # let the server take them all (a bound, not a timing assertion)
        extra = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        extra.connect(str(server.path))
        assert b"too many connections" in extra.makefile("rb").readline()
        extra.close()
        for s in idle:
            s.close()
        deadline = time.monotonic() + 60
        while True:  # slots come back as the server notices the closed connections
            client = ControlClient(server.path)
            reply = client.send("pause")
            client.close()
            if reply.get("ok") or time.monotonic() > deadline:
                break
        assert reply["ok"] and controls.paused
        assert any("over 1024 bytes" in w for w in warnings)
    finally:
        server.close()


PY = "/usr/bin/python3"  # one the unprivileged user may run (the venv's may sit under /root)


@pytest.mark.skipif(
    os.getuid() != 0 or not os.path.exists(PY), reason="needs root and /usr/bin/python3 to serve as another user"
)
def test_the_client_refuses_a_socket_served_by_another_user(tmp_root: Path) -> None:
    os.chmod(tmp_root, 0o711)  # the other user may pass through to its folder
    shared = tmp_root / "shared"
    shared.mkdir(mode=0o777)
    os.chmod(shared, 0o777)
    path = shared / "s.sock"
    code = ("import socket, sys, time; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(1); "
            "print('up', flush=True); c, _ = s.accept(); c.recv(100); c.sendall(b'{\"ok\": true}\\n'); time.sleep(5)")  # fmt: skip
    impostor = subprocess.Popen([PY, "-c", code, str(path)], stdout=subprocess.PIPE, text=True,
                                preexec_fn=lambda: os.setuid(65534), cwd="/")  # fmt: skip
    try:
        assert impostor.stdout is not None and impostor.stdout.readline().strip() == "up"
        with pytest.raises(PermissionError, match="not served by one of your processes"):
            ControlClient(path)
    finally:
        impostor.kill()
        impostor.wait()


def test_an_idle_client_is_hung_up_on_and_reconnects(tmp_root: Path, tmp_path: Path) -> None:
    import select

    controls = Controls()
    server = ControlServer(tmp_path, controls, lambda _m: None)
    server.IDLE_S = 0.2  # ten minutes in real use
    try:
        client = ControlClient(server.path)
        ready, _, _ = select.select([client.sock], [], [], 60)  # the server hangs up the idle link...
        assert ready and client.sock.recv(1, socket.MSG_PEEK) == b""
        assert client.send("pause")["ok"] and controls.paused  # ...and the next command reconnects
        client.close()
    finally:
        server.close()


def test_a_reply_that_comes_too_late_fails_one_command_not_the_next(tmp_root: Path, tmp_path: Path) -> None:
    import threading

    release = threading.Event()
    applied = threading.Event()

    class SlowOnce(Controls):
        def save(self) -> None:  # the trainer's process too busy to answer this one in time
            release.wait(60)
            super().save()
            applied.set()

    controls = SlowOnce()
    server = ControlServer(tmp_path, controls, lambda _m: None)
    try:
        client = ControlClient(server.path, timeout=0.3)
        reply = client.send("save")
        assert not reply["ok"] and "no reply from the trainer" in reply["error"]
        release.set()
        client.timeout = 30.0  # the next connection gets all the time a loaded machine needs
        # Before the fix the socket file that timed out refused every later read: the dashboard
        # could never steer the run again.
        assert client.send("evaluate")["ok"]
        assert client.send("pause")["ok"] and controls.paused
        # The late save finishes on its own connection's thread: wait for it, not for a time.
        assert applied.wait(60)
        taken = controls.take()
        assert taken.save and taken.evaluate  # the late one was applied, and not twice-sent
        client.close()
    finally:
        server.close()
