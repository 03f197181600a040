"""Azure's Table limits enforced by our code (Azurite does not enforce most of them)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

from shared.registry import Registry, Run, run_id_for
from shared.storage import PAYLOADS, BlobStore
from shared.tables import MAX_ENTITY_BYTES, Operation, Table, TableLimitError, entity_size, prepare

pytestmark = pytest.mark.azurite


@pytest.fixture
def table(azurite_connection_string: str, store: BlobStore) -> Table:
    service = TableServiceClient.from_connection_string(azurite_connection_string)
    t = Table(service.get_table_client("PerennialLimitTests"), store.put_payload, store.get_payload)
    t.ensure()
    return t


def _count(table: Table, pk: str) -> int:
    return sum(1 for _ in table.query(pk))


def test_101_operation_atomic_batch_is_refused_before_the_service(table: Table, model: str) -> None:
    ops: list[Operation] = [("create", {"PartitionKey": model, "RowKey": f"r{i:03d}", "v": i}) for i in range(101)]
    with pytest.raises(TableLimitError) as info:
        table.transact(ops)
    assert "101" in str(info.value)
    assert "atomic=False" in info.value.hint
    assert _count(table, model) == 0, "nothing may be written when the batch is refused"


def test_101_operation_batch_is_split_when_atomicity_is_not_needed(table: Table, model: str) -> None:
    ops: list[Operation] = [("create", {"PartitionKey": model, "RowKey": f"r{i:03d}", "v": i}) for i in range(101)]
    table.transact(ops, atomic=False)
    assert _count(table, model) == 101


def test_batch_across_partitions_is_refused(table: Table, model: str) -> None:
    with pytest.raises(TableLimitError):
        table.transact(
            [("create", {"PartitionKey": model, "RowKey": "a"}), ("create", {"PartitionKey": "x", "RowKey": "b"})]
        )


def test_atomic_batch_rolls_back_completely(table: Table, model: str) -> None:
    table.create({"PartitionKey": model, "RowKey": "taken"})
    from shared.tables import AlreadyExistsError

    with pytest.raises(AlreadyExistsError):
        table.transact(
            [
                ("create", {"PartitionKey": model, "RowKey": "new"}),
                ("create", {"PartitionKey": model, "RowKey": "taken"}),
            ]
        )
    assert table.get(model, "new") is None


def test_entity_over_1_mib_is_spilled_to_blob_and_read_back(table: Table, model: str, store: BlobStore) -> None:
    big = "é" * (600 * 1024)  # 600 Ki characters = 1.2 MiB in UTF-16
    entity = {"PartitionKey": model, "RowKey": "big", "payload": big, "small": "kept inline"}
    assert entity_size(entity) > 1.1 * 1024 * 1024
    table.create(entity)
    raw = table.client.get_entity(model, "big")
    assert "payload" not in raw
    assert raw["payload__blob"].startswith(f"{PAYLOADS}/")
    assert raw["small"] == "kept inline"
    assert table.get(model, "big")["payload"] == big  # type: ignore[index]


def test_many_medium_strings_spill_until_the_entity_fits(model: str) -> None:
    spilled: dict[str, bytes] = {}

    def spill(name: str, data: bytes) -> str:
        spilled[name] = data
        return f"payloads/{name}"

    # 40 strings of 15 Ki characters (30 KiB each, under the per-property spill threshold): 1.2 MiB in all.
    entity: dict[str, Any] = {"PartitionKey": model, "RowKey": "r"} | {f"p{i}": "x" * 15_000 for i in range(40)}
    out = prepare(entity, "T", spill)
    assert spilled
    assert entity_size(out) <= MAX_ENTITY_BYTES


def test_entity_over_1_mib_without_a_payload_store_is_refused(model: str) -> None:
    with pytest.raises(TableLimitError) as info:
        prepare({"PartitionKey": model, "RowKey": "r", "p": "x" * (1024 * 1024)}, "T", spill=None)
    assert "payload store" in info.value.hint


def test_253_properties_are_refused_with_a_clear_error(table: Table, model: str) -> None:
    entity: dict[str, Any] = {"PartitionKey": model, "RowKey": "wide"} | {f"p{i}": i for i in range(253)}
    with pytest.raises(TableLimitError) as info:
        table.create(entity)
    assert "253 properties" in str(info.value)
    assert "252" in str(info.value)
    assert table.get(model, "wide") is None
    table.create({"PartitionKey": model, "RowKey": "ok"} | {f"p{i}": i for i in range(252)})


@pytest.mark.parametrize("key", ["a/b", "a\\b", "a#b", "a?b", "a\x01b", "", "k" * 513])
def test_bad_keys_are_refused(table: Table, model: str, key: str) -> None:
    with pytest.raises(TableLimitError):
        table.create({"PartitionKey": model, "RowKey": key})


def test_bad_property_names_and_types_are_refused(model: str) -> None:
    with pytest.raises(TableLimitError):
        prepare({"PartitionKey": model, "RowKey": "r", "has space": 1}, "T")
    with pytest.raises(TableLimitError):
        prepare({"PartitionKey": model, "RowKey": "r", "obj": object()}, "T")


def test_int64_round_trips_and_larger_ints_are_refused(table: Table, model: str) -> None:
    table.create({"PartitionKey": model, "RowKey": "ints", "small": 7, "big": 2**40, "neg": -(2**63)})
    got = table.get(model, "ints")
    assert got is not None
    assert (got["small"], got["big"], got["neg"]) == (7, 2**40, -(2**63))
    with pytest.raises(TableLimitError):
        table.create({"PartitionKey": model, "RowKey": "huge", "v": 2**63})


def test_64_kib_string_is_spilled_not_sent(table: Table, model: str) -> None:
    text = "a" * (40 * 1024)  # 80 KiB in UTF-16: Azure (and Azurite) would refuse it
    table.create({"PartitionKey": model, "RowKey": "s", "text": text})
    assert table.get(model, "s")["text"] == text  # type: ignore[index]


def test_registry_record_with_huge_reasons_round_trips(registry: Registry, model: str) -> None:
    reasons = [f"reason {i}: " + "z" * 1000 for i in range(1200)]  # ~1.2 MB of JSON
    run = registry.create_run(Run(model, run_id_for(model, "e"), "manual", "big", "e", decision_reasons=reasons))
    assert registry.require_run(model, run.run_id).decision_reasons == reasons
    saved = registry.save_run(replace(run, decision_reasons=reasons[:3]))
    assert registry.require_run(model, run.run_id) == saved


def test_a_fresh_account_gets_its_tables_on_first_write(azurite_connection_string: str, model: str) -> None:
    import uuid

    service = TableServiceClient.from_connection_string(azurite_connection_string)
    fresh = Table(service.get_table_client(f"Fresh{uuid.uuid4().hex[:8]}"))
    assert list(fresh.query(model)) == [], "reading a table that does not exist yet finds nothing"
    fresh.create({"PartitionKey": model, "RowKey": "a"})
    other = Table(service.get_table_client(f"Fresh{uuid.uuid4().hex[:8]}"))
    other.transact([("create", {"PartitionKey": model, "RowKey": "b"})])
    assert [e["RowKey"] for e in fresh.query(model)] == ["a"]
    assert [e["RowKey"] for e in other.query(model)] == ["b"]


# --------------------------------------------------------------------------- nothing reaches the service


class _Requests:
    """Every HTTP request the table client sends, recorded by azure-core's raw_request_hook."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, int]] = []

    def __call__(self, request: Any) -> None:
        http = request.http_request
        body = http.body if isinstance(http.body, bytes) else str(http.body or "").encode()
        self.sent.append((http.method, http.url, len(body)))


