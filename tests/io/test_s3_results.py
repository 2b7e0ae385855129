"""WriteEventTimeJson against the local S3 server: objects named by event time, merged, and
the same bytes whatever the order, the restarts or the replays."""

from __future__ import annotations

import itertools
import json
import random
import threading
import uuid
import zlib
from datetime import UTC, datetime, timedelta

import apache_beam as beam
import boto3
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.window import TimestampedValue

from pipeline.io.s3 import WriteEventTimeJson, _merge_into_objects, merge_jsonl, object_path

# Event times months before the run: a stream windowed by arrival would drop them as late.
EVENT_START = datetime(2025, 6, 3, 14, 0, tzinfo=UTC)  # 1748959200
ARRIVAL = datetime.now(UTC).timestamp()


@pytest.fixture
def s3(s3_config):
    """A boto3 client on the stack's S3 server."""
    return boto3.client(
        "s3",
        endpoint_url=s3_config["endpoint_url"],
        aws_access_key_id=s3_config["s3_access_key_id"],
        aws_secret_access_key=s3_config["s3_secret_access_key"],
        region_name=s3_config["s3_region_name"],
    )


@pytest.fixture
def folder(s3_config, s3):
    """A fresh folder under the bucket; its objects are deleted afterwards."""
    name = f"test-s3-{uuid.uuid4().hex[:8]}"
    yield name
    listing = s3.list_objects_v2(Bucket=s3_config["bucket"], Prefix=name).get("Contents", [])
    for obj in listing:
        s3.delete_object(Bucket=s3_config["bucket"], Key=obj["Key"])


def objects(s3, bucket: str, prefix: str) -> dict[str, bytes]:
    """Every object under ``prefix``: key relative to the prefix -> body."""
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix + "/").get("Contents", [])
    return {
        o["Key"][len(prefix) + 1 :]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
        for o in listing
    }


def tx(i: int, minute: int, name: str = "Ada", processed: str = "2026-01-01T00:00:00+00:00"):
    """``(event time, document)`` of a fraud result at ``minute`` after EVENT_START."""
    occurred = EVENT_START + timedelta(minutes=minute, seconds=i % 60)
    doc = {"transaction_id": f"t{i:03d}", "account_name": name, "risk_score": i % 100,
           "datetime_occurred": occurred.isoformat(), "processed_at": processed}
    return occurred, doc


def write(s3_config, prefix: str, dated_docs: list[tuple], arrival_step_s: float = 1.0):
    """Runs WriteEventTimeJson once (its own state: a restart has none); returns counters.

    Elements arrive with timestamps of now plus ``arrival_step_s`` per element, unrelated
    to their event times."""
    pipeline = beam.Pipeline(
        runner="FnApiRunner", options=PipelineOptions(s3_config["pipeline_args"])
    )
    stamped = [
        TimestampedValue(pair, ARRIVAL + n * arrival_step_s) for n, pair in enumerate(dated_docs)
    ]
    _ = (
        pipeline
        | beam.Create(stamped)
        | "WriteJson" >> WriteEventTimeJson(
            prefix, "transaction_id", window_s=60, num_shards=2, version_field="processed_at"
        )
    )
    result = pipeline.run()
    result.wait_until_finish()
    counters = result.metrics().query(MetricsFilter().with_namespace("riskpipe"))["counters"]
    return {c.key.metric.name: c.committed for c in counters}


def lines_of(bodies: dict[str, bytes]) -> list[dict]:
    return [json.loads(line) for body in bodies.values() for line in body.splitlines()]


