"""Feedback blobs (delayed labels) on Azurite: formats, bad rows, the time window, and the rollout's counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.blobpaths import BlobNameError
from shared.feedback import feedback_label
from shared.live import live_counts
from shared.platform.local import LocalPlatform
from shared.spec import ModelSpec
from shared.storage import FEEDBACK, BlobStore, FeedbackLabel, feedback_day_folder
from tests.live.conftest import ENDPOINT, Scored, settle, write_scored

pytestmark = pytest.mark.azurite


def test_csv_and_jsonl_labels_stream_with_bad_rows_skipped(
    store: BlobStore, model: str, caplog: pytest.LogCaptureFixture
) -> None:
    start = datetime.now(UTC) - timedelta(seconds=2)
    store.upload_feedback(model, "day-1.csv", b"request_id,label\nr1,1\nr2,0\n,1\nr3,\n")
    store.upload_feedback(
        model,
        "batch/day-2.jsonl",
        b'{"request_id": "r4", "label": true, "row": 2}\n\nnot json\n[1]\n'
        b'{"request_id": "r5", "label": 0, "row": "x"}\n',
    )
    store.upload_feedback(
        model, "multi.csv", "\ufeffrequest_id,row,label\nr6,1,fraud\n".encode()
    )  # a BOM, as Excel writes
    store.upload_feedback(model, "no-header.csv", b"r7,1\n")
    store.container(FEEDBACK).upload_blob(f"{model}/notes.txt", b"request_id,label\nr8,1\n")
    settle()
    labels = list(store.iter_feedback(model, start, datetime.now(UTC)))
    assert sorted((f.request_id, f.row, f.label) for f in labels) == [
        ("r1", 0, "1"),
        ("r2", 0, "0"),
        ("r4", 2, "true"),
        ("r6", 1, "fraud"),
    ]
    assert {f.blob for f in labels} >= {f"{model}/day-1.csv", f"{model}/batch/day-2.jsonl"}
    assert "skipped 2 row(s)" in caplog.text  # day-1.csv: a row without an id, one without a label
    assert "skipped 3 row(s)" in caplog.text  # day-2.jsonl: not json, not an object, a bad row number
    assert "no request_id and label columns" in caplog.text


def test_only_blobs_modified_in_the_window_are_read(store: BlobStore, model: str) -> None:
    store.upload_feedback(model, "old.csv", b"request_id,label\nold,1\n")
    settle()
    middle = datetime.now(UTC)
    settle()  # last-modified times are whole seconds: the new blob's must not round down below `middle`
    store.upload_feedback(model, "new.csv", b"request_id,label\nnew,1\n")
    settle()
    assert [f.request_id for f in store.iter_feedback(model, middle, datetime.now(UTC))] == ["new"]
    assert [f.request_id for f in store.iter_feedback(model, middle - timedelta(hours=1), middle)] == ["old"]
    # Oldest first, so a later correction of the same request wins in the join.
    assert [f.request_id for f in store.iter_feedback(model, middle - timedelta(hours=1), datetime.now(UTC))] == [
        "old",
        "new",
    ]


def test_upload_day_folders_of_days_before_the_window_are_not_listed(store: BlobStore, model: str) -> None:
    """`perennial feedback` puts a file in by-upload-day/<its upload's UTC day>/; a live check lists only the days
    of its window there (a day's slack), so it does not walk a year of labels every hour. A producer's own folders,
    named by any date, and a folder that only looks like a day, are listed as before."""
    start = datetime.now(UTC) - timedelta(seconds=2)
    today, yesterday = feedback_day_folder(start), feedback_day_folder(start - timedelta(days=1))
    assert today.startswith("by-upload-day/")
    for folder, request_id in [
        (today, "today"), (yesterday, "slack"), ("by-upload-day/2020-01-01", "old-upload-day"),
        ("by-upload-day/2020-13-45", "not-a-day"), ("by-upload-day", "loose"),
        ("2020-01-01", "producer-day"), ("batch", "batch"),
    ]:  # fmt: skip
        store.upload_feedback(model, f"{folder}/labels.csv", f"request_id,label\n{request_id},1\n".encode())
    settle()
    read = sorted(f.request_id for f in store.iter_feedback(model, start, datetime.now(UTC)))
    # by-upload-day/2020-01-01/ was written just now, so only its folder's day keeps it out.
    assert read == ["batch", "loose", "not-a-day", "producer-day", "slack", "today"]
    since_2019 = store.iter_feedback(model, datetime(2019, 12, 31, tzinfo=UTC), datetime.now(UTC))
    assert "old-upload-day" in [f.request_id for f in since_2019], "a window that covers the day lists its folder"


def test_many_producer_folders_are_read_in_one_listing(store: BlobStore, model: str) -> None:
    """A producer writing an hourly folder would otherwise cost one listing per folder, every check."""
    start = datetime.now(UTC) - timedelta(seconds=2)
    for hour in range(25):
        store.upload_feedback(model, f"2026-11-30T{hour:02d}/labels.csv", f"request_id,label\nh{hour},1\n".encode())
    store.upload_feedback(model, f"{feedback_day_folder(start)}/labels.csv", b"request_id,label\nup,1\n")
    settle()
    read = [f.request_id for f in store.iter_feedback(model, start, datetime.now(UTC))]
    assert sorted(read) == sorted([f"h{hour}" for hour in range(25)] + ["up"]), "each file once"


def test_a_hostile_feedback_line_is_skipped_not_raised(store: BlobStore, model: str) -> None:
    """A label producer's file is input like any other: a line nested past the JSON parser's depth, or one far longer
    than a label, is a skipped row, so it cannot stop every bake's analysis and the hourly check."""
    start = datetime.now(UTC) - timedelta(seconds=2)
    store.upload_feedback(
        model,
        "hostile.jsonl",
        b"[" * 50_000 + b"\n" + b'{"request_id": "' + b"x" * 200_000 + b'", "label": 1}\n'
        b'{"request_id": "ok-1", "label": 1}\n',
    )
    store.upload_feedback(
        model, "hostile.csv", b"request_id,label\n" + b"," * 200_000 + b"\n" + b"x" * 70_000 + b",1\nok-2,0\n"
    )
    settle()
    labels = list(store.iter_feedback(model, start, datetime.now(UTC)))
    assert [f.request_id for f in labels if f.blob.endswith("hostile.jsonl")] == ["ok-1"]
    assert [f.request_id for f in labels if f.blob.endswith("hostile.csv")] == ["ok-2"], "long CSV lines read past"


def test_feedback_names_are_checked(store: BlobStore, model: str) -> None:
    with pytest.raises(BlobNameError):
        store.upload_feedback(model, "labels.parquet", b"")
    with pytest.raises(BlobNameError):
        store.upload_feedback(model, "../escape.csv", b"")
    with pytest.raises(BlobNameError):
        list(store.iter_feedback("someone-else", datetime.now(UTC), datetime.now(UTC)))


def test_live_counts_for_the_rollout(store: BlobStore, spec: ModelSpec, platform: LocalPlatform) -> None:
    """What rollout_analyse calls: (labelled, correct) per deployment for the bake window."""
    start = datetime.now(UTC) - timedelta(minutes=30)
    write_scored(
        platform,
        "fraud-v2",
        [
            Scored("a", start + timedelta(minutes=1), [{"amount": 1.0}], [1]),
            Scored("b", start + timedelta(minutes=2), [{"amount": 2.0}, {"amount": 3.0}], [0, 1]),
            Scored("c", start + timedelta(minutes=3), [{"amount": 4.0}], [0]),
            Scored("m", start + timedelta(minutes=4), [{"amount": 4.0}], [1], mirrored=True),
            Scored("late", start - timedelta(minutes=5), [{"amount": 4.0}], [1]),  # before the window
        ],
    )
    write_scored(platform, "fraud-v1", [Scored("a", start + timedelta(minutes=1), [{"amount": 1.0}], [0])])
    store.upload_feedback(spec.name, "labels.csv", b"request_id,row,label\na,0,1\nb,0,0\nb,1,0\nm,0,1\nlate,0,1\n")
    settle()
    end = datetime.now(UTC)
    assert live_counts(platform, store, spec.name, ENDPOINT, "fraud-v2", start, end, spec=spec) == (3, 2)
    assert live_counts(platform, store, spec.name, ENDPOINT, "fraud-v1", start, end, spec=spec) == (1, 0)
    shadow = live_counts(platform, store, spec.name, ENDPOINT, "fraud-v2", start, end, spec=spec, include_mirrored=True)
    assert shadow == (4, 3)
    # Labels that landed after the window's end are not counted yet.
    assert live_counts(
        platform, store, spec.name, ENDPOINT, "fraud-v2", start, start + timedelta(minutes=5), spec=spec
    ) == (0, 0)


def test_feedback_label_defaults() -> None:
    assert FeedbackLabel("r", "1").row == 0


@pytest.mark.parametrize(
    ("row", "read"),
    [(None, 0), ("", 0), (3, 3), ("3", 3), (" 7 ", 7), ("1_0", None), ("１", None), ("-1", None), (-1, None),
     (True, None), ("2.0", None), ("x", None)],
)  # fmt: skip
def test_a_row_number_is_ascii_digits_or_a_whole_json_number(row: object, read: int | None) -> None:
    """int() would read "1_0" as row 10 and a full-width "１" as row 1: a label joined to a row nobody meant."""
    parsed = feedback_label({"request_id": "r", "label": "1", "row": row}, "b.jsonl")
    assert (parsed.row if parsed is not None else None) == read
