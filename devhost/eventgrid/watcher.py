"""Azurite emits no Event Grid events, so this watcher polls a container and makes them.

Every ``interval`` seconds it lists the container; a blob name that is new, or whose eTag
changed (an overwrite), becomes one ``Microsoft.Storage.BlobCreated`` event in the
documented Event Grid schema (``api``, ``eTag``, ``contentLength``, ``url``, ``sequencer``,
…). The last listing is kept in the state folder, so blobs that land while devhost is down
are announced when it starts again; on the very first start the existing blobs are only
recorded (a new subscription in Azure sees only new blobs, too).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceNotFoundError, ServiceRequestError, ServiceResponseError
from azure.storage.blob import BlobServiceClient

from devhost.files import write_text_atomically
from shared.blobpaths import quoted_etag

logger = logging.getLogger("devhost.eventgrid")

LOCAL_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"


def storage_topic(account: str) -> str:
    return f"/subscriptions/{LOCAL_SUBSCRIPTION}/resourceGroups/local/providers/Microsoft.Storage/storageAccounts/{account}"


def blob_created_event(
    *,
    account: str,
    container: str,
    name: str,
    url: str,
    etag: str,
    size: int,
    content_type: str | None,
    sequencer: int,
    now: datetime,
    api: str = "PutBlob",
) -> dict[str, Any]:
    """A ``Microsoft.Storage.BlobCreated`` event in the Event Grid schema, as Azure Storage sends it."""
    request_id = str(uuid.uuid4())
    return {
        "topic": storage_topic(account),
        "subject": f"/blobServices/default/containers/{container}/blobs/{name}",
        "eventType": "Microsoft.Storage.BlobCreated",
        "eventTime": now.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "id": str(uuid.uuid4()),
        "data": {
            "api": api,
            "clientRequestId": str(uuid.uuid4()),
            "requestId": request_id,
            "eTag": etag,
            "contentType": content_type or "application/octet-stream",
            "contentLength": size,
            "blobType": "BlockBlob",
            "url": url,
            "sequencer": f"{sequencer:032X}",
            "storageDiagnostics": {"batchId": request_id},
        },
        "dataVersion": "",
        "metadataVersion": "1",
    }


@dataclass
class BlobWatcher:
    """Polls ``container`` and calls ``emit(event)`` for every new or overwritten blob."""

    service: BlobServiceClient
    container: str
    emit: Callable[[dict[str, Any]], None]
    state_file: Path
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    interval: float = 0.25
    _seen: dict[str, str] = field(default_factory=dict)
    _sequencer: int = 0
    _task: asyncio.Task[None] | None = None
    _missing_logged: bool = False
    _unreachable: bool = False

    async def start(self) -> None:
        """Take the first listing (so blobs uploaded after start() returns are always announced), then poll."""
        previous = self._load_state()
        listing = await asyncio.to_thread(self._list)
        if previous is None:
            self._seen = {name: etag for name, (etag, _, _) in listing.items()}
            self._save_state()
        else:
            self._seen = previous
            self._announce(listing)
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def poll_once(self) -> None:
        self._announce(await asyncio.to_thread(self._list))

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except (ServiceRequestError, ServiceResponseError) as exc:  # Azurite stopped, a network blip
                if not self._unreachable:  # once per outage, not every poll
                    logger.warning("storage cannot be reached (%s); watching %s again once it can", exc, self.container)
                    self._unreachable = True
                continue
            except Exception:
                logger.exception("listing container %s failed; retrying", self.container)
                continue
            if self._unreachable:
                logger.info("storage can be reached again; watching %s", self.container)
                self._unreachable = False

    def _list(self) -> dict[str, tuple[str, int, str | None]]:
        client = self.service.get_container_client(self.container)
        try:
            return {
                b.name: (quoted_etag(str(b.etag)), int(b.size), b.content_settings.content_type)
                for b in client.list_blobs(include=[])
            }
        except ResourceNotFoundError:
            if not self._missing_logged:
                logger.info("container %s does not exist yet; watching for it", self.container)
                self._missing_logged = True
            return {}

    def _announce(self, listing: dict[str, tuple[str, int, str | None]]) -> None:
        changed = False
        container_client = self.service.get_container_client(self.container)
        for name, (etag, size, content_type) in sorted(listing.items()):
            if self._seen.get(name) == etag:
                continue
            self._sequencer += 1
            event = blob_created_event(
                account=self.service.account_name or "devstoreaccount1",
                container=self.container,
                name=name,
                url=container_client.get_blob_client(name).url,
                etag=etag,
                size=size,
                content_type=content_type,
                sequencer=self._sequencer,
                now=self.now(),
            )
            self._seen[name] = etag
            changed = True
            self.emit(event)
        for gone in set(self._seen) - set(listing):
            del self._seen[gone]
            changed = True
        if changed:
            self._save_state()

    def _load_state(self) -> dict[str, str] | None:
        try:
            raw = json.loads(self.state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(raw, dict):
            return None
        self._sequencer = int(raw.get("sequencer", 0)) if isinstance(raw.get("sequencer"), int) else 0
        seen = raw.get("seen")
        return {str(k): str(v) for k, v in seen.items()} if isinstance(seen, dict) else None

    def _save_state(self) -> None:
        write_text_atomically(self.state_file, json.dumps({"sequencer": self._sequencer, "seen": self._seen}))
