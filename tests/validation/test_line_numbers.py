"""A CSV finding's ``line`` is the physical line its row starts on (the header is line 1), whatever
comes before it: blank lines (not rows), quoted values spanning lines, CRLF or lone-CR line ends, and
blocks cut anywhere in the file. A line that cannot be known is None, never a guess."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shared import tabular_io
from shared.tabular_io import LineMap, _block_lines, _BlockLines
from shared.validation import ValidationReport, validate
from tests.validation.conftest import small_contract, write_csv_text
from tests.validation.test_corrupt import ForwardOnly
from tests.validation.test_places import line_of

HEADER = "id,x,n,c,b,ts,y"


def good(i: int) -> str:
    return f"r{i},{i % 100},{i % 10},a,true,,{i % 2}"


def below(key: str) -> str:
    return f"{key},-1,2,a,true,,1"  # x below the contract's minimum: an out_of_range example


def example_lines(report: ValidationReport, check: str = "out_of_range") -> list[int | None]:
    [finding] = [f for f in report.findings if f.check == check]
    return [e.line for e in finding.examples]


def test_blank_lines_after_the_header_between_rows_and_at_the_end(tmp_path: Path) -> None:
    lines = [HEADER, "", good(0), below("bad-a"), "", "", "", good(1), "", below("bad-b"), good(2), "", ""]
    path = write_csv_text(tmp_path / "blank.csv", "\n".join(lines))
    report = validate(path, small_contract())
    assert report.rows == 5
    assert example_lines(report) == [line_of(path, "bad-a"), line_of(path, "bad-b")] == [4, 10]
    assert "(lines 4, 10)" in report.summary()
    assert report.notes == []


def test_a_quoted_value_spanning_lines_before_the_bad_row(tmp_path: Path) -> None:
    lines = [
        HEADER,
        good(0),
        '"r1\nstill r1\nand still",1,2,a,true,,1',
        below("bad-a"),
        '"bad-b\nspans",-1,2,a,true,,0',
    ]
    path = write_csv_text(tmp_path / "multi.csv", "\n".join(lines) + "\n")
    report = validate(path, small_contract())
    assert report.rows == 4
    assert example_lines(report) == [line_of(path, "bad-a"), line_of(path, "bad-b")] == [6, 7]  # where a row starts


@pytest.mark.parametrize("threads", [1, 2])
def test_crlf_line_ends_with_blank_lines_and_a_value_spanning_lines(tmp_path: Path, threads: int) -> None:
    lines = [HEADER, "", good(0), '"r1\r\nsecond",1,2,a,true,,1', "", below("bad-a"), good(2), below("bad-b")]
    path = write_csv_text(tmp_path / "crlf.csv", "\r\n".join(lines) + "\r\n")
    report = validate(path, small_contract(), threads=threads)
    assert example_lines(report) == [line_of(path, "bad-a"), line_of(path, "bad-b")] == [7, 9]


def test_a_mix_of_lf_crlf_and_lone_cr_line_ends(tmp_path: Path) -> None:
    text = f'{HEADER}\r\n{good(0)}\n\r\n{good(1)}\r{below("bad-a")}\n"r2\rx",1,2,a,true,,1\r\n{below("bad-b")}'
    path = write_csv_text(tmp_path / "mixed.csv", text)
    report = validate(path, small_contract())
    # Python, Arrow and editors all end a line at \n, \r\n or a lone \r.
    assert example_lines(report) == [line_of(path, "bad-a"), line_of(path, "bad-b")] == [5, 8]


def test_a_file_whose_lines_end_with_a_lone_cr_is_refused_with_what_to_do(tmp_path: Path) -> None:
    # Old Mac exports: records are cut at \n, so the file would read as one line (it was reported as a bug).
    path = write_csv_text(tmp_path / "mac.csv", "\r".join([HEADER, good(0), below("bad-a"), good(1)]) + "\r")
    report = validate(path, small_contract())
    [finding] = [f for f in report.findings if f.check == "corrupt_input"]
    assert "lone carriage return" in finding.message
    assert "tr '\\r' '\\n'" in finding.remediation


def test_malformed_rows_and_the_rows_after_them_among_blank_lines(tmp_path: Path) -> None:
    lines = [HEADER, "", "r0,1,2", "", '"r1\nx",1,2,a,true,,1', "r2,1,2,a,true,,1,EXTRA", "", below("bad-a")]
    path = write_csv_text(tmp_path / "ragged.csv", "\n".join(lines) + "\n")
    report = validate(path, small_contract())
    assert example_lines(report, "malformed_rows") == [line_of(path, "r0,"), line_of(path, "r2,")] == [3, 7]
    assert example_lines(report) == [line_of(path, "bad-a")] == [9]
    assert report.notes == []


def big_csv(path: Path, ending: str = "\n") -> Path:
    """About 9 MiB (three 4 MiB blocks): blank lines and a value spanning lines in the first block only,
    bad rows in the first and the last."""
    pad = "p" * 40
    lines = [HEADER] + [f"r{i}{pad},{i % 100},{i % 10},a,true,,{i % 2}" for i in range(150_000)]
    lines[100] = ""
    lines[200:200] = ["", "", '"multi\nline\nkey",1,2,a,true,,1', ""]
    lines[300] = below("bad-early")
    lines[-10] = below("bad-late")
    return write_csv_text(path, ending.join(lines) + ending)


@pytest.mark.parametrize(("ending", "stream"), [("\n", False), ("\n", True), ("\r\n", False)])
def test_a_file_of_several_blocks_read_from_a_path_or_a_blob_stream(tmp_path: Path, ending: str, stream: bool) -> None:
    path = big_csv(tmp_path / "big.csv", ending)
    assert path.stat().st_size > 2 * tabular_io.CSV_BLOCK_SIZE
    report = validate(ForwardOnly(path.read_bytes()) if stream else path, small_contract())
    assert example_lines(report) == [line_of(path, "bad-early"), line_of(path, "bad-late")]


@pytest.mark.parametrize("block_size", [64, 97, 300, 1000])
@pytest.mark.parametrize("threads", [1, 3])
def test_every_row_gets_its_line_wherever_the_blocks_are_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block_size: int, threads: int
) -> None:
    monkeypatch.setattr(tabular_io, "CSV_BLOCK_SIZE", block_size)
    rng = np.random.default_rng(block_size)
    bad = (10, 40, 70, 100, 118)  # five: a finding keeps five examples
    lines = [HEADER]
    for i in range(120):
        lines += [""] * int(rng.integers(1, 4) if rng.random() < 0.3 else 0)
        if i in bad:
            lines.append(below(f"bad{i}-" if i % 20 else f'"bad{i}-\nspans"'))
        elif i % 5 == 0:
            lines.append(f'"r{i}\n\nkey",1,2,a,true,,1')
        else:
            lines.append(good(i))
    path = write_csv_text(tmp_path / "cut.csv", "\n".join(lines) + "\n")
    report = validate(path, small_contract(), threads=threads)
    assert example_lines(report) == [line_of(path, f"bad{i}-") for i in bad]


def test_a_stray_quote_leaves_its_blocks_rows_without_lines_and_later_blocks_with_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tabular_io, "CSV_BLOCK_SIZE", 300)
    lines = [HEADER, "", 'r"0"x,1,2,a,true,,1', below("bad-a")] + [good(i) for i in range(1, 40)] + [below("bad-b")]
    path = write_csv_text(tmp_path / "stray.csv", "\n".join(lines) + "\n")
    report = validate(path, small_contract())
    [finding] = [f for f in report.findings if f.check == "out_of_range"]
    assert [(e.row, e.line) for e in finding.examples] == [(1, None), (41, line_of(path, "bad-b"))]
    assert any("not known" in note for note in report.notes), report.notes
    assert "0-based row 1" in report.summary()


def test_block_lines() -> None:
    assert _block_lines(b"a,1\nb,2\n", 2) == _BlockLines(2, None)  # one line a row: nothing kept
    assert _block_lines(b"a,1\r\nb,2", 2) == _BlockLines(2, None)  # the last line may have no end
    found = _block_lines(b'\na,1\r\n\r\n"b\r\nc",2\n\rd,3\n', 3)
    assert found.lines == 7
    assert found.starts is not None
    assert found.starts.tolist() == [1, 3, 6]
    assert _block_lines(b'"""",1\n\n"a""\n",2\n', 2).starts.tolist() == [0, 2]  # type: ignore[union-attr]
    assert not _block_lines(b'a"b,1\n\nc,2\n', 2).known  # a quote inside an unquoted value
    assert not _block_lines(b"a,1\n\nb,2\n", 1).known  # Arrow found other rows than the records here


