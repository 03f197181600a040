"""Azure Table storage with Azure's limits enforced by us (Azurite does not enforce most of them).

Limits checked before anything reaches the service (Azure Table service docs):

- PartitionKey / RowKey: strings ≤ 1 KiB, without ``/ \\ # ?`` or control characters
- ≤ 252 user properties per entity; property names are C#-style identifiers ≤ 255 characters
- strings ≤ 64 KiB (UTF-16), binary ≤ 64 KiB, whole entity ≤ 1 MiB
- integers are int32 unless tagged INT64; beyond int64 there is no type at all
- a transaction is ≤ 100 operations, all in one partition, and is atomic

Large string values are *spilled* to the ``payloads`` container and replaced by a pointer
property ``<name>__blob``; :func:`restore` reads them back. Everything that is still too big
raises :class:`TableLimitError` naming the property and the fix.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import (
    EdmType,
    EntityProperty,
    TableClient,
    TableServiceClient,
    TableTransactionError,
    UpdateMode,
)

from shared.settings import StorageSettings

MAX_KEY_BYTES = 1024
MAX_PROPERTIES = 252
MAX_PROPERTY_NAME = 255
MAX_STRING_BYTES = 64 * 1024
MAX_ENTITY_BYTES = 1024 * 1024
MAX_BATCH = 100
#: Rows the service returns per request at most (``$top`` above it is a 400 in Azure; Azurite accepts it).
MAX_PAGE = 1000
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
#: Strings larger than this go to blob even when the entity as a whole would fit: keeps entities lean.
SPILL_THRESHOLD = 32 * 1024
SPILL_SUFFIX = "__blob"

_BAD_KEY = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")
_PROPERTY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SYSTEM = {"PartitionKey", "RowKey", "Timestamp", "etag"}

Entity = dict[str, Any]
Operation = (
    tuple[Literal["create", "upsert", "update", "delete"], Entity]
    | tuple[Literal["create", "upsert", "update", "delete"], Entity, Mapping[str, Any]]
)


class TableLimitError(ValueError):
    """An entity or batch breaks one of Azure's Table limits; ``hint`` says how to fix it."""

    def __init__(self, message: str, hint: str) -> None:
        self.hint = hint
        super().__init__(f"{message} ({hint})")


class ConcurrencyError(RuntimeError):
    """Someone else changed the entity since it was read (stale ETag); re-read and apply the change again."""

    def __init__(self, message: str, hint: str = "re-read the record and apply the change again") -> None:
        self.hint = hint
        super().__init__(f"{message} ({hint})")


class AlreadyExistsError(RuntimeError):
    """An entity that must be new already exists (e.g. a blob already claimed by another run)."""

    def __init__(self, message: str, hint: str) -> None:
        self.hint = hint
        super().__init__(f"{message} ({hint})")


def table_service_client(storage: StorageSettings) -> TableServiceClient:
    """A TableServiceClient from a connection string, or from the table URI + identity (retries as blobs do)."""
    from shared.storage import CONNECT_RETRIES, CONNECTION_TIMEOUT_SECONDS, STATUS_RETRIES, storage_credential

    retries: dict[str, Any] = {
        "retry_total": STATUS_RETRIES,  # waits 0, 1.6, 3.2, 6.4, 12.8 s
        "retry_connect": CONNECT_RETRIES,
        "retry_status": STATUS_RETRIES,
        "connection_timeout": CONNECTION_TIMEOUT_SECONDS,
    }
    if storage.connection_string:
        return TableServiceClient.from_connection_string(storage.connection_string, **retries)
    if not storage.table_uri:
        raise TableLimitError(
            "no table endpoint is configured", "set AzureWebJobsStorage or AzureWebJobsStorage__tableServiceUri"
        )
    return TableServiceClient(storage.table_uri, credential=storage_credential(storage), **retries)


# --------------------------------------------------------------------------- keys and sizes


def check_key(value: str, which: str = "RowKey") -> str:
    if not isinstance(value, str) or not value:
        raise TableLimitError(f"{which} {value!r} is empty or not a string", "keys are non-empty strings")
    if len(value.encode("utf-16-le")) > MAX_KEY_BYTES:
        raise TableLimitError(f"{which} is longer than 1 KiB", "shorten it, or hash it with safe_key()")
    if _BAD_KEY.search(value):
        raise TableLimitError(
            f"{which} {value!r} contains '/', '\\', '#', '?' or a control character", "escape it with safe_key()"
        )
    return value