@pytest.fixture
def counted(azurite_connection_string: str, store: BlobStore) -> tuple[Table, _Requests]:
    requests = _Requests()
    service = TableServiceClient.from_connection_string(azurite_connection_string, raw_request_hook=requests)
    t = Table(service.get_table_client("PerennialLimitTests"), store.put_payload, store.get_payload)
    t.ensure()
    requests.sent.clear()
    return t, requests


def test_refused_batch_and_wide_entity_send_no_request(counted: tuple[Table, _Requests], model: str) -> None:
    table, requests = counted
    ops: list[Operation] = [("create", {"PartitionKey": model, "RowKey": f"r{i:03d}", "v": i}) for i in range(101)]
    with pytest.raises(TableLimitError):
        table.transact(ops)
    with pytest.raises(TableLimitError):
        table.create({"PartitionKey": model, "RowKey": "wide"} | {f"p{i}": i for i in range(253)})
    with pytest.raises(TableLimitError):
        table.create({"PartitionKey": model, "RowKey": "bad/key"})
    assert requests.sent == [], "a refused operation must not reach the service"
    # The recorder does see what is sent: a valid entity is one request.
    table.create({"PartitionKey": model, "RowKey": "fine"})
    assert len(requests.sent) == 1


def test_split_batch_sends_two_transactions_of_at_most_100(counted: tuple[Table, _Requests], model: str) -> None:
    table, requests = counted
    ops: list[Operation] = [("create", {"PartitionKey": model, "RowKey": f"r{i:03d}", "v": i}) for i in range(101)]
    table.transact(ops, atomic=False)
    batches = [r for r in requests.sent if r[0] == "POST" and r[1].rstrip("/").endswith("$batch")]
    assert len(batches) == 2
    assert _count(table, model) == 101


def test_a_1_1_mib_entity_reaches_the_service_under_1_mib(
    counted: tuple[Table, _Requests], model: str, store: BlobStore
) -> None:
    table, requests = counted
    big = "é" * (580 * 1024)  # 1.13 MiB in UTF-16
    entity = {"PartitionKey": model, "RowKey": "big11", "payload": big}
    assert entity_size(entity) > 1.1 * 1024 * 1024
    table.create(entity)
    table_requests = [r for r in requests.sent if "/PerennialLimitTests" in r[1]]
    assert len(table_requests) == 1
    assert table_requests[0][2] < 64 * 1024, "the large value went to blob, not into the table request"
    assert table.get(model, "big11")["payload"] == big  # type: ignore[index]