def test_objects_are_named_by_event_time_one_line_per_id(s3_config, s3, folder):
    docs = [tx(i, minute=i % 3) for i in range(30)]
    docs.append(tx(4, minute=4 % 3))  # the same document twice
    counters = write(s3_config, f"s3://{s3_config['bucket']}/{folder}", list(reversed(docs)))
    stored = objects(s3, s3_config["bucket"], folder)

    window_starts = {1748959200, 1748959260, 1748959320}
    assert set(stored) == {
        object_path("", start, shard).lstrip("/") for start in window_starts for shard in (0, 1)
    }
    assert all(key.startswith("dt=2025-06-03/hour=14/part-") for key in stored)
    for key, body in stored.items():
        start = int(key.split("part-")[1].split("-")[0])
        ids = [json.loads(line)["transaction_id"] for line in body.splitlines()]
        assert ids == sorted(set(ids)), key  # one line per id, sorted
        for line in body.splitlines():
            occurred = datetime.fromisoformat(json.loads(line)["datetime_occurred"]).timestamp()
            assert start <= occurred < start + 60, (key, line)
    assert sorted(d["transaction_id"] for d in lines_of(stored)) == [f"t{i:03d}" for i in range(30)]
    assert counters["s3_objects_written"] == len(stored) == 6
    assert counters["s3_records_written"] == 31


def test_a_replay_in_another_order_rewrites_nothing_and_leaves_the_same_bytes(
    s3_config, s3, folder
):
    prefix = f"s3://{s3_config['bucket']}/{folder}"
    docs = [tx(i, minute=i % 5) for i in range(40)]
    write(s3_config, prefix, docs)
    first = objects(s3, s3_config["bucket"], folder)

    replay = docs + docs[:10]
    random.Random(7).shuffle(replay)
    counters = write(s3_config, prefix, replay, arrival_step_s=-3.0)
    assert objects(s3, s3_config["bucket"], folder) == first
    assert counters["s3_objects_written"] == 0
    assert counters["s3_objects_unchanged"] == len(first)


def test_a_restart_without_state_and_late_documents_converge_to_the_same_bytes(
    s3_config, s3, folder
):
    """One run over everything, and three runs (restarts, no shared state) over parts in
    another order, late documents last: byte-identical objects."""
    docs = [tx(i, minute=i % 4) for i in range(48)]
    whole, parts = f"{folder}/whole", f"{folder}/parts"
    write(s3_config, f"s3://{s3_config['bucket']}/{whole}", docs)
    by_minute = sorted(docs, key=lambda pair: pair[0], reverse=True)  # newest first
    for part in (by_minute[:20], by_minute[20:40], by_minute[40:]):  # the oldest arrive last
        write(s3_config, f"s3://{s3_config['bucket']}/{parts}", part)

    assert objects(s3, s3_config["bucket"], parts) == objects(s3, s3_config["bucket"], whole)


def test_a_correction_replaces_the_stored_line_and_a_recomputation_keeps_it(
    s3_config, s3, folder
):
    prefix = f"s3://{s3_config['bucket']}/{folder}"
    first_at, later_at = "2026-01-01T00:00:00+00:00", "2026-01-01T00:05:00.250000+00:00"
    write(s3_config, prefix, [tx(1, 0, "Owen Carroll", first_at), tx(2, 0, "Ada", first_at)])
    before = objects(s3, s3_config["bucket"], folder)

    # t001 corrected (a later name, emitted later); t002 recomputed identically by a replay.
    write(s3_config, prefix, [tx(1, 0, "Owen Trub", later_at), tx(2, 0, "Ada", later_at)])
    after = {d["transaction_id"]: d for d in lines_of(objects(s3, s3_config["bucket"], folder))}
    assert (after["t001"]["account_name"], after["t001"]["processed_at"]) == ("Owen Trub", later_at)
    assert after["t002"]["processed_at"] == first_at  # the stored line stayed as it was

    # The first version arriving again, late: the correction is kept.
    write(s3_config, prefix, [tx(1, 0, "Owen Carroll", first_at)])
    again = {d["transaction_id"]: d for d in lines_of(objects(s3, s3_config["bucket"], folder))}
    assert again == after
    assert set(before) == set(objects(s3, s3_config["bucket"], folder))


