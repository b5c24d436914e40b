"""A real PostgreSQL server for a test, in a temporary folder, gone with the test.

Debian's ``postgresql`` package (``.ci/run`` installs it) puts its programs in
/usr/lib/postgresql/VERSION/bin. The server refuses to run as root, and CI runs as root: there
it runs as the ``postgres`` user the package creates. It listens on a Unix socket only."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def _bin(program: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{program}"))
    return found[-1] if found else shutil.which(program)


def _as_server_user() -> list[str]:
    if os.getuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and there is no postgres user to run the server as")
    return ["runuser", "-u", "postgres", "--"]


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server; yield a SQLAlchemy URL of an empty database on it; stop and remove it."""
    initdb, pg_ctl, createdb = _bin("initdb"), _bin("pg_ctl"), _bin("createdb")
    if not (initdb and pg_ctl and createdb):
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    pytest.importorskip("psycopg", reason="the PostgreSQL driver psycopg is not installed")
    prefix = _as_server_user()
    # Not under pytest's folder: the server's user must reach it, and a socket path must be short.
    folder = Path(tempfile.mkdtemp(prefix="pg-", dir="/tmp"))
    data, sockets = folder / "data", folder / "s"
    sockets.mkdir()
    if prefix:
        shutil.chown(folder, "postgres")
        shutil.chown(sockets, "postgres")
    try:
        subprocess.run([*prefix, initdb, "-D", str(data), "-U", "sweeper", "--auth=trust"], check=True,
                       capture_output=True)  # fmt: skip
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-w", "-l", str(folder / "server.log"), "-o",
                        f"-k {sockets} -c listen_addresses='' -p 5433", "start"], check=True,
                       capture_output=True)  # fmt: skip
        try:
            subprocess.run([*prefix, createdb, "-h", str(sockets), "-p", "5433", "-U", "sweeper", "study"],
                           check=True, capture_output=True)  # fmt: skip
            yield f"postgresql://sweeper@/study?host={sockets}&port=5433"
        finally:
            subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