def test_line_map_keeps_steps_only_where_lines_and_rows_part(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = LineMap()
    lines.add(0, 1000, 2, _BlockLines(1000, None))
    lines.add(1000, 3, 1002, _BlockLines(5, np.array([0, 2, 3])))
    lines.add(1003, 1000, 1007, _BlockLines(1000, None, known=False))
    lines.add(2003, 10, 2007, _BlockLines(10, None))
    assert [lines.line_of(r) for r in (-1, 0, 999, 1000, 1001, 1002, 1003, 2002, 2003, 2012, 2013)] == [
        None, 2, 1001, 1002, 1004, 1005, None, None, 2007, 2016, None,
    ]  # fmt: skip
    monkeypatch.setattr(tabular_io, "MAX_LINE_STEPS", 3)
    capped = LineMap()
    capped.add(0, 2, 2, _BlockLines(3, np.array([0, 2])))
    capped.add(2, 2, 5, _BlockLines(4, np.array([1, 3])))  # two more steps: past the cap
    capped.add(4, 2, 9, _BlockLines(2, None))
    assert [capped.line_of(r) for r in range(5)] == [2, 4, None, None, None]


@pytest.mark.parametrize("ending", ["\n", "\r\n"])
def test_lines_of_spaces_and_tabs_are_blank_not_malformed(tmp_path: Path, ending: str) -> None:
    """pandas (training) skips a line of spaces or tabs as it skips an empty one: validation must not fail the
    batch for it, nor count it a row. A line of spaces and commas is still a short row."""
    lines = [HEADER, "   ", good(0), below("bad-a"), "\t", " \t ", good(1), below("bad-b"), "  ,  ", good(2), "  "]
    path = write_csv_text(tmp_path / "spaces.csv", ending.join(lines))
    report = validate(path, small_contract())
    assert report.rows == 5, "the blank lines are not rows (nor is the short one: it is malformed)"
    assert example_lines(report) == [line_of(path, "bad-a"), line_of(path, "bad-b")] == [4, 8]
    assert example_lines(report, "malformed_rows") == [9]
    assert report.notes == [], "every row's line is known"
    training = pd.read_csv(path, keep_default_na=False, dtype=str)
    assert len(training) == 6, "the rows pandas reads, the same short row included"