def test_two_writers_in_one_pipeline_each_write_all_their_documents(s3_config, s3, folder):
    """Each writer's flush timers are its own: the FnApiRunner buffers timers by name, so
    writers sharing timer names received each other's timers and left documents unwritten."""
    pipeline = beam.Pipeline(
        runner="FnApiRunner", options=PipelineOptions(s3_config["pipeline_args"])
    )
    docs = [tx(i, minute=i % 3) for i in range(12)]
    # Writer "a" has one shard (key 0); writer "b" gets only documents of its shards 1-3.
    shards = {"a": 1, "b": 4}
    written = {"a": docs, "b": [d for d in docs if zlib.crc32(d[1]["transaction_id"].encode()) % 4]}
    both = pipeline | beam.Create(docs)  # one input, two branches: as the fraud results
    for name in ("a", "b"):
        wanted = {d["transaction_id"] for _, d in written[name]}
        _ = (
            both
            | f"Keep{name}" >> beam.Filter(lambda pair, w=wanted: pair[1]["transaction_id"] in w)
            | f"Write{name}" >> WriteEventTimeJson(
                f"s3://{s3_config['bucket']}/{folder}/{name}", "transaction_id",
                num_shards=shards[name])
        )
    pipeline.run().wait_until_finish()
    for name in ("a", "b"):
        stored = lines_of(objects(s3, s3_config["bucket"], f"{folder}/{name}"))
        assert sorted(d["transaction_id"] for d in stored) == sorted(
            d["transaction_id"] for _, d in written[name]), name


def _flush_counting_requests(s3_config, prefix: str, pending: list[tuple[str, str]],
                             list_page: int = 1000):
    """One flush of ``pending`` by the real writer against the S3 server; the paths written
    and how many requests of each kind it sent."""
    fn = _merge_into_objects(prefix, "transaction_id", "processed_at", 30.0,
                             s3_config["pipeline_args"])
    fn.setup()
    fn.store.list_page = list_page
    sent: dict[str, int] = {}

    def count(model, **_):
        sent[model.name] = sent.get(model.name, 0) + 1

    fn.store._client.meta.events.register("before-call.s3", count)
    try:
        written = list(fn._flush(_Cell(pending), _Cell()))
    finally:
        fn.teardown()
    return written, sent


def test_a_flush_of_many_objects_reads_only_those_that_exist(s3_config, s3, folder):
    """A backlog's end flushes hundreds of objects, most of them new: one listing of their
    key range says which exist, and only those are read before they are rewritten."""
    prefix = f"s3://{s3_config['bucket']}/{folder}"
    paths = [f"{prefix}/dt=2025-06-03/hour=14/part-{1748959200 + 60 * n}-00.jsonl"
             for n in range(12)]
    s3.put_object(Bucket=s3_config["bucket"], Key=paths[3].split("/", 3)[3],
                  Body=b'{"processed_at": "p", "transaction_id": "old"}\n')
    s3.put_object(Bucket=s3_config["bucket"], Key=f"{folder}/dt=2025-06-03/hour=14/other",
                  Body=b"not one of the flush's objects\n")
    pending = [(path, f'{{"processed_at": "p", "transaction_id": "t{n:02d}"}}')
               for n, path in enumerate(paths)]

    written, sent = _flush_counting_requests(s3_config, prefix, pending)

    assert written == sorted(paths)
    assert sent == {"ListObjectsV2": 1, "GetObject": 1, "PutObject": 12}
    stored = objects(s3, s3_config["bucket"], folder)
    assert stored["dt=2025-06-03/hour=14/part-1748959380-00.jsonl"] == (
        b'{"processed_at": "p", "transaction_id": "old"}\n'
        b'{"processed_at": "p", "transaction_id": "t03"}\n'
    )
    assert stored["dt=2025-06-03/hour=14/part-1748959200-00.jsonl"] == (
        b'{"processed_at": "p", "transaction_id": "t00"}\n'
    )

    # The same flush again: every object exists and already holds its line.
    written, sent = _flush_counting_requests(s3_config, prefix, pending)
    assert written == []
    assert sent == {"ListObjectsV2": 1, "GetObject": 12}


