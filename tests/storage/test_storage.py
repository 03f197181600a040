"""Blob storage through the real SDK against Azurite: layout, name safety, streaming, quarantine, manifests."""

from __future__ import annotations

import csv
import hashlib
import io

import pytest
from azure.storage.blob import BlobServiceClient

from shared.blobpaths import BlobNameError, split_blob_url, subject_blob, validate_blob_name
from shared.storage import (
    CONTAINERS,
    LANDING,
    QUARANTINE,
    BlobChangedError,
    BlobMissingError,
    BlobStore,
    Manifest,
)

pytestmark = pytest.mark.azurite


@pytest.mark.parametrize(
    "name",
    [
        "",
        "/fraud/a.csv",
        "fraud/../other/a.csv",
        "fraud/./a.csv",
        "fraud//a.csv",
        "fraud\\a.csv",
        "fraud/a\x00.csv",
        "fraud",
        "unknown/a.csv",
        "x" * 1025,
    ],
)
def test_unsafe_or_foreign_blob_names_are_refused(name: str) -> None:
    with pytest.raises(BlobNameError) as info:
        validate_blob_name(name, {"fraud"})
    assert info.value.hint


def test_valid_name_gives_model_and_relative_path() -> None:
    path = validate_blob_name("fraud/2026/11/batch-1.csv", {"fraud"})
    assert (path.container, path.model, path.relative, path.name) == (
        "landing",
        "fraud",
        "2026/11/batch-1.csv",
        "fraud/2026/11/batch-1.csv",
    )


def test_blob_urls_split_for_azure_and_azurite() -> None:
    assert split_blob_url("https://acct.blob.core.windows.net/landing/fraud/a%20b.csv") == ("landing", "fraud/a b.csv")
    assert split_blob_url("http://127.0.0.1:10000/devstoreaccount1/landing/fraud/x.csv") == ("landing", "fraud/x.csv")
    assert subject_blob("/blobServices/default/containers/landing/blobs/fraud/x.csv") == ("landing", "fraud/x.csv")
    with pytest.raises(BlobNameError):
        split_blob_url("ftp://host/landing/x")


def test_containers_are_the_agreed_names(store: BlobStore, azurite_connection_string: str) -> None:
    # The containers issue 4 agreed on; later features may add more (infra/ must create each: tests/infra).
    assert {"landing", "quarantine", "manifests", "payloads", "deadletter", "verdicts"} <= set(CONTAINERS)
    assert len(set(CONTAINERS)) == len(CONTAINERS)
    names = {c.name for c in BlobServiceClient.from_connection_string(azurite_connection_string).list_containers()}
    assert set(CONTAINERS) <= names


def test_upload_then_stream_in_bounded_chunks(store: BlobStore, model: str) -> None:
    data = b"".join(f"{i},{i * 7 % 13},{i % 2}\n".encode() for i in range(40_000))  # ~400 KiB
    ref = store.upload_landing(model, "2026/batch.csv", data)
    assert (ref.container, ref.name, ref.size) == (LANDING, f"{model}/2026/batch.csv", len(data))
    assert ref.etag
    assert ref.url.endswith(f"/landing/{model}/2026/batch.csv")
    chunks = list(store.iter_chunks(ref))
    assert len(chunks) > 3, "a large blob must arrive in several chunks"
    assert max(len(c) for c in chunks) <= 64 * 1024, "no chunk may exceed the configured chunk size"
    assert b"".join(chunks) == data
    rows = list(csv.reader(io.TextIOWrapper(store.open(ref), encoding="utf-8")))
    assert len(rows) == 40_000
    assert rows[-1] == ["39999", str(39999 * 7 % 13), "1"]


def test_reading_an_overwritten_blob_is_detected(store: BlobStore, model: str) -> None:
    old = store.upload_landing(model, "a.csv", b"x,y\n1,2\n")
    new = store.upload_landing(model, "a.csv", b"x,y\n3,4\n")
    assert old.etag != new.etag
    with pytest.raises(BlobChangedError):
        store.read_bytes(old)
    assert store.read_bytes(new) == b"x,y\n3,4\n"


