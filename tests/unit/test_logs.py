from __future__ import annotations

import json
import logging

from shared.logs import JsonFormatter, correlated, correlation_id


def test_json_lines_carry_the_correlation_id_and_extras() -> None:
    formatter = JsonFormatter()
    with correlated("run-42") as cid:
        assert correlation_id() == "run-42" == cid
        record = logging.LogRecord("perennial", logging.INFO, __file__, 1, "trained %s", ("cand-1",), None)
        record.correlation_id = correlation_id()
        record.model = "fraud"
        line = json.loads(formatter.format(record))
    assert line["message"] == "trained cand-1"
    assert line["correlation_id"] == "run-42"
    assert line["model"] == "fraud"
    assert correlation_id() is None
