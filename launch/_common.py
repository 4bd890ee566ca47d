"""What every launch script does first: make the repository importable, set up devices,
and turn a user's mistakes into one-line errors instead of tracebacks."""

import contextlib
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # Scripts run from a clone without installing.
    sys.path.insert(0, ROOT)


def quiet_library_logs() -> None:
    """Drops the INFO chatter of orbax and grain from absl logging; keeps warnings."""
    import logging

    class _Filter(logging.Filter):
        def filter(self, record):
            noisy = ("/orbax/" in record.pathname or "/grain/" in record.pathname
                     or record.pathname.endswith("xla_bridge.py"))
            return record.levelno >= logging.WARNING or not noisy

    logging.getLogger("absl").addFilter(_Filter())


quiet_library_logs()


@contextlib.contextmanager
def one_line_errors(script: str):
    """Bad input (files, fields, shapes, configs) exits with ``script: error: ...`` and
    status 2 or 1; Ctrl-C exits 130 saying how to resume. Bugs keep their traceback."""
    from jpose.training import checkpoint, loop

    try:
        yield
    except KeyboardInterrupt as e:
        message = str(e) or "interrupted"
        print(f"{script}: {message}", file=sys.stderr)
        raise SystemExit(130) from None
    except (checkpoint.IncompatibleCheckpointError, loop.NonFiniteLossError) as e:
        raise SystemExit(f"{script}: error: {e}") from None
    except (ValueError, FileNotFoundError, FileExistsError, IsADirectoryError,
            PermissionError) as e:
        raise SystemExit(f"{script}: error: {e}") from None


def run_app(main, script: str) -> None:
    """``absl.app.run(main)``, with a missing or broken ``--config`` file reported in one
    line (ml_collections raises while parsing the flags, before ``main``)."""
    from absl import app

    for arg in sys.argv[1:]:
        if arg.startswith("--config="):
            path = arg.split("=", 1)[1].split(":", 1)[0]
            if not os.path.isfile(path):
                raise SystemExit(f"{script}: error: --config: no such file {path!r}")
    try:
        app.run(main)
    except KeyboardInterrupt:
        print(f"{script}: interrupted; rerun the same command to resume", file=sys.stderr)
        raise SystemExit(130) from None
