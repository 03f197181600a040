"""Blob names Perennial trusts: validated before any use, with no SDK involved.

A blob name arrives from outside (an Event Grid subject, a URL, an HTTP body), so it is
checked before it becomes a path we read, copy or write: no ``..`` or ``.`` segments, no
absolute paths, no backslashes or control characters, and the first segment must be a
model we have a spec for (``landing/<model>/…``). Everything here is pure so the event
parser can use it without importing the storage SDK.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import Collection
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlparse

#: Azure's limit on a blob name, in characters.
MAX_BLOB_NAME = 1024
#: Container names: 3-63 lowercase letters, digits and single hyphens (Azure's rule).
_CONTAINER = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class BlobNameError(ValueError):
    """A blob name or URL is unsafe or outside Perennial's layout; ``hint`` says what a valid one looks like."""

    def __init__(self, message: str, hint: str, field: str = "blob") -> None:
        self.message = message  # without the hint: a wrapping error adds the hint itself
        self.hint = hint
        self.field = field
        super().__init__(f"{message} ({hint})")


@dataclass(frozen=True)
class BlobPath:
    """A validated ``<container>/<model>/<relative>`` location."""

    container: str
    model: str
    relative: str

    @property
    def name(self) -> str:
        """The blob name inside its container: ``<model>/<relative>``."""
        return f"{self.model}/{self.relative}"


def check_container(container: str) -> str:
    if not isinstance(container, str) or not _CONTAINER.match(container):
        raise BlobNameError(
            f"container {container!r} is not a valid container name",
            "3-63 lowercase letters, digits or single hyphens, e.g. landing",
            field="container",
        )
    return container


def validate_blob_name(name: str, known_models: Collection[str], container: str = "landing") -> BlobPath:
    """Check ``name`` (inside ``container``) and return where it sits; raise :class:`BlobNameError` if unsafe."""
    layout = f"{container}/<model>/<file>, where <model> is one of: {', '.join(sorted(known_models)) or 'none'}"
    check_container(container)
    if not isinstance(name, str) or not name:
        raise BlobNameError("the blob name is empty", f"name blobs {layout}")
    if len(name) > MAX_BLOB_NAME:
        raise BlobNameError(f"the blob name is {len(name)} characters long", f"Azure allows {MAX_BLOB_NAME}")
    if _CONTROL.search(name):
        raise BlobNameError(f"the blob name {name!r} contains control characters", "use printable characters")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise BlobNameError(f"the blob name {name!r} is not valid Unicode", "use UTF-8 text") from None
    if "\\" in name:
        raise BlobNameError(f"the blob name {name!r} contains a backslash", "separate folders with '/'")
    if name.startswith("/"):
        raise BlobNameError(f"the blob name {name!r} is an absolute path", f"name blobs {layout}")
    segments = name.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        raise BlobNameError(
            f"the blob name {name!r} has an empty, '.' or '..' segment", "use plain folder names without '..'"
        )
    if len(segments) < 2:
        raise BlobNameError(f"the blob {name!r} is not inside a model folder", f"name blobs {layout}")
    model = segments[0]
    if model not in known_models:
        raise BlobNameError(f"the blob {name!r} is under unknown model {model!r}", f"name blobs {layout}", "model")
    return BlobPath(container=container, model=model, relative="/".join(segments[1:]))


def quoted_etag(etag: str) -> str:
    """ETags in one form everywhere (``"0x8D…"``, quoted as in HTTP and Event Grid): listing returns them bare."""
    etag = etag.strip()
    return etag if etag.startswith('"') or etag.startswith("W/") else f'"{etag}"'


def split_blob_url(url: str) -> tuple[str, str]:
    """``(container, name)`` of a blob URL, for Azure (``acct.blob…/c/n``) and Azurite (``host:port/acct/c/n``)."""
    if not isinstance(url, str):
        raise BlobNameError(f"the blob url {url!r} is not a string", "give the blob's https URL", field="url")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise BlobNameError(f"the blob url {url!r} is not an http(s) URL", "give the blob's https URL", field="url")
    host = parsed.hostname or ""
    path = parsed.path.lstrip("/")
    host_style = ".blob." in host or ".dfs." in host
    parts = path.split("/", 2 if not host_style else 1)
    if not host_style:
        # Path-style (Azurite, IP endpoints): the first segment is the account name.
        parts = parts[1:]
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise BlobNameError(
            f"the blob url {url!r} names no container and blob", "expected …/<container>/<blob name>", field="url"
        )
    return unquote(parts[0]), unquote(parts[1])


def blob_account(url: str) -> str:
    """The name of the storage account a blob URL points into, in lower case: the first label of an Azure host
    (``acct.blob.core.windows.net``, ``acct.dfs…``, ``acct.privatelink.blob…``), or the first path segment of a
    path-style URL on an IP address or localhost (Azurite). "" when the URL does not say (a custom domain)."""
    parsed = urlparse(url)
    host = (parsed.hostname or "").lower() if parsed.scheme in ("http", "https") else ""
    if ".blob." in host or ".dfs." in host:
        return host.split(".", 1)[0]
    path_style = host == "localhost"
    with contextlib.suppress(ValueError):
        path_style = path_style or bool(ipaddress.ip_address(host))
    return parsed.path.lstrip("/").split("/", 1)[0].lower() if path_style else ""


def canonical_blob_url(url: str) -> str:
    """One spelling of a blob's URL, the one the storage SDK's listing gives: a Data Lake event's ``.dfs.``
    host as ``.blob.``, the host in lower case, the name percent-encoded as the SDK does it, no query. A blob is
    known by its url and eTag (dedupe keys, claims), so an event and a listing must spell it alike. A url this
    cannot split (a custom domain without the account in its path) is returned as it is."""
    try:
        container, name = split_blob_url(url)
    except BlobNameError:
        return url
    parsed = urlparse(url)
    netloc = parsed.netloc.lower().replace(".dfs.", ".blob.")
    host_style = ".blob." in netloc
    account = "" if host_style else parsed.path.lstrip("/").split("/", 1)[0] + "/"  # path style: /<account>/…
    return f"{parsed.scheme}://{netloc}/{account}{quote(container)}/{quote(name, safe='~/')}"


def subject_blob(subject: str) -> tuple[str, str]:
    """``(container, name)`` from a Blob Storage event subject ``/blobServices/default/containers/<c>/blobs/<n>``."""
    prefix = "/blobServices/default/containers/"
    if not isinstance(subject, str) or not subject.startswith(prefix) or "/blobs/" not in subject:
        raise BlobNameError(
            f"the subject {subject!r} is not a blob subject",
            "expected /blobServices/default/containers/<container>/blobs/<name>",
            field="subject",
        )
    container, _, name = subject[len(prefix) :].partition("/blobs/")
    return container, name