def safe_key(text: str, keep: int = 80) -> str:
    """A valid, stable key for arbitrary text (URLs, names): a readable prefix plus a hash of the whole."""
    readable = _BAD_KEY.sub("_", text)[:keep]
    return f"{readable}~{hashlib.sha256(text.encode()).hexdigest()[:32]}"


def _value_size(value: Any) -> int:
    if isinstance(value, EntityProperty):
        value = value.value
    if isinstance(value, str):
        return 4 + len(value.encode("utf-16-le"))
    if isinstance(value, bytes):
        return 4 + len(value)
    if isinstance(value, bool):
        return 1
    if isinstance(value, int | float | datetime):
        return 8
    return 16


def entity_size(entity: Mapping[str, Any]) -> int:
    """Azure's documented size formula: 4 + keys×2 + Σ(8 + name×2 + value)."""
    size = 4 + 2 * (len(str(entity.get("PartitionKey", ""))) + len(str(entity.get("RowKey", ""))))
    for name, value in entity.items():
        if name in _SYSTEM:
            continue
        size += 8 + 2 * len(name) + _value_size(value)
    return size


def _typed(name: str, value: Any) -> Any:
    """Tag ints outside int32 as INT64; refuse what Azure cannot store."""
    if isinstance(value, bool | str | bytes | float | datetime | EntityProperty):
        return value
    if not isinstance(value, int):
        raise TableLimitError(
            f"property {name!r} has type {type(value).__name__}", "store str, int, float, bool, datetime or bytes"
        )
    if INT32[0] <= value <= INT32[1]:
        return value
    if INT64[0] <= value <= INT64[1]:
        return EntityProperty(value, EdmType.INT64)
    raise TableLimitError(f"property {name!r}={value} does not fit in int64", "store it as a string")


# --------------------------------------------------------------------------- prepare / restore

Spill = Callable[[str, bytes], str]
Load = Callable[[str], bytes]


def prepare(entity: Mapping[str, Any], table: str, spill: Spill | None = None) -> Entity:
    """Validate ``entity`` against Azure's limits, spilling large strings to blob via ``spill``.

    Returns the entity to send. Raises :class:`TableLimitError` when a key, a property name
    or count, an integer or (after spilling) the total size is out of bounds.
    """
    pk = check_key(entity.get("PartitionKey", ""), "PartitionKey")
    rk = check_key(entity.get("RowKey", ""), "RowKey")
    out: Entity = {}
    for name, value in entity.items():
        if name in ("Timestamp", "etag"):
            continue
        if name not in _SYSTEM and (len(name) > MAX_PROPERTY_NAME or not _PROPERTY_NAME.match(name)):
            raise TableLimitError(
                f"property name {name!r} is not allowed", "use letters, digits and '_', starting with a letter"
            )
        if value is None:
            continue  # Table storage has no null: an absent property reads back as None.
        out[name] = value if name in _SYSTEM else _typed(name, value)
    user = [n for n in out if n not in _SYSTEM]
    if len(user) > MAX_PROPERTIES:
        raise TableLimitError(
            f"entity {table}/{pk}/{rk} has {len(user)} properties; Azure allows {MAX_PROPERTIES}",
            "group related values into one JSON property",
        )
    # Spill strings that are too long for a property, then the largest ones until the entity fits.
    strings = sorted(
        (n for n in user if isinstance(out[n], str)), key=lambda n: len(out[n].encode("utf-16-le")), reverse=True
    )
    for name in strings:
        too_long = len(out[name].encode("utf-16-le")) > SPILL_THRESHOLD
        if not too_long and entity_size(out) <= MAX_ENTITY_BYTES:
            break
        if spill is None:
            raise TableLimitError(
                f"property {name!r} of {table}/{pk}/{rk} is too large for a table entity",
                "give the table a payload store (BlobStore) so large values spill to blob",
            )
        pointer_name = f"{name}{SPILL_SUFFIX}"
        if len(pointer_name) > MAX_PROPERTY_NAME:
            raise TableLimitError(f"property name {name!r} is too long to spill", "shorten it")
        digest = hashlib.sha256(out[name].encode()).hexdigest()[:16]
        out[pointer_name] = spill(f"{table}/{safe_key(pk, 40)}/{safe_key(rk, 40)}/{name}-{digest}", out[name].encode())
        del out[name]
    for name in user:
        value = out.get(name)
        if isinstance(value, bytes) and len(value) > MAX_STRING_BYTES:
            raise TableLimitError(f"binary property {name!r} exceeds 64 KiB", "store it in blob storage")
    if len([n for n in out if n not in _SYSTEM]) > MAX_PROPERTIES:
        raise TableLimitError(
            f"entity {table}/{pk}/{rk} has too many properties after spilling", "group values into JSON"
        )
    size = entity_size(out)
    if size > MAX_ENTITY_BYTES:
        raise TableLimitError(
            f"entity {table}/{pk}/{rk} is {size} bytes; Azure allows {MAX_ENTITY_BYTES}",
            "move large values into one string property so it can spill to blob",
        )
    return out