def test_reading_a_missing_blob_says_so(store: BlobStore, model: str) -> None:
    with pytest.raises(BlobMissingError):
        store.ref(LANDING, f"{model}/never.csv")


def test_quarantine_moves_blob_and_writes_report_beside_it(store: BlobStore, model: str) -> None:
    ref = store.upload_landing(model, "bad/batch.csv", b"a,b\n1,\n")
    record = store.quarantine(ref, {"ok": False, "errors": ["b: null in required column"]})
    assert (record.blob.container, record.blob.name) == (QUARANTINE, f"{model}/bad/batch.csv")
    assert record.report.name == f"{model}/bad/batch.csv.report.json"
    assert store.read_bytes(record.blob) == b"a,b\n1,\n"
    assert store.quarantine_report(model, "bad/batch.csv")["errors"] == ["b: null in required column"]
    assert store.list_landing(model) == []


def test_a_blob_with_an_unsafe_name_is_left_out_of_the_landing_listing(
    store: BlobStore, model: str, caplog: pytest.LogCaptureFixture
) -> None:
    store.upload_landing(model, "good.csv", b"v\n1\n")
    store.container(LANDING).upload_blob(f"{model}//poison.csv", b"v\n2\n")  # storage accepts the name
    with caplog.at_level("WARNING", logger="perennial.storage"):
        listed = store.list_landing(model)
    assert [ref.name for ref in listed] == [f"{model}/good.csv"], "one such blob must not fail every run"
    assert f"landing/{model}//poison.csv is left out of training" in caplog.text


def test_quarantine_keeps_a_newer_upload_in_landing(store: BlobStore, model: str) -> None:
    old = store.upload_landing(model, "batch.csv", b"bad")
    store.upload_landing(model, "batch.csv", b"good,newer")
    with pytest.raises(BlobChangedError):
        store.quarantine(old, {"ok": False})
    [still] = store.list_landing(model)
    assert store.read_bytes(still) == b"good,newer"


def test_manifest_pins_exact_blobs_and_is_written_once(store: BlobStore, model: str) -> None:
    refs = [store.upload_landing(model, f"b{i}.csv", f"v\n{i}\n".encode()) for i in range(3)]
    entries = tuple(store.manifest_entry(r) for r in refs)
    first, url = store.write_manifest(Manifest(model=model, run_id="run-1", blobs=entries))
    assert url.endswith(f"/manifests/{model}/run-1.json")
    retry, _ = store.write_manifest(Manifest(model=model, run_id="run-1", blobs=entries[:1]))
    assert retry == first, "a retried activity must get the first manifest back, not overwrite it"
    loaded = store.read_manifest(model, "run-1")
    assert loaded == first
    assert loaded.total_bytes == sum(r.size for r in refs)
    assert loaded.blobs[0].sha256 == hashlib.sha256(b"v\n0\n").hexdigest()
    assert [b.etag for b in loaded.blobs] == [r.etag for r in refs]


def test_manifest_run_id_cannot_escape_its_folder(store: BlobStore, model: str) -> None:
    with pytest.raises(BlobNameError):
        store.read_manifest(model, "../../landing/x")


