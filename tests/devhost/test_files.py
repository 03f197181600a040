"""devhost's state files are replaced whole: readers see the old text or the new, never a cut."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from devhost.files import write_text_atomically


def test_concurrent_reader_never_sees_a_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "timers.json"
    versions = ["{" + f'"n": {i}, "pad": "{"x" * 200_000}"' + "}" for i in range(40)]
    write_text_atomically(path, versions[0])
    seen: set[str] = set()
    done = threading.Event()

    def read_until_done() -> None:
        while not done.is_set():
            seen.add(path.read_text(encoding="utf-8"))

    reader = threading.Thread(target=read_until_done)
    reader.start()
    try:
        for text in versions[1:]:
            write_text_atomically(path, text)
    finally:
        done.set()
        reader.join()
    assert seen <= set(versions), "a reader saw a file that was neither the old text nor the new"
    assert path.read_text(encoding="utf-8") == versions[-1]
    assert [p.name for p in tmp_path.iterdir()] == ["timers.json"], "temporary files were left behind"


def test_mode_is_set_before_the_file_appears(tmp_path: Path) -> None:
    path = tmp_path / "state" / "function_key"
    write_text_atomically(path, "secret\n", mode=0o600)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text(encoding="utf-8") == "secret\n"


def test_failed_write_keeps_the_old_text_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "timers.json"
    write_text_atomically(path, "old")
    with pytest.raises(UnicodeEncodeError):
        write_text_atomically(path, "\udcff")  # a lone surrogate cannot be written as UTF-8
    assert path.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["timers.json"]
