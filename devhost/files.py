"""Writing devhost's state files so a reader never sees half of one.

The host's state (timer last-runs, the virtual clock, keys, the blob watcher's cursor, dead
letters) is read by other processes and by the host itself after a restart. A plain
``write_text`` truncates first and writes second, so a reader in between, or a crash, sees an
empty or partial file, and a lost timers.json silently makes every timer "never run".
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_text_atomically(path: Path, text: str, *, mode: int | None = None) -> None:
    """Replace ``path`` with ``text`` in one step: temp file in the same folder, then rename.

    ``mode`` sets the permissions before the file becomes visible (a key is never world-readable,
    not even for a moment).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