def test_json_documents_round_trip_under_a_model_folder(store: BlobStore, model: str) -> None:
    url = store.put_json("manifests", f"{model}/run-9.contract.json", {"columns": ["a", "b"]})
    assert url.endswith(f"/manifests/{model}/run-9.contract.json")
    assert store.get_json("manifests", f"{model}/run-9.contract.json") == {"columns": ["a", "b"]}
    with pytest.raises(BlobNameError):
        store.put_json("manifests", "../escape.json", {})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("abc\nabcdefgh\nabcdefghi\nz", ["abc\n", "abcdefgh\n", None, "z"]),
        # CRLF: the end is not the content; a cut between \r and \n leaves a blank line, which readers skip
        ("abcdefgh\r\nabcdefghi\r\nz\r\n", ["abcdefgh\r\n", None, "\n", "z\r\n"]),
        ("abcdefghijklmnopqrstu\rz\rq", [None, "z\r", "q"]),  # bare CR ends a line too
        ("abcdefghijklmnopqrstu", [None]),  # the last line, too long, without a line end
        ("", []),
    ],
    ids=["lf", "crlf", "cr", "last", "empty"],
)
def test_bounded_lines_keep_lines_up_to_the_limit_and_read_past_longer_ones(
    text: str, expected: list[str | None]
) -> None:
    from shared.feedback import bounded_lines as _bounded_lines

    assert list(_bounded_lines(io.StringIO(text, newline=""), 8)) == expected


def test_the_store_knows_which_blob_urls_are_in_its_account(store: BlobStore, model: str) -> None:
    """An event from another account's subscription once started a run here (and claimed a blob we never had)."""
    ours = store.upload_landing(model, "a.csv", b"x,y\n1,2\n")
    assert store.holds(ours.url)
    assert store.holds(ours.url.replace("http://", "HTTP://").replace("/landing/", "/other-container/"))
    account = ours.url.split("/")[3]  # Azurite is path-style: http://127.0.0.1:port/<account>/<container>/…
    assert not store.holds(ours.url.replace(f"/{account}/", "/someoneelse/", 1))
    assert not store.holds(f"https://otheraccount.blob.core.windows.net/landing/{model}/a.csv")


AZURE_EVENT_URLS = [
    "https://stx.blob.core.windows.net/landing/fraud/a.csv",
    "https://stx.dfs.core.windows.net/landing/fraud/a.csv",
]


@pytest.mark.parametrize(
    "service",
    [
        BlobServiceClient("https://stx.blob.core.windows.net/"),
        BlobServiceClient("https://STX.blob.core.windows.net:443"),
        BlobServiceClient("https://stx.privatelink.blob.core.windows.net"),  # a private endpoint's name
        BlobServiceClient("https://stx.dfs.core.windows.net"),
        BlobServiceClient.from_connection_string(
            "DefaultEndpointsProtocol=https;AccountName=stx;AccountKey=a2V5;BlobEndpoint=https://data.contoso.com/"
        ),  # a custom domain, with the account named
        BlobServiceClient("https://data.contoso.com"),  # a custom domain alone: cannot tell, so taken as ours
    ],
    ids=["blob", "port-and-case", "privatelink", "dfs", "custom-domain-named", "custom-domain-alone"],
)
def test_azures_own_event_urls_are_ours_however_the_app_reaches_its_account(service: BlobServiceClient) -> None:
    """Dropping a real event would stop ingestion without an error: every way the app may be configured to reach
    account stx takes the urls Azure's events carry for it (https://stx.blob… and, from Data Lake, .dfs.)."""
    store = BlobStore(service, known_models={"fraud"})
    assert [store.holds(url) for url in AZURE_EVENT_URLS] == [True, True]
    if service.account_name:
        assert not store.holds("https://other.blob.core.windows.net/landing/fraud/a.csv")


def test_a_blob_account_is_the_account_name() -> None:
    from shared.blobpaths import blob_account

    assert blob_account("https://Acct.blob.core.windows.net/landing/fraud/a.csv") == "acct"
    assert blob_account("https://acct.dfs.core.windows.net/landing/fraud/a.csv") == "acct"
    assert blob_account("https://acct.privatelink.blob.core.windows.net/landing/a.csv") == "acct"
    assert blob_account("http://127.0.0.1:10000/devstoreaccount1/landing/a.csv") == "devstoreaccount1"
    assert blob_account("http://localhost:10000/DevStoreAccount1/landing/a.csv") == "devstoreaccount1"
    assert blob_account("https://data.contoso.com/landing/a.csv") == ""
    assert blob_account("not a url") == ""
