"""Blob storage: the landing, quarantine, manifests, verdicts and payloads containers (azure-storage-blob).

Layout (names agreed with infra/ and devhost):

- ``landing/<model>/…``      new data; an Event Grid BlobCreated per blob starts ingestion
- ``quarantine/<model>/…``   batches that failed validation, with ``<blob>.report.json`` beside each; a later bad
  version of the same name goes to ``<stem>.<eTag><suffix>`` (``daily.0x8DB….csv``), never over the first
- ``manifests/<model>/<run>.json``  the exact blobs (url, eTag, size, sha256) a run trained on
- ``verdicts/<model>/<key>.json``  passing validation verdicts kept per blob version (shared/verdicts.py); infra/
  deletes each ``verdictRetentionDays`` (180) days after it was written: a deleted one only means a re-read
- ``payloads/…``             table values too large for an entity (see shared/tables.py)
- ``deadletter/…``           Event Grid dead letters (written by the service / the local Event Grid)
- ``feedback/<model>/<name>.csv|.jsonl``  delayed labels of scored requests: ``request_id``, ``label``
  and optionally ``row`` (the row of a multi-row request, default 0); read by blob last-modified time

Reads are streamed chunk by chunk and pinned to the eTag the run recorded, so a blob that is
overwritten mid-run is detected (:class:`BlobChangedError`) rather than silently mixed in.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import IO, Any

from azure.core import MatchConditions
from azure.core.credentials import TokenCredential
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import (
    BlobClient,
    BlobPrefix,
    BlobProperties,
    BlobServiceClient,
    BlobType,
    ContainerClient,
    ContentSettings,
    ExponentialRetry,
)

from shared.blobpaths import (
    BlobNameError,
    BlobPath,
    blob_account,
    canonical_blob_url,
    quoted_etag,
    validate_blob_name,
)
from shared.feedback import FEEDBACK_SUFFIXES, FeedbackHeaderError, FeedbackLabel, feedback_rows
from shared.settings import StorageSettings

LANDING = "landing"
QUARANTINE = "quarantine"
MANIFESTS = "manifests"
PAYLOADS = "payloads"
DEADLETTER = "deadletter"
FEEDBACK = "feedback"
VERDICTS = "verdicts"
#: Every container Perennial uses; infra/ creates them, ``BlobStore.ensure_containers`` does locally.
CONTAINERS: tuple[str, ...] = (LANDING, QUARANTINE, MANIFESTS, PAYLOADS, DEADLETTER, FEEDBACK, VERDICTS)

logger = logging.getLogger("perennial.storage")

#: Bytes fetched per request when streaming a blob (bounds memory, not the blob size).
CHUNK_SIZE = 4 * 1024 * 1024

# How the blob and table clients retry. A connection that cannot be made (Azurite not running, a
# firewall, DNS) is retried three times with short waits, so an unreachable account is reported in
# about 5 s by tables and 17 s by blobs (the API then answers 503) instead of after the blob SDK's
# default back-off (86 s measured for a listing); an activity still rides out a blip of that length.
# Throttling and 5xx answers get five retries with growing waits (about a minute for blobs, 24 s
# for tables), and a connection attempt gives up after 10 s (the SDK default is 300 s).
CONNECT_RETRIES = 3
STATUS_RETRIES = 5
CONNECTION_TIMEOUT_SECONDS = 10

__all__ = [
    "CONTAINERS",
    "DEADLETTER",
    "FEEDBACK",
    "LANDING",
    "MANIFESTS",
    "PAYLOADS",
    "QUARANTINE",
    "VERDICTS",
    "BlobChangedError",
    "BlobMissingError",
    "BlobNameError",
    "BlobRef",
    "BlobStore",
    "FeedbackLabel",
    "Manifest",
    "ManifestEntry",
    "StorageError",
    "StoredManifest",
    "blob_service_client",
    "storage_credential",
]


class StorageError(RuntimeError):
    """A storage operation failed in a way the caller can act on; ``hint`` says how."""

    def __init__(self, message: str, hint: str) -> None:
        self.hint = hint
        super().__init__(f"{message} ({hint})")


class BlobMissingError(StorageError):
    """The blob is not there (deleted, or never uploaded)."""


class BlobChangedError(StorageError):
    """The blob was overwritten since its eTag was recorded; the recorded version is gone."""

    @classmethod
    def of(cls, ref: BlobRef) -> BlobChangedError:
        return cls(
            f"blob {ref.container}/{ref.name} changed since eTag {ref.etag} was recorded",
            "a newer version has its own BlobCreated event; train on that one",
        )


def storage_credential(storage: StorageSettings) -> TokenCredential:
    """The managed identity named by ``__clientId`` if set, else DefaultAzureCredential (CLI, env, MI)."""
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    if storage.client_id:
        return ManagedIdentityCredential(client_id=storage.client_id)
    return DefaultAzureCredential()


def blob_service_client(storage: StorageSettings, **kwargs: Any) -> BlobServiceClient:
    """A BlobServiceClient from a connection string, or from the blob URI + identity."""
    kwargs.setdefault("max_chunk_get_size", CHUNK_SIZE)
    kwargs.setdefault("max_single_get_size", CHUNK_SIZE)
    kwargs.setdefault("connection_timeout", CONNECTION_TIMEOUT_SECONDS)
    kwargs.setdefault(
        "retry_policy",  # waits 3, 5, 9, 17, 33 s (± 1 s)
        ExponentialRetry(
            initial_backoff=1,
            increment_base=2,
            retry_total=STATUS_RETRIES,
            random_jitter_range=1,
            retry_connect=CONNECT_RETRIES,
            retry_status=STATUS_RETRIES,
        ),
    )
    if storage.connection_string:
        return BlobServiceClient.from_connection_string(storage.connection_string, **kwargs)
    if not storage.blob_uri:
        raise StorageError(
            "no blob endpoint is configured", "set AzureWebJobsStorage or AzureWebJobsStorage__blobServiceUri"
        )
    return BlobServiceClient(storage.blob_uri, credential=storage_credential(storage), **kwargs)


@dataclass(frozen=True)
class BlobRef:
    """One version of one blob: what Event Grid reports and what a manifest pins."""

    container: str
    name: str
    url: str
    etag: str
    size: int
    content_type: str | None = None


@dataclass(frozen=True)
class ManifestEntry:
    name: str
    url: str
    etag: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """The exact data a run used; written once per run (first writer wins, so retries are harmless)."""

    model: str
    run_id: str
    blobs: tuple[ManifestEntry, ...]
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    @property
    def total_bytes(self) -> int:
        return sum(b.size for b in self.blobs)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        try:
            raw = json.loads(text)
            blobs = tuple(ManifestEntry(**b) for b in raw["blobs"])
            return cls(model=raw["model"], run_id=raw["run_id"], blobs=blobs, created_at=raw["created_at"])
        except (ValueError, KeyError, TypeError) as exc:
            raise StorageError(f"the manifest is malformed ({exc})", "rewrite it from the run's record") from None


@dataclass(frozen=True)
class StoredManifest:
    """A manifest as stored: a model version pins it by ``sha256`` (of these exact bytes) and it pins each blob, so
    the version's record stays one row however many blobs it trained on."""

    manifest: Manifest
    url: str
    sha256: str


