"""SQLite persistence for the durable engine: instances, histories, pending messages, activity work items.

WAL journal with ``synchronous=NORMAL``: every committed transaction survives a crash of the
process (``kill -9``); only an operating-system crash may lose the last few. One episode of
an orchestrator (new history events, scheduled work, messages to other instances, status) is
one transaction, and an activity's completion (work item removed, result message queued) is
another, so after a restart nothing recorded as completed runs again.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    instance_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    status TEXT NOT NULL,
    input TEXT,
    output TEXT,
    custom_status TEXT,
    created_time TEXT NOT NULL,
    last_updated_time TEXT NOT NULL,
    parent TEXT
);
CREATE TABLE IF NOT EXISTS history (
    instance_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (instance_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    task_id INTEGER,
    visible_at REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_instance ON messages (instance_id, visible_at);
CREATE TABLE IF NOT EXISTS activities (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    task_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    input TEXT
);
"""


@dataclass
class InstanceRow:
    instance_id: str
    name: str
    execution_id: str
    status: str
    input: str | None
    output: str | None
    custom_status: str | None
    created_time: str
    last_updated_time: str
    parent: dict[str, Any] | None


@dataclass(frozen=True)
class Message:
    id: int
    instance_id: str
    execution_id: str
    kind: str  # "event" (a history event to deliver), "terminate", "suspend", "resume"
    task_id: int | None
    visible_at: float
    body: dict[str, Any]


@dataclass(frozen=True)
class WorkItem:
    id: int
    instance_id: str
    execution_id: str
    task_id: int
    name: str
    input: str | None


@dataclass
class NewMessage:
    instance_id: str
    execution_id: str
    kind: str
    body: dict[str, Any]
    visible_at: float = 0.0
    task_id: int | None = None


def _instance(row: sqlite3.Row) -> InstanceRow:
    return InstanceRow(
        instance_id=row["instance_id"],
        name=row["name"],
        execution_id=row["execution_id"],
        status=row["status"],
        input=row["input"],
        output=row["output"],
        custom_status=row["custom_status"],
        created_time=row["created_time"],
        last_updated_time=row["last_updated_time"],
        parent=json.loads(row["parent"]) if row["parent"] else None,
    )


class Store:
    """All durable state in one SQLite file. Used from the event loop's thread only."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- reads -----------------------------------------------------------------------------
    def instance(self, instance_id: str) -> InstanceRow | None:
        row = self.db.execute("SELECT * FROM instances WHERE instance_id = ?", (instance_id,)).fetchone()
        return _instance(row) if row else None

    def instances(self) -> list[InstanceRow]:
        return [_instance(r) for r in self.db.execute("SELECT * FROM instances ORDER BY created_time")]

    def history(self, instance_id: str) -> list[str]:
        rows = self.db.execute("SELECT event FROM history WHERE instance_id = ? ORDER BY seq", (instance_id,))
        return [r[0] for r in rows]

    def visible_messages(self, instance_id: str, now: float) -> list[Message]:
        rows = self.db.execute(
            "SELECT * FROM messages WHERE instance_id = ? AND visible_at <= ? ORDER BY id", (instance_id, now)
        )
        return [self._message(r) for r in rows]

    def all_messages(self) -> list[Message]:
        return [self._message(r) for r in self.db.execute("SELECT * FROM messages ORDER BY id")]

    def work_items(self) -> list[WorkItem]:
        rows = self.db.execute("SELECT * FROM activities ORDER BY id")
        return [
            WorkItem(r["id"], r["instance_id"], r["execution_id"], r["task_id"], r["name"], r["input"]) for r in rows
        ]

    @staticmethod
    def _message(r: sqlite3.Row) -> Message:
        return Message(
            r["id"],
            r["instance_id"],
            r["execution_id"],
            r["kind"],
            r["task_id"],
            r["visible_at"],
            json.loads(r["body"]),
        )

    # -- writes (call inside transaction()) --------------------------------------------------
    @staticmethod
    def put_instance(db: sqlite3.Connection, row: InstanceRow) -> None:
        db.execute(
            "INSERT OR REPLACE INTO instances VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                row.instance_id,
                row.name,
                row.execution_id,
                row.status,
                row.input,
                row.output,
                row.custom_status,
                row.created_time,
                row.last_updated_time,
                json.dumps(row.parent) if row.parent else None,
            ),
        )

    @staticmethod
    def append_history(db: sqlite3.Connection, instance_id: str, start: int, events: Sequence[str]) -> None:
        db.executemany(
            "INSERT INTO history VALUES (?,?,?)", [(instance_id, start + i, e) for i, e in enumerate(events)]
        )

    @staticmethod
    def clear_instance(db: sqlite3.Connection, instance_id: str, keep_messages: bool = False) -> None:
        db.execute("DELETE FROM history WHERE instance_id = ?", (instance_id,))
        db.execute("DELETE FROM activities WHERE instance_id = ?", (instance_id,))
        if not keep_messages:
            db.execute("DELETE FROM messages WHERE instance_id = ?", (instance_id,))

    @staticmethod
    def delete_instance(db: sqlite3.Connection, instance_id: str) -> None:
        Store.clear_instance(db, instance_id)
        db.execute("DELETE FROM instances WHERE instance_id = ?", (instance_id,))

    @staticmethod
    def add_messages(db: sqlite3.Connection, messages: Sequence[NewMessage]) -> list[int]:
        ids: list[int] = []
        for m in messages:
            cursor = db.execute(
                "INSERT INTO messages (instance_id, execution_id, kind, task_id, visible_at, body) VALUES (?,?,?,?,?,?)",
                (m.instance_id, m.execution_id, m.kind, m.task_id, m.visible_at, json.dumps(m.body)),
            )
            ids.append(int(cursor.lastrowid or 0))
        return ids

    @staticmethod
    def delete_messages(db: sqlite3.Connection, ids: Sequence[int]) -> None:
        db.executemany("DELETE FROM messages WHERE id = ?", [(i,) for i in ids])

    @staticmethod
    def delete_timer(db: sqlite3.Connection, instance_id: str, execution_id: str, task_id: int) -> None:
        db.execute(
            "DELETE FROM messages WHERE instance_id = ? AND execution_id = ? AND task_id = ? AND kind = 'event'",
            (instance_id, execution_id, task_id),
        )

    @staticmethod
    def add_work(db: sqlite3.Connection, item: WorkItem) -> int:
        cursor = db.execute(
            "INSERT INTO activities (instance_id, execution_id, task_id, name, input) VALUES (?,?,?,?,?)",
            (item.instance_id, item.execution_id, item.task_id, item.name, item.input),
        )
        return int(cursor.lastrowid or 0)

    @staticmethod
    def finish_work(db: sqlite3.Connection, work_id: int) -> bool:
        """Remove a work item; False when it was already gone (instance purged, restarted or terminated)."""
        return db.execute("DELETE FROM activities WHERE id = ?", (work_id,)).rowcount > 0

    @staticmethod
    def rekey_messages(db: sqlite3.Connection, instance_id: str, execution_id: str) -> None:
        """Carry queued external events over to a new execution (continue_as_new); drop stale timers/results."""
        db.execute(
            "DELETE FROM messages WHERE instance_id = ? AND kind = 'event' AND json_extract(body, '$.EventType') != 15",
            (instance_id,),
        )
        db.execute("UPDATE messages SET execution_id = ? WHERE instance_id = ?", (execution_id, instance_id))
