"""Errors a user can fix (each a one-line message, exit code 2), and the one exit-code decision."""

from __future__ import annotations

import sys
from collections.abc import Callable

from engine.run import events as ev


def first_line(exc: BaseException, limit: int = 200) -> str:
    """What an exception says, in one line a person can read in ours: its first line (at most
    ``limit`` characters), or its type's name when it says nothing."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


class UserError(Exception):
    """A problem with the user's input (options, data, files); never a bug.

    The CLI prints ``error: <message>`` and exits with code 2, without a traceback.
    ``kind`` names the category for events and tests.
    """

    kind = "input"
    exit_code = 2


class ConfigError(UserError):
    """An option value is invalid or options contradict each other."""

    kind = "config"


class DataError(UserError):
    """The data set could not be found, read or used."""

    kind = "data"


class DownloadError(UserError):
    """A download (data set or pretrained weights) failed. ``resource``: data or weights."""

    kind = "download"

    def __init__(self, message: str, resource: str = "") -> None:
        super().__init__(message)
        self.resource = resource


class CheckpointError(UserError):
    """A checkpoint is missing, corrupt, unsafe or does not fit the model."""

    kind = "checkpoint"


class RunDirError(UserError):
    """The run directory cannot be used (already holds a run, not writable)."""

    kind = "run_dir"


#: Failed-event kinds a user fixes by changing input (exit code 2), as opposed to crashes (1).
#: Out of memory is one: the fix is a smaller --batch-size.
USER_ERROR_KINDS = frozenset(
    {cls.kind for cls in (UserError, ConfigError, DataError, DownloadError, CheckpointError, RunDirError)}
    | {"out_of_memory"}
)


#: Exit codes: 0 completed, 1 failed (or its end lost), 2 a user's input, 130 stopped.
EXIT_OK, EXIT_CRASH, EXIT_USAGE, EXIT_STOPPED = 0, 1, 2, 130


def exit_code(end: ev.Finished | ev.Failed | None, *, signal: int = 0, attached: bool = False) -> int:
    """The exit code of every command that follows a run, from the run's last event (None: it
    has not ended). ``signal``: the stop signal that ended the command (its code is 128 + it:
    130 SIGINT, 143 SIGTERM, 129 SIGHUP or a lost terminal), unless the run failed or lost its
    end; ``attached``: a dashboard that leaves a run it does not own (0: not the run ending)."""
    code = _end_code(end) if end is not None else EXIT_STOPPED
    if signal and code not in (EXIT_CRASH, EXIT_USAGE):
        return 128 + signal
    return 0 if attached else code


def rank_exit_code(code: int, *, ended: bool) -> int:
    """What one rank of a torchrun launch exits with (torchrun restarts or ends the group for any
    non-zero code): 0 for a run that ended as planned (its end saved or not) or was stopped (a
    stop is not a rank failing); a failure keeps its code. The launcher reports how the run ended,
    from its last event (engine/session/launch.py: launch_exit_code)."""
    return EXIT_OK if ended or code == EXIT_STOPPED or code >= 128 else code


def _end_code(end: ev.Finished | ev.Failed) -> int:
    if isinstance(end, ev.Failed):
        return EXIT_USAGE if end.error in USER_ERROR_KINDS else EXIT_CRASH
    if end.unsaved:  # trained, but the weights it ended with are in no checkpoint
        return EXIT_CRASH
    return EXIT_OK if end.reason == "completed" else EXIT_STOPPED


def one_line_command(work: Callable[[], object], cannot: str) -> int:
    """A helper command's exit code: what ``work`` returns is printed; a UserError is its one line
    on stderr and exit 2, an OSError ``{cannot}: why`` and exit 1 (never a traceback)."""
    try:
        print(work(), flush=True)
    except UserError as exc:
        print(first_line(exc), file=sys.stderr, flush=True)
        return EXIT_USAGE
    except OSError as exc:
        print(f"{cannot}: {first_line(exc)}", file=sys.stderr, flush=True)
        return EXIT_CRASH
    return EXIT_OK
