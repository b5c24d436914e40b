"""``python -m engine``: headless training without the dashboard (needs no textual)."""

import os
import sys

from engine.cli import main
from engine.ranks.plan import launched

code = main()
if launched():
    # One rank of a launch, its run over and written (events closed, process group left): end
    # without the interpreter's teardown, where torch.distributed's C++ threads can abort the
    # process (SIGABRT) when the ranks end apart; torchrun would take that for a failed rank
    # and restart a finished run.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
sys.exit(code)