def test_the_listing_pages_through_the_range_and_stops_after_its_last_key(
    s3_config, s3, folder
):
    prefix = f"s3://{s3_config['bucket']}/{folder}"
    keys = [f"{folder}/dt=2025-06-03/hour=14/part-{1748959200 + 60 * n}-00.jsonl"
            for n in range(20)]
    for key in keys[::2]:  # every other object exists, the last one too
        s3.put_object(Bucket=s3_config["bucket"], Key=key, Body=b"")
    flushed = keys[1:13]  # starts on a missing object, ends on an existing one
    pending = [(f"s3://{s3_config['bucket']}/{key}",
                f'{{"processed_at": "p", "transaction_id": "t{n:02d}"}}')
               for n, key in enumerate(flushed)]

    _, sent = _flush_counting_requests(s3_config, prefix, pending, list_page=2)

    # 12 keys from keys[1] to keys[12], 6 of them present: three pages of two, and no
    # page past keys[12]; only the present ones are read.
    assert sent == {"ListObjectsV2": 3, "GetObject": 6, "PutObject": 12}


def test_the_listing_stops_when_the_range_holds_many_other_objects(
    s3_config, s3, folder, monkeypatch
):
    """Two objects days apart with a crowd of others between: listing them all would cost
    more than reading; past its budget the listing stops and the rest are read."""
    monkeypatch.setattr("pipeline.io.s3.LISTED_KEYS_PER_READ", 5)  # 2 objects: 10 keys
    prefix = f"s3://{s3_config['bucket']}/{folder}"
    for n in range(30):
        s3.put_object(Bucket=s3_config["bucket"],
                      Key=f"{folder}/dt=2025-06-04/hour=00/part-{n:04d}", Body=b"")
    pending = [(f"{prefix}/dt=2025-06-03/hour=14/part-1748959200-00.jsonl",
                '{"processed_at": "p", "transaction_id": "a"}'),
               (f"{prefix}/dt=2025-06-05/hour=14/part-1749132000-00.jsonl",
                '{"processed_at": "p", "transaction_id": "b"}')]

    written, sent = _flush_counting_requests(s3_config, prefix, pending, list_page=4)

    # Three pages (12 keys >= 10), none past the first object: it is known to be new; the
    # second, beyond where the listing stopped, is read.
    assert sent == {"ListObjectsV2": 3, "GetObject": 1, "PutObject": 2}
    assert written == [path for path, _ in pending]


def test_a_flush_of_one_object_reads_it_without_a_listing(s3_config, s3, folder):
    prefix = f"s3://{s3_config['bucket']}/{folder}"
    path = f"{prefix}/dt=2025-06-03/hour=14/part-1748959200-00.jsonl"
    written, sent = _flush_counting_requests(
        s3_config, prefix, [(path, '{"processed_at": "p", "transaction_id": "t"}')])
    assert written == [path]
    assert sent == {"GetObject": 1, "PutObject": 1}


class _MeetingStore:
    """An object store whose reads wait until ``parties`` reads are under way at once."""

    def __init__(self, parties: int):
        self.meeting = threading.Barrier(parties, timeout=10)
        self.written: dict[str, bytes] = {}

    def may_exist(self, paths):
        return None  # unknown: each merge reads its object

    def read(self, path):
        self.meeting.wait()  # BrokenBarrierError when the reads come one after the other
        return None

    def write(self, path, body):
        self.written[path] = body

    def close(self):
        pass


class _Cell:
    def __init__(self, values=()):
        self.values = list(values)

    def read(self):
        return self.values

    def clear(self):
        self.values = []


