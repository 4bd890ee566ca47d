"""What every launch script does first: make the repository importable, set up devices."""

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