@dataclass(frozen=True)
class QuarantineRecord:
    blob: BlobRef
    report: BlobRef
    source: BlobRef


class StreamDigest:
    """The sha256 of a blob read once: chunks are hashed as a reader takes them, and :meth:`hexdigest` hashes
    whatever the reader left unread, so the hash costs no second download."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._sha = hashlib.sha256()

    def chunks(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self._sha.update(chunk)
            yield chunk

    def hexdigest(self) -> str:
        """The whole blob's sha256 (reads the rest: BlobChangedError if it was overwritten meanwhile)."""
        for chunk in self._chunks:
            self._sha.update(chunk)
        return self._sha.hexdigest()


class _ChunkReader(io.RawIOBase):
    """A read-only file object over an iterator of byte chunks (for csv/pyarrow readers)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        view = memoryview(target).cast("B")
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(view), len(self._buffer))
        view[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


def _listed_ref(client: ContainerClient, item: BlobProperties) -> BlobRef:
    """The version of a blob a container listing returned (no extra request)."""
    return BlobRef(
        container=client.container_name,
        name=item.name,
        url=canonical_blob_url(client.get_blob_client(item.name).url),  # as events spell it (blobpaths)
        etag=quoted_etag(str(item.etag)),
        size=int(item.size),
        content_type=item.content_settings.content_type,
    )


#: Where `perennial feedback` puts label files, by the UTC day of their upload: ``feedback/<model>/by-upload-day/
#: YYYY-MM-DD/``. The folder is the CLI's own, so its day is the upload's by contract; a producer's folders named
#: by other dates (the day a label is about, say) are not mistaken for it.
UPLOAD_DAYS = "by-upload-day"
DAY_FOLDER = re.compile(r"^(\d{4})-(\d{2})-(\d{2})/$")
#: More folders than this beside by-upload-day/ are read in one listing of the model's folder, not one each.
MAX_FOLDER_LISTINGS = 20


def feedback_day_folder(moment: datetime) -> str:
    """The folder `perennial feedback` puts a file uploaded at ``moment`` in: ``by-upload-day/<its UTC day>``."""
    return f"{UPLOAD_DAYS}/{moment.astimezone(UTC):%Y-%m-%d}"


def _feedback_listing(client: ContainerClient, model: str, start: datetime) -> Iterator[BlobProperties]:
    """Every blob under ``feedback/<model>/`` but those under ``by-upload-day/`` in the folders of days before
    ``start`` (less a day's slack): a live check reads a window of days, and a year of uploads is then about
    eight listings, not the whole history. Every other file and folder is listed as before."""
    days = f"{model}/{UPLOAD_DAYS}/"
    folders: list[str] = []
    for item in client.walk_blobs(name_starts_with=f"{model}/", delimiter="/"):
        if not isinstance(item, BlobPrefix):
            yield item
        elif item.name != days:
            folders.append(item.name)
    if len(folders) > MAX_FOLDER_LISTINGS:  # e.g. a producer's hourly folders: one listing, not thousands
        yield from (b for b in client.list_blobs(name_starts_with=f"{model}/") if b.name.startswith(tuple(folders)))
    else:
        for folder in folders:
            yield from client.list_blobs(name_starts_with=folder)
    oldest = (start.astimezone(UTC) - timedelta(days=1)).date()
    for item in client.walk_blobs(name_starts_with=days, delimiter="/"):
        if not isinstance(item, BlobPrefix):
            yield item  # a file directly under by-upload-day/: read, as anywhere else
            continue
        day = DAY_FOLDER.match(item.name[len(days) :])
        with contextlib.suppress(ValueError):  # 2026-13-45 is not a day: listed like any folder
            if day is not None and date(*map(int, day.groups())) < oldest:
                continue
        yield from client.list_blobs(name_starts_with=item.name)


def _versioned_name(name: str, etag: str) -> str:
    """``<stem>.<eTag><suffix>``: where a version goes in quarantine when its name holds another version's copy."""
    folder, _, leaf = name.rpartition("/")
    stem, dot, suffix = leaf.partition(".")
    token = re.sub(r"[^0-9A-Za-z]", "", etag) or "version"
    return f"{folder}/{stem}.{token}{dot}{suffix}" if dot else f"{folder}/{leaf}.{token}"


def _ref(client: BlobClient) -> BlobRef:
    try:
        props = client.get_blob_properties()
    except ResourceNotFoundError:
        raise BlobMissingError(
            f"blob {client.container_name}/{client.blob_name} does not exist", "check the name, or upload it first"
        ) from None
    return BlobRef(
        container=client.container_name,
        name=client.blob_name,
        url=canonical_blob_url(client.url),
        etag=quoted_etag(str(props.etag)),
        size=int(props.size),
        content_type=props.content_settings.content_type,
    )


#: The most blobs a retrain request may choose (``BlobStore.landing_selection``).
MAX_SELECTED_BLOBS = 1000


class BlobStore:
    """Perennial's view of blob storage; every name is validated against the known models first."""

    def __init__(self, service: BlobServiceClient, known_models: Collection[str]) -> None:
        self._service = service
        self.known_models = frozenset(known_models)

    @classmethod
    def from_settings(cls, storage: StorageSettings, known_models: Collection[str]) -> BlobStore:
        return cls(blob_service_client(storage), known_models)

    # ----------------------------------------------------------------- containers and names

    def ensure_containers(self) -> None:
        """Create any missing container (infra/ does this in Azure; locally we do it at start-up)."""
        for name in CONTAINERS:
            with contextlib.suppress(ResourceExistsError):
                self._service.create_container(name)

    def container(self, name: str) -> ContainerClient:
        return self._service.get_container_client(name)

    def path(self, container: str, name: str) -> BlobPath:
        """Validate ``name`` inside ``container`` (``<model>/<relative>``); raise BlobNameError if unsafe."""
        return validate_blob_name(name, self.known_models, container)

    def ref(self, container: str, name: str) -> BlobRef:
        """The current version of a blob (url, eTag, size)."""
        self.path(container, name)
        return _ref(self._service.get_blob_client(container, name))

    def list_landing(self, model: str, landed_since: datetime | None = None) -> list[BlobRef]:
        """Every complete blob under ``landing/<model>/`` now, oldest name first; with ``landed_since``, only those
        written (Last-Modified) then or later (a spec's ``training.window_days``). A blob whose name is unsafe
        (``fraud//x``, a '..' segment: storage accepts them) is left out with a warning, so it cannot fail every run.
        So are blobs that may still be being written, which a run would otherwise quarantine (and delete) under
        their writer: an empty one (what a Data Lake CreateFile leaves before its flush) and an append blob
        (never announced as complete: the BlobCreated subscription passes PutBlob, PutBlockList, CopyBlob and
        FlushWithClose only)."""
        if model not in self.known_models:
            raise BlobNameError(f"unknown model {model!r}", f"use one of {sorted(self.known_models)}", "model")
        client = self.container(LANDING)
        refs: list[BlobRef] = []
        for item in client.list_blobs(name_starts_with=f"{model}/"):
            if landed_since is not None and item.last_modified is not None and item.last_modified < landed_since:
                continue  # outside the training window: neither trained nor judged, left where it is
            try:
                self.path(LANDING, item.name)
            except BlobNameError as exc:
                logger.warning(
                    "%s/%s is left out of training: %s; rename it (%s)", LANDING, item.name, exc.message, exc.hint
                )
                continue
            if item.size == 0 or item.blob_type == BlobType.APPENDBLOB:
                logger.info(
                    "%s/%s is left out of this run: %s", LANDING, item.name,
                    "it is empty (still being written?)" if item.size == 0 else "an append blob may still grow; "
                    "write block blobs (an upload, or a Data Lake flush with close=true)",
                )  # fmt: skip
                continue
            refs.append(_listed_ref(client, item))
        return refs

    def names(self, container: str, model: str, folder: str) -> list[str]:
        """The names of the blobs under ``<container>/<model>/<folder>/`` now, sorted."""
        if model not in self.known_models:
            raise BlobNameError(f"unknown model {model!r}", f"use one of {sorted(self.known_models)}", "model")
        return sorted(item.name for item in self.container(container).list_blobs(name_starts_with=f"{model}/{folder}/"))

    def holds(self, url: str) -> bool:
        """Whether ``url`` may point into this store's account: an event from another account's subscription does
        not, and must not start a run here. Account names are compared (not hosts: the app may reach its account
        through a private endpoint or another spelling of the host); when either name cannot be told (a custom
        domain), the url is taken as ours: dropping a real event would stop ingestion without an error."""
        ours = (self._service.account_name or "").lower().removesuffix(".privatelink")
        theirs = blob_account(url)
        return not ours or not theirs or ours == theirs

    def landing_selection(self, model: str, names: Sequence[str]) -> list[BlobRef]:
        """The current versions of the blobs a retrain request chose (``landing/<model>/…`` or ``<model>/…``).

        Raises BlobNameError whose field is the item (``blobs[i]``) that is unsafe, in another model's
        folder, named twice, or not there: a request is refused whole, before a run starts, not failed later.
        At most MAX_SELECTED_BLOBS names (each costs a request here, and a validation in the run)."""
        if len(names) > MAX_SELECTED_BLOBS:
            raise BlobNameError(
                f"blobs names {len(names):,} blobs; a selection takes at most {MAX_SELECTED_BLOBS:,}",
                f"leave blobs out to train on all of {LANDING}/{model}/, or retrain on fewer at a time",
                "blobs",
            )
        paths: list[BlobPath] = []
        first_index: dict[str, int] = {}
        for i, name in enumerate(names):  # every name first: an unsafe one is named even after a missing one
            item = f"blobs[{i}]"
            try:
                path = self.path(LANDING, name.removeprefix(f"{LANDING}/"))
            except BlobNameError as exc:
                raise BlobNameError(f"{item}: {exc.message}", exc.hint, item) from None
            if path.model != model:
                hint = f"choose blobs under {LANDING}/{model}/"
                raise BlobNameError(f"{item}: {name!r} is in the landing folder of {path.model}", hint, item)
            if (earlier := first_index.setdefault(path.name, i)) != i:
                raise BlobNameError(
                    f"{item}: {name!r} names the same blob as blobs[{earlier}]", "name each blob once", item
                )
            paths.append(path)
        refs: list[BlobRef] = []
        for i, path in enumerate(paths):
            try:
                refs.append(_ref(self._service.get_blob_client(LANDING, path.name)))
            except BlobMissingError:
                hint = f"list {LANDING}/{model}/ for the names there"
                raise BlobNameError(
                    f"blobs[{i}]: there is no blob {LANDING}/{path.name}", hint, f"blobs[{i}]"
                ) from None
        return refs

    # ----------------------------------------------------------------- landing

    def upload_landing(
        self,
        model: str,
        relative: str,
        data: bytes | IO[bytes],
        content_type: str = "text/csv",
        *,
        overwrite: bool = True,
    ) -> BlobRef:
        """Put a batch under ``landing/<model>/<relative>`` (``perennial upload``, the demo and tests; producers
        use any client). ``overwrite=False``: ResourceExistsError when the name is taken."""
        path = self.path(LANDING, f"{model}/{relative}")
        client = self._service.get_blob_client(LANDING, path.name)
        client.upload_blob(data, overwrite=overwrite, content_settings=ContentSettings(content_type=content_type))
        return _ref(client)

    # ----------------------------------------------------------------- streaming reads

    def iter_chunks(self, ref: BlobRef) -> Iterator[bytes]:
        """Stream the exact version ``ref`` names, chunk by chunk; BlobChangedError if it was overwritten."""
        self.path(ref.container, ref.name)
        client = self._service.get_blob_client(ref.container, ref.name)
        try:
            downloader = client.download_blob(etag=ref.etag, match_condition=MatchConditions.IfNotModified)
            yield from downloader.chunks()
        except ResourceModifiedError:
            raise BlobChangedError.of(ref) from None
        except ResourceNotFoundError:
            raise BlobMissingError(
                f"blob {ref.container}/{ref.name} is gone", "it was deleted or quarantined; nothing to read"
            ) from None

    def open(self, ref: BlobRef) -> io.BufferedReader:
        """A buffered file object streaming ``ref`` (pinned to its eTag): feed it to csv/pyarrow readers."""
        return io.BufferedReader(_ChunkReader(self.iter_chunks(ref)), buffer_size=1024 * 1024)

    def open_hashed(self, ref: BlobRef) -> tuple[io.BufferedReader, StreamDigest]:
        """:meth:`open`, and the blob's sha256 from the same read."""
        digest = StreamDigest(self.iter_chunks(ref))
        return io.BufferedReader(_ChunkReader(digest.chunks()), buffer_size=1024 * 1024), digest

    def check_unchanged(self, ref: BlobRef) -> None:
        """BlobChangedError if ``ref``'s blob now has another eTag, BlobMissingError if it is gone (one HEAD)."""
        current = self.ref(ref.container, ref.name)
        if quoted_etag(current.etag) != quoted_etag(ref.etag):
            raise BlobChangedError.of(ref)

    def sha256(self, ref: BlobRef) -> str:
        digest = hashlib.sha256()
        for chunk in self.iter_chunks(ref):
            digest.update(chunk)
        return digest.hexdigest()

    def read_bytes(self, ref: BlobRef) -> bytes:
        """The whole blob; only for small blobs (reports, manifests)."""
        return b"".join(self.iter_chunks(ref))

    # ----------------------------------------------------------------- quarantine

    def quarantine(self, ref: BlobRef, report: Mapping[str, Any], remove_source: bool = True) -> QuarantineRecord:
        """Copy ``ref`` to ``quarantine/<model>/…`` with ``<blob>.report.json`` beside it; then drop the original.

        Streams the copy (no whole-blob download) and deletes the source only if it is
        still the version that was validated, so a newer upload is never lost. A name already
        holding another version's quarantined copy (Monday's bad ``daily.csv``, then Tuesday's) is
        not overwritten: this version goes beside it under its eTag (the landing original is gone).
        """
        source = self.path(ref.container, ref.name)
        target = self._service.get_blob_client(QUARANTINE, self._quarantine_name(source.name, ref.etag))
        target.upload_blob(
            self.open(ref),
            length=ref.size,
            overwrite=True,
            content_settings=ContentSettings(content_type=ref.content_type),
            metadata={"source_url": ref.url[:1024], "source_etag": ref.etag},
        )
        report_client = self._service.get_blob_client(QUARANTINE, f"{target.blob_name}.report.json")
        report_client.upload_blob(
            json.dumps(dict(report), indent=2, default=str).encode(),
            overwrite=True,
            content_settings=ContentSettings(content_type="application/json"),
        )
        if remove_source:
            # Overwritten meanwhile (the new version gets its own event) or already gone (a retry): keep it.
            with contextlib.suppress(ResourceModifiedError, ResourceNotFoundError):
                self._service.get_blob_client(ref.container, ref.name).delete_blob(
                    etag=ref.etag, match_condition=MatchConditions.IfNotModified
                )
        return QuarantineRecord(blob=_ref(target), report=_ref(report_client), source=ref)

    def _quarantine_name(self, name: str, etag: str) -> str:
        """``name``, unless it holds another version's copy already: then ``<stem>.<eTag><suffix>``. A retry of the
        same version finds its own copy (metadata ``source_etag``) and writes it again."""
        try:
            held = self._service.get_blob_client(QUARANTINE, name).get_blob_properties().metadata.get("source_etag")
        except ResourceNotFoundError:
            return name
        return name if held in (None, etag) else _versioned_name(name, etag)

    def quarantined(self, ref: BlobRef) -> QuarantineRecord | None:
        """Where this version of ``ref`` was quarantined (its copy and report), or None. A retried validation finds
        its verdict here: the first attempt quarantined the blob, so landing no longer has it."""
        source = self.path(ref.container, ref.name)
        for name in (source.name, _versioned_name(source.name, ref.etag)):
            copy = self._service.get_blob_client(QUARANTINE, name)
            try:
                if copy.get_blob_properties().metadata.get("source_etag") != ref.etag:
                    continue
                report = _ref(self._service.get_blob_client(QUARANTINE, f"{name}.report.json"))
            except (ResourceNotFoundError, BlobMissingError):
                continue
            return QuarantineRecord(blob=_ref(copy), report=report, source=ref)
        return None

    def quarantine_report(self, model: str, relative: str) -> dict[str, Any]:
        ref = self.ref(QUARANTINE, f"{model}/{relative}.report.json")
        loaded: dict[str, Any] = json.loads(self.read_bytes(ref))
        return loaded

    # ----------------------------------------------------------------- manifests

    def manifest_entry(self, ref: BlobRef, sha256: str | None = None) -> ManifestEntry:
        """``ref``'s manifest line. With ``sha256`` (taken when the version was validated: :meth:`open_hashed`), one
        HEAD checks the version is still there; without, the blob is hashed (streaming). BlobChangedError or
        BlobMissingError when the version is gone."""
        if sha256 is None:
            sha256 = self.sha256(ref)
        else:
            self.check_unchanged(ref)
        return ManifestEntry(name=ref.name, url=ref.url, etag=ref.etag, size=ref.size, sha256=sha256)

    def write_manifest(self, manifest: Manifest) -> tuple[Manifest, str]:
        """Write ``manifests/<model>/<run>.json`` once; a second write returns the first (idempotent retries)."""
        name = self._manifest_name(manifest.model, manifest.run_id)
        client = self._service.get_blob_client(MANIFESTS, name)
        try:
            client.upload_blob(
                manifest.to_json().encode(),
                overwrite=False,
                content_settings=ContentSettings(content_type="application/json"),
            )
        except ResourceExistsError:
            return self.read_manifest(manifest.model, manifest.run_id), client.url
        return manifest, client.url

    def read_manifest(self, model: str, run_id: str) -> Manifest:
        return self.stored_manifest(model, run_id).manifest

    def stored_manifest(self, model: str, run_id: str) -> StoredManifest:
        """The run's manifest with its url and the sha256 of its bytes as stored (what lineage pins)."""
        name = self._manifest_name(model, run_id)
        client = self._service.get_blob_client(MANIFESTS, name)
        try:
            data = client.download_blob().readall()
        except ResourceNotFoundError:
            raise BlobMissingError(
                f"no manifest {MANIFESTS}/{name}", "the run has not reached data selection yet, or the id is wrong"
            ) from None
        return StoredManifest(Manifest.from_json(data), client.url, hashlib.sha256(data).hexdigest())

    def manifest_url(self, model: str, run_id: str) -> str:
        return self._service.get_blob_client(MANIFESTS, self._manifest_name(model, run_id)).url

    def _manifest_name(self, model: str, run_id: str) -> str:
        return self.path(MANIFESTS, f"{model}/{run_id}.json").name

    # ----------------------------------------------------------------- small JSON documents

    def put_json(self, container: str, name: str, document: Any) -> str:
        """Write a small JSON document at ``<container>/<model>/…`` (validated name); returns its URL."""
        path = self.path(container, name)
        client = self._service.get_blob_client(container, path.name)
        client.upload_blob(
            json.dumps(document, indent=2, sort_keys=True, default=str).encode(),
            overwrite=True,
            content_settings=ContentSettings(content_type="application/json"),
        )
        return client.url

    def get_json(self, container: str, name: str) -> Any:
        """Read a small JSON document written by :meth:`put_json` (BlobMissingError if absent)."""
        return json.loads(self.read_bytes(self.ref(container, name)))

    def put_json_once(self, container: str, name: str, document: Any) -> bool:
        """Write a small JSON document only if none is there yet (``If-None-Match: *``): True if this call wrote
        it, False if it existed. A claim two racing writers cannot both win."""
        path = self.path(container, name)
        client = self._service.get_blob_client(container, path.name)
        try:
            client.upload_blob(
                json.dumps(document, indent=2, sort_keys=True, default=str).encode(),
                overwrite=False,
                content_settings=ContentSettings(content_type="application/json"),
            )
        except ResourceExistsError:
            return False
        return True

    def delete(self, container: str, name: str) -> None:
        """Delete a blob if it is there (a validated name)."""
        path = self.path(container, name)
        with contextlib.suppress(ResourceNotFoundError):
            self._service.get_blob_client(container, path.name).delete_blob()

    # ----------------------------------------------------------------- feedback (delayed labels)

    def upload_feedback(self, model: str, relative: str, data: bytes | IO[bytes], *, overwrite: bool = True) -> BlobRef:
        """Put labels under ``feedback/<model>/<relative>`` (.csv or .jsonl; ``perennial feedback``, tests and the
        demo). ``overwrite=False``: ResourceExistsError when the name is taken."""
        path = self.path(FEEDBACK, f"{model}/{relative}")
        if not path.name.endswith(FEEDBACK_SUFFIXES):
            raise BlobNameError(f"feedback blob {path.name!r} is neither .csv nor .jsonl", "name it <name>.csv")
        client = self._service.get_blob_client(FEEDBACK, path.name)
        kind = "text/csv" if path.name.endswith(".csv") else "application/x-ndjson"
        client.upload_blob(data, overwrite=overwrite, content_settings=ContentSettings(content_type=kind))
        return _ref(client)

    def list_feedback(self, model: str, start: datetime, end: datetime) -> list[BlobRef]:
        """Feedback blobs of ``model`` last modified in ``[start, end)``, oldest first (a later file's label for
        the same request wins). Other file kinds are ignored."""
        if model not in self.known_models:
            raise BlobNameError(f"unknown model {model!r}", f"use one of {sorted(self.known_models)}", "model")
        client = self.container(FEEDBACK)
        found: list[tuple[datetime, BlobRef]] = []
        try:
            for item in _feedback_listing(client, model, start):
                modified = item.last_modified
                if not item.name.endswith(FEEDBACK_SUFFIXES) or modified is None or not start <= modified < end:
                    continue
                try:
                    self.path(FEEDBACK, item.name)
                except BlobNameError:
                    continue
                found.append((modified, _listed_ref(client, item)))
        except ResourceNotFoundError:
            return []  # no feedback container yet: no labels
        return [ref for _, ref in sorted(found, key=lambda pair: (pair[0], pair[1].name))]

    def iter_feedback(self, model: str, start: datetime, end: datetime) -> Iterator[FeedbackLabel]:
        """Stream the labels of every feedback blob of ``model`` modified in ``[start, end)``, blob by blob.

        CSV needs a header with ``request_id`` and ``label`` (``row`` optional, default 0); JSONL one object per
        line with the same keys. Rows without a request id or label, or with a bad row number, are skipped and
        counted in a warning; so is a blob that is overwritten or deleted while it is read."""
        for ref in self.list_feedback(model, start, end):
            skipped = 0
            try:
                for parsed in feedback_rows(self.open(ref), ref.name):
                    if parsed is None:
                        skipped += 1
                    else:
                        yield parsed
            except FeedbackHeaderError as exc:
                logger.warning("feedback blob %s", exc)
            except (BlobChangedError, BlobMissingError) as exc:
                logger.warning("feedback blob %s was not read to the end: %s", ref.name, exc)
            except (UnicodeDecodeError, csv.Error) as exc:
                logger.warning("feedback blob %s is not UTF-8 CSV/JSON lines: %s", ref.name, exc)
            if skipped:
                logger.warning(
                    "feedback blob %s: skipped %d row(s) without a request_id and label (or with a bad row)",
                    ref.name,
                    skipped,
                )

    # ----------------------------------------------------------------- payloads (table spill-over)

    def put_payload(self, name: str, data: bytes) -> str:
        """Store a large table value; returns the pointer kept in the entity (``payloads/<name>``)."""
        self._check_payload_name(name)
        client = self._service.get_blob_client(PAYLOADS, name)
        try:
            client.upload_blob(data, overwrite=True)
        except ResourceNotFoundError:
            # A fresh local account without the container (infra/ creates it in Azure).
            with contextlib.suppress(ResourceExistsError):
                self._service.create_container(PAYLOADS)
            client.upload_blob(data, overwrite=True)
        return f"{PAYLOADS}/{name}"

    def get_payload(self, pointer: str) -> bytes:
        container, _, name = pointer.partition("/")
        if container != PAYLOADS:
            raise StorageError(f"payload pointer {pointer!r} is not in {PAYLOADS}/", "the entity is corrupt")
        self._check_payload_name(name)
        try:
            data: bytes = self._service.get_blob_client(PAYLOADS, name).download_blob().readall()
        except ResourceNotFoundError:
            raise BlobMissingError(
                f"payload {pointer} is missing", "it was deleted; the record is incomplete"
            ) from None
        return data

    @staticmethod
    def _check_payload_name(name: str) -> None:
        segments = name.split("/")
        if not name or name.startswith("/") or any(s in ("", ".", "..") for s in segments) or "\\" in name:
            raise BlobNameError(f"payload name {name!r} is unsafe", "use <table>/<partition>/<row>/<property>")