def _flush_into(store, count: int) -> tuple[list[str], _Cell]:
    """One flush, into ``store``, of a document for each of ``count`` objects
    ``s3://b/t/part-<n>.jsonl``; the paths written and the pending cell afterwards."""
    fn = _merge_into_objects("s3://b/t", "transaction_id", "processed_at", 30.0, None)
    fn.setup()
    fn.store = store
    try:
        pending = _Cell((f"s3://b/t/part-{n}.jsonl",
                         f'{{"processed_at": "p", "transaction_id": "t{n}"}}')
                        for n in range(count))
        return list(fn._flush(pending, _Cell())), pending
    finally:
        fn.teardown()


def test_a_flush_merges_its_objects_side_by_side():
    """A backlog's end flushes hundreds of objects: each merge waits for two answers of the
    server, so they run at the same time, not one after the other."""
    store = _MeetingStore(parties=4)
    written, pending = _flush_into(store, 4)
    assert written == [f"s3://b/t/part-{n}.jsonl" for n in range(4)]
    assert store.written[written[2]] == b'{"processed_at": "p", "transaction_id": "t2"}\n'
    assert pending.read() == []


class _UnlistableStore:
    """An object store whose listing fails (the server down for a moment) and whose reads
    find one object."""

    def __init__(self, stored: dict[str, bytes]):
        self.stored, self.reads = stored, []

    def may_exist(self, paths):
        raise OSError("connection reset")

    def read(self, path):
        self.reads.append(path)
        return self.stored.get(path)

    def write(self, path, body):
        self.stored[path] = body

    def close(self):
        pass


def test_a_flush_whose_listing_fails_reads_every_object_it_writes():
    old = b'{"processed_at": "p", "transaction_id": "old"}\n'
    store = _UnlistableStore({"s3://b/t/part-1.jsonl": old})
    written, _ = _flush_into(store, 3)
    assert sorted(store.reads) == written == [f"s3://b/t/part-{n}.jsonl" for n in range(3)]
    assert store.stored["s3://b/t/part-1.jsonl"] == old + (
        b'{"processed_at": "p", "transaction_id": "t1"}\n')


def test_merge_does_not_depend_on_the_order_of_versions():
    versions = [
        '{"id": "a", "n": 1, "v": "2026-01-01T00:00:01+00:00"}',
        '{"id": "a", "n": 2, "v": "2026-01-01T00:00:03+00:00"}',
        '{"id": "a", "n": 3, "v": "2026-01-01T00:00:02+00:00"}',
        '{"id": "b", "n": 1, "v": "2026-01-01T00:00:01+00:00"}',
    ]
    results = {merge_jsonl(b"", order, "id", "v") for order in itertools.permutations(versions)}
    expected = (
        b'{"id": "a", "n": 2, "v": "2026-01-01T00:00:03+00:00"}\n'
        b'{"id": "b", "n": 1, "v": "2026-01-01T00:00:01+00:00"}\n'
    )
    assert results == {expected}


def test_merge_without_a_version_prefers_the_complete_document():
    full = '{"account_id": "u1", "account_name": "Ann", "email": "ann@example.com"}'
    bare = '{"account_id": "u1", "account_name": null, "email": null}'
    only_id = '{"account_id": "u1"}'
    for order in itertools.permutations([full, bare, only_id]):
        assert merge_jsonl(b"", order, "account_id") == (full + "\n").encode()
    assert merge_jsonl((only_id + "\n").encode(), [full], "account_id") == (full + "\n").encode()


def test_bad_parameters_are_rejected():
    with pytest.raises(ValueError, match="window_s"):
        WriteEventTimeJson("s3://b/t", "id", window_s=7)
    with pytest.raises(ValueError, match="prefix"):
        WriteEventTimeJson("b/t", "id")
    with pytest.raises(ValueError, match="flush_s"):
        WriteEventTimeJson("s3://b/t", "id", flush_s=0)
