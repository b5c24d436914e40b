"""``python -m engine.session.worker FD``: the training child process (see engine.session.child)."""

from __future__ import annotations

import sys
from multiprocessing.connection import Connection

from engine.session.child import serve

if __name__ == "__main__":
    sys.exit(serve(Connection(int(sys.argv[1]))))
