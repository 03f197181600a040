"""Events the topic refuses wait in storage and go out later: the real azure-eventgrid client over loopback HTTP
(a topic that is down, one that answers again, one that refuses an event as such), the real blob SDK on Azurite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.publish import EventGridPublisher, OutboundEvent, PublishError, RunCompleted, make_event
from shared.reliable_publish import UNSENT_FOLDER, ReliablePublisher
from shared.settings import EventGridSettings
from shared.storage import DEADLETTER, MANIFESTS, BlobStore
from tests.fake_topic import CLOSED_TOPIC, FakeTopic, fake_topic

pytestmark = pytest.mark.azurite


@pytest.fixture
def topic() -> Iterator[FakeTopic]:
    with fake_topic() as fake:
        yield fake


def _publisher(endpoint: str, store: BlobStore) -> ReliablePublisher:
    return ReliablePublisher(EventGridPublisher(EventGridSettings(endpoint, "local-key")), store)


def _completed(model: str, run_id: str) -> OutboundEvent:
    return make_event(RunCompleted(model=model, run_id=run_id, status="promoted"), event_id=f"{run_id}:completed")


def test_an_event_the_topic_cannot_take_now_waits_and_goes_out_later_with_its_id_and_time(
    store: BlobStore, model: str, topic: FakeTopic
) -> None:
    down = _publisher(CLOSED_TOPIC, store)
    first, second = _completed(model, "r1"), _completed(model, "r2")
    down.publish([first])  # no error: the run that published it has done its work
    down.publish([second])
    assert len(store.names(MANIFESTS, model, UNSENT_FOLDER)) == 2
    assert down.send_unsent(model).left == 2  # still down: nothing lost, nothing sent

    report = _publisher(topic.endpoint, store).send_unsent(model)

    assert (report.sent, report.left, report.dead_lettered) == (2, 0, 0)
    assert topic.ids() == [first.id, second.id]  # oldest first
    assert topic.received[0]["eventTime"].startswith(first.event_time.isoformat()[:19])
    assert store.names(MANIFESTS, model, UNSENT_FOLDER) == []
    assert _publisher(topic.endpoint, store).send_unsent(model).sent == 0  # sent once


def test_an_event_kept_twice_is_one_unsent_event(store: BlobStore, model: str, topic: FakeTopic) -> None:
    down = _publisher(CLOSED_TOPIC, store)
    down.publish([_completed(model, "r1")])
    down.publish([_completed(model, "r1")])  # the activity that published it was retried
    assert len(store.names(MANIFESTS, model, UNSENT_FOLDER)) == 1


def test_an_event_refused_as_such_is_dead_lettered_and_the_rest_still_go_out(
    store: BlobStore, model: str, topic: FakeTopic
) -> None:
    down = _publisher(CLOSED_TOPIC, store)
    bad, good = _completed(model, "bad"), _completed(model, "good")
    down.publish([bad, good])
    topic.refuse.add("bad")

    report = _publisher(topic.endpoint, store).send_unsent(model)

    assert (report.sent, report.dead_lettered, report.left) == (1, 1, 0)
    assert topic.ids() == [good.id]
    [letter] = store.names(DEADLETTER, model, "events")
    kept = store.get_json(DEADLETTER, letter)
    assert kept["event"]["id"] == bad.id
    assert "400" in kept["error"]
    assert store.names(MANIFESTS, model, UNSENT_FOLDER) == []
    counts = _publisher(topic.endpoint, store)
    assert (counts.unsent_count(model), counts.refused_count(model)) == (0, 1)  # what GET /api/models reports


def test_a_refused_event_moved_back_to_unsent_goes_out_again(store: BlobStore, model: str, topic: FakeTopic) -> None:
    _publisher(CLOSED_TOPIC, store).publish([_completed(model, "bad")])
    topic.refuse.add("bad")
    _publisher(topic.endpoint, store).send_unsent(model)
    [letter] = store.names(DEADLETTER, model, "events")
    topic.refuse.clear()  # the operator fixed what the topic's answer named

    # What `perennial models` tells the operator to do: move the dead letter back.
    store.put_json(MANIFESTS, f"{model}/{UNSENT_FOLDER}/{letter.rsplit('/', 1)[1]}", store.get_json(DEADLETTER, letter))
    store.delete(DEADLETTER, letter)

    assert _publisher(topic.endpoint, store).send_unsent(model).sent == 1
    assert topic.ids() == [_completed(model, "bad").id]


def test_the_topic_refusing_an_event_is_a_permanent_error_and_an_outage_is_not(topic: FakeTopic, model: str) -> None:
    topic.refuse.add("bad")
    with pytest.raises(PublishError) as refused:
        EventGridPublisher(EventGridSettings(topic.endpoint, "k")).publish([_completed(model, "bad")])
    with pytest.raises(PublishError) as unreachable:
        EventGridPublisher(EventGridSettings(CLOSED_TOPIC, "k")).publish([_completed(model, "r1")])
    assert refused.value.permanent
    assert not unreachable.value.permanent


def test_when_storage_cannot_keep_the_event_either_the_topic_error_reaches_the_caller(
    store: BlobStore, topic: FakeTopic
) -> None:
    # An event for a model this store does not know cannot be kept (its name is refused): the caller must see
    # the failure, so that its retry, not silence, decides what happens to the event.
    down = _publisher(CLOSED_TOPIC, store)
    with pytest.raises(PublishError, match="cannot reach Event Grid"):
        down.publish([_completed("not-a-known-model", "r1")])


def test_a_document_that_is_not_a_kept_event_does_not_stop_the_others(
    store: BlobStore, model: str, topic: FakeTopic
) -> None:
    store.put_json(MANIFESTS, f"{model}/{UNSENT_FOLDER}/0000-not-an-event.json", {"hello": "world"})
    _publisher(CLOSED_TOPIC, store).publish([_completed(model, "r1")])

    report = _publisher(topic.endpoint, store).send_unsent(model)

    assert report.sent == 1
    assert topic.ids() == ["r1:completed"]
    assert store.names(MANIFESTS, model, UNSENT_FOLDER) == [f"{model}/{UNSENT_FOLDER}/0000-not-an-event.json"]
