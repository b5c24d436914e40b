"""``python -m tests.helpers.fork_probe exit N | wait MARKER``: a stand-in for a sweep's run that
says how it was started (one JSON line: pid, session, parent, folder, PROBE from its
environment, argv, whether torch was already loaded), then exits with N, or waits for SIGTERM
and writes MARKER before ending with 143."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from types import FrameType


def main() -> int:
    print(json.dumps({"pid": os.getpid(), "sid": os.getsid(0), "ppid": os.getppid(), "cwd": os.getcwd(),
                      "probe": os.environ.get("PROBE"), "argv": sys.argv, "torch": "torch" in sys.modules}),
          flush=True)  # fmt: skip
    if sys.argv[1] == "exit":
        return int(sys.argv[2])
    marker = Path(sys.argv[2])

    def told_to_stop(_signum: int, _frame: FrameType | None) -> None:
        marker.write_text("SIGTERM")
        os._exit(143)

    signal.signal(signal.SIGTERM, told_to_stop)
    print("waiting", flush=True)
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