def restore(entity: Mapping[str, Any], load: Load | None = None, keep_spilled: bool = False) -> Entity:
    """Undo :func:`prepare`: fetch spilled strings back and unwrap INT64 values. With ``keep_spilled`` the
    pointers to spilled strings stay as they are, for a later ``restore`` once the entity is known to be needed."""
    out: Entity = {}
    for name, value in entity.items():
        if name.endswith(SPILL_SUFFIX) and isinstance(value, str) and keep_spilled:
            out[name] = value
        elif name.endswith(SPILL_SUFFIX) and isinstance(value, str):
            if load is None:
                raise TableLimitError(f"property {name!r} was spilled to blob", "read it with a payload store")
            out[name[: -len(SPILL_SUFFIX)]] = load(value).decode()
        elif isinstance(value, EntityProperty):
            out[name] = value.value
        else:
            out[name] = value
    metadata = getattr(entity, "metadata", None)
    etag = metadata.get("etag") if isinstance(metadata, Mapping) else None
    if etag:
        out["etag"] = etag
    return out


# --------------------------------------------------------------------------- table access


@dataclass
class Table:
    """One table with limits enforced, ETag concurrency mapped to typed errors, and batches split safely."""

    client: TableClient
    spill: Spill | None = None
    load: Load | None = None

    @property
    def name(self) -> str:
        return self.client.table_name

    def ensure(self) -> None:
        with contextlib.suppress(ResourceExistsError):
            self.client.create_table()

    def _first_write(self, write: Callable[[Entity], Any], body: Entity) -> Any:
        """Run ``write``; if the table does not exist yet (a fresh local account), create it and retry once."""
        try:
            return write(body)
        except ResourceNotFoundError:
            self.ensure()
            return write(body)

    def get(self, pk: str, rk: str) -> Entity | None:
        try:
            raw = self.client.get_entity(check_key(pk, "PartitionKey"), check_key(rk))
        except ResourceNotFoundError:
            return None
        return restore(raw, self.load)

    def query(
        self,
        pk: str,
        prefix: str = "",
        keep_spilled: bool = False,
        *,
        after: str | None = None,
        where: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        select: Sequence[str] | None = None,
        page_size: int | None = None,
    ) -> Iterator[Entity]:
        """Entities of partition ``pk`` whose RowKey starts with ``prefix``, in RowKey order. ``keep_spilled``:
        leave spilled strings in blob storage (see :meth:`load_spilled`), for a caller that keeps only a few.

        ``after``: only RowKeys greater than it (the next page). ``where``: a further OData condition the service
        evaluates, its values named ``@name`` in ``parameters``, so only matching rows cross the wire. ``select``:
        only these properties. ``page_size``: rows per request, for a caller that stops after the first few (the
        rows are fetched as the iterator is read)."""
        check_key(pk, "PartitionKey")
        flt = "PartitionKey eq @pk"
        params: dict[str, Any] = {"pk": pk}
        if prefix:
            # RowKeys are compared as strings: [prefix, prefix + U+FFFF) is exactly "starts with prefix".
            flt += " and RowKey ge @lo and RowKey lt @hi"
            params.update(lo=prefix, hi=prefix + "\uffff")
        if after is not None:
            flt += " and RowKey gt @after"
            params["after"] = after
        if where:
            if clash := sorted(set(parameters or {}) & {"pk", "lo", "hi", "after"}):
                raise ValueError(f"query parameters {clash} are the query's own: name them otherwise")
            flt += f" and ( {where} )"  # spaces: the SDK finds @names by splitting the filter on spaces
            params.update(parameters or {})
        per_request = min(page_size, MAX_PAGE) if page_size is not None else None
        try:
            for raw in self.client.query_entities(
                flt, parameters=params, select=list(select) if select else None, results_per_page=per_request
            ):
                yield restore(raw, self.load, keep_spilled)
        except ResourceNotFoundError:
            return  # the table does not exist yet: nothing recorded

    def load_spilled(self, entity: Entity) -> Entity:
        """An entity read with ``keep_spilled``, with its spilled strings fetched."""
        return restore(entity, self.load)

    def create(self, entity: Mapping[str, Any]) -> str:
        """Insert; AlreadyExistsError if the key is taken. Returns the new ETag."""
        try:
            meta = self._first_write(
                lambda body: self.client.create_entity(body), prepare(entity, self.name, self.spill)
            )
        except ResourceExistsError:
            raise AlreadyExistsError(
                f"{self.name}/{entity['PartitionKey']}/{entity['RowKey']} already exists",
                "read it and update it with its ETag instead",
            ) from None
        return str(meta["etag"])

    def upsert(self, entity: Mapping[str, Any]) -> str:
        """Insert or replace without a concurrency check (only for records with a single writer)."""
        meta = self._first_write(
            lambda body: self.client.upsert_entity(body, mode=UpdateMode.REPLACE),
            prepare(entity, self.name, self.spill),
        )
        return str(meta["etag"])

    def replace(self, entity: Mapping[str, Any], etag: str) -> str:
        """Replace only if the stored ETag is still ``etag``; ConcurrencyError otherwise (never a lost update)."""
        try:
            meta = self.client.update_entity(
                prepare(entity, self.name, self.spill),
                mode=UpdateMode.REPLACE,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except ResourceModifiedError:
            raise ConcurrencyError(
                f"{self.name}/{entity['PartitionKey']}/{entity['RowKey']} changed since it was read (ETag {etag})"
            ) from None
        except ResourceNotFoundError:
            raise ConcurrencyError(
                f"{self.name}/{entity['PartitionKey']}/{entity['RowKey']} was deleted since it was read"
            ) from None
        return str(meta["etag"])

    def delete(self, pk: str, rk: str) -> None:
        self.client.delete_entity(check_key(pk, "PartitionKey"), check_key(rk))

    def transact(self, operations: Sequence[Operation], atomic: bool = True) -> list[str]:
        """Submit operations of ONE partition. Over 100: refused if ``atomic`` (the default), else split.
        Returns each operation's new ETag ("" for a delete), in order.

        An atomic batch either applies completely or not at all; a conflicting create raises
        AlreadyExistsError and a stale ETag ConcurrencyError, each naming the failed entity.
        """
        if not operations:
            return []
        partitions = {op[1].get("PartitionKey") for op in operations}
        if len(partitions) != 1:
            raise TableLimitError(
                f"a transaction spans partitions {sorted(map(str, partitions))}", "batch one partition at a time"
            )
        if len(operations) > MAX_BATCH and atomic:
            raise TableLimitError(
                f"a transaction of {len(operations)} operations exceeds Azure's {MAX_BATCH}",
                "pass atomic=False to submit it in chunks of 100 (each chunk atomic), or batch less",
            )
        prepared = [self._prepare_op(op) for op in operations]
        etags: list[str] = []
        for start in range(0, len(prepared), MAX_BATCH):
            chunk = prepared[start : start + MAX_BATCH]
            try:
                try:
                    answers = self.client.submit_transaction(chunk)
                except TableTransactionError as exc:
                    if str(getattr(exc, "error_code", "")) != "TableNotFound":
                        raise
                    self.ensure()  # a fresh local account: create the table once and replay the batch
                    answers = self.client.submit_transaction(chunk)
                etags.extend(str(answer.get("etag") or "") for answer in answers)
            except TableTransactionError as exc:
                failed = chunk[exc.index][1] if 0 <= exc.index < len(chunk) else {}
                where = f"{self.name}/{failed.get('PartitionKey')}/{failed.get('RowKey')}"
                code = str(getattr(exc, "error_code", "") or "")
                if code == "EntityAlreadyExists":
                    raise AlreadyExistsError(
                        f"{where} already exists; the whole batch was rolled back", "read it and decide"
                    ) from None
                if code in ("UpdateConditionNotSatisfied", "ResourceNotFound", "EntityNotFound"):
                    raise ConcurrencyError(f"{where} changed since it was read; the batch was rolled back") from None
                raise
        return etags

    def _prepare_op(self, op: Operation) -> tuple[Any, ...]:
        kind, entity = op[0], op[1]
        options = dict(op[2]) if len(op) > 2 else {}
        if kind == "delete":
            check_key(entity.get("PartitionKey", ""), "PartitionKey")
            check_key(entity.get("RowKey", ""), "RowKey")
            body: Entity = {"PartitionKey": entity["PartitionKey"], "RowKey": entity["RowKey"]}
        else:
            body = prepare(entity, self.name, self.spill)
        etag = options.pop("etag", None)
        if etag is not None:
            options.update(etag=etag, match_condition=MatchConditions.IfNotModified)
        if kind in ("update", "upsert"):
            options.setdefault("mode", "replace")
        return (kind, body, options) if options else (kind, body)


def chunked(items: Iterable[Any], size: int = MAX_BATCH) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
