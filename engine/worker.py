"""``python -m engine.worker FD``: the training child process (see engine.process)."""

from __future__ import annotations

import sys
from multiprocessing.connection import Connection

from engine.process import serve

if __name__ == "__main__":
    sys.exit(serve(Connection(int(sys.argv[1]))))
