"""Newline-delimited JSON objects on S3 (or any Beam filesystem), named by event time.

Write ``(event_time, doc)`` pairs::

    dated_users | "WriteUsersToS3" >> WriteEventTimeJson(
        "s3://riskpipe/users", id_field="account_id", window_s=60)

Each document goes to the object of its own event time and id, never to one chosen by
when it arrived: ``<prefix>/dt=YYYY-MM-DD/hour=HH/part-<window start>-<shard>.jsonl``,
where the window is the ``window_s``-second slice of event time holding ``event_time`` and
the shard a stable hash of the id. The element's own timestamp plays no part, so old event
times (a backfill, a seeded simulation) are written like new ones, never dropped as late.

Documents are keyed by shard (a path names its shard, so each object belongs to exactly
one key, and one worker at a time: a read-merge-write never races another write of the same
object within the job). A stateful step buffers each shard's new documents and flushes them
on a processing-time timer (``flush_s`` after the first one) and at the end of a bounded
input: for each object they fall in, it reads the object if it exists (a flush of several
objects lists their key range once, so new objects are not asked for one by one) and
rewrites it as the merge of its lines and the new documents (:func:`merge_jsonl`): one line
per id, sorted by id, each id's line chosen by a rule that does not depend on arrival
order. A replay, a restart without state and a late document therefore all converge to
the same object. The state is the documents waiting for the next flush, cleared by it; the
number of keys and timers is ``num_shards``, however many objects the event times touch.

The S3 endpoint and keys come from Beam's own flags (``--s3_endpoint_url``,
``--s3_access_key_id``, ``--s3_secret_access_key``, ``--s3_region_name``; needs
``apache-beam[aws]``), or from ``filesystem_args`` given to the transform.
"""

from __future__ import annotations

import json
import logging
import os
import time
import zlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import apache_beam as beam
from apache_beam import coders
from apache_beam.io.filesystem import BeamIOError, CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, S3Options
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (
    BagStateSpec,
    ReadModifyWriteStateSpec,
    TimerSpec,
    on_timer,
)
from apache_beam.utils.timestamp import Duration, Timestamp

from pipeline import metrics
from pipeline.io.batching import INITIAL_BACKOFF_S, MAX_ATTEMPTS, MAX_BACKOFF_S

__all__ = ["WriteEventTimeJson", "canonical_line", "event_seconds", "merge_jsonl", "object_path"]

logger = logging.getLogger(__name__)

DEFAULT_SHARDS = 4
DEFAULT_FLUSH_S = 30.0
# Objects of one flush merged at a time. Each merge is a GET and a PUT; one after the other,
# a flush of hundreds of objects (a backlog's end) spends most of its time waiting for the
# server's answers.
MERGE_CONCURRENCY = 8
# A listing of this many keys costs botocore about what one GET does; a flush lists its
# objects' key range for at most this many keys per object before it reads the rest.
LISTED_KEYS_PER_READ = 100
# Worth another attempt: the S3 server unreachable or failing for a while.
RETRYABLE_ERRORS = (BeamIOError, OSError)
try:  # boto3's own (apache-beam[aws]): the server unreachable, or a 5xx / throttling answer
    from botocore.exceptions import ClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    RETRYABLE_ERRORS += (BotoConnectionError, ClientError)
except ImportError:  # pragma: no cover
    ClientError = ()
try:  # the S3 client's own error type (apache-beam[aws])
    from apache_beam.io.aws.clients.s3.messages import S3ClientError

    RETRYABLE_ERRORS += (S3ClientError,)
except ImportError:  # pragma: no cover - S3 support not installed: other filesystems only
    pass


def event_seconds(value) -> float:
    """Seconds since the epoch of an event time: a datetime, an ISO-8601 string or a number.

    >>> event_seconds("2026-01-02T03:04:05Z"), event_seconds(1767323045)
    (1767323045.0, 1767323045.0)
    """
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value)
    else:
        return float(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def object_path(prefix: str, window_start_s: int, shard: int) -> str:
    """The object of one (window, shard); a pure function of its arguments.

    >>> object_path("s3://b/users", 1767323040, 3)
    's3://b/users/dt=2026-01-02/hour=03/part-1767323040-03.jsonl'
    """
    start = datetime.fromtimestamp(window_start_s, tz=UTC)
    return (
        f"{prefix.rstrip('/')}/dt={start:%Y-%m-%d}/hour={start:%H}/"
        f"part-{window_start_s}-{shard:02d}.jsonl"
    )


def canonical_line(doc: dict) -> str:
    """The one JSON text of a document: keys sorted, non-ASCII kept, no newline."""
    return json.dumps(doc, sort_keys=True, default=str, ensure_ascii=False)


def _rank(doc: dict, line: str, version_field: str | None) -> tuple:
    """Orders the versions of one id: the greatest wins (see :func:`merge_jsonl`)."""
    version = str(doc.get(version_field) or "") if version_field else ""
    filled = sum(value is not None for value in doc.values())
    return version, filled, line


def _without(doc: dict, field: str | None) -> dict:
    return {k: v for k, v in doc.items() if k != field}


def merge_jsonl(
    stored: bytes, new_lines: Iterable[str], id_field: str, version_field: str | None = None
) -> bytes:
    """An object's lines merged with new ones: one line per id, sorted by id.

    Of the versions of one id (the stored line and the new ones) the greatest by
    ``(version_field, fields that are not null, JSON text)`` wins: a correction, emitted
    later, carries a later version; without a version field, a complete document beats an
    id-only one. When the winner differs from the stored line in ``version_field`` only (a
    replay recomputed the same document), the stored line stays. The result depends on the
    set of versions, not on their order.

    >>> old = b'{"id": "a", "v": "1", "x": 1}\\n'
    >>> merge_jsonl(old, ['{"id": "b", "v": "1", "x": 2}', '{"id": "a", "v": "2", "x": 1}'],
    ...             "id", "v")
    b'{"id": "a", "v": "1", "x": 1}\\n{"id": "b", "v": "1", "x": 2}\\n'
    >>> merge_jsonl(old, ['{"id": "a", "v": "2", "x": 9}'], "id", "v")
    b'{"id": "a", "v": "2", "x": 9}\\n'
    """
    current: dict[str, tuple[dict, str]] = {}
    for raw in stored.decode("utf-8").splitlines():
        if raw.strip():
            doc = json.loads(raw)
            current[str(doc[id_field])] = (doc, raw)
    candidates: dict[str, list[tuple[dict, str]]] = {}
    for line in new_lines:
        doc = json.loads(line)
        candidates.setdefault(str(doc[id_field]), []).append((doc, line))
    for key, versions in candidates.items():
        kept = current.get(key)
        pool = versions + ([kept] if kept else [])
        best = max(pool, key=lambda version: _rank(*version, version_field))
        if kept and _without(best[0], version_field) == _without(kept[0], version_field):
            continue
        current[key] = best
    return "".join(current[key][1] + "\n" for key in sorted(current)).encode("utf-8")


class _KeyByShardFn(beam.DoFn):
    """``(event_time, doc)`` -> ``(shard, (object path, canonical JSON line))``."""

    def __init__(self, prefix: str, window_s: int, id_field: str, num_shards: int):
        self.prefix, self.window_s = prefix, window_s
        self.id_field, self.num_shards = id_field, num_shards

    def process(self, element):
        event_time, doc = element
        seconds = int(event_seconds(event_time) // self.window_s * self.window_s)
        shard = zlib.crc32(str(doc[self.id_field]).encode("utf-8")) % self.num_shards
        yield shard, (object_path(self.prefix, seconds, shard), canonical_line(doc))


def _worth_retrying(error: Exception) -> bool:
    """An S3 answer is retried only when the server failed or throttled (5xx, 429, 503
    SlowDown); a 4xx (no such bucket, access denied) is a configuration error."""
    if ClientError and isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return status >= 500 or status == 429
    return True


class _ObjectStore:
    """Reads and writes whole objects: S3 through one boto3 client kept for the DoFn's life
    (Beam's S3 filesystem builds a new client, loading botocore's JSON models, on every
    call: profiled on Flink, that was most of the writer's time), any other filesystem
    through Beam's FileSystems."""

    list_page = 1000  # keys per listing request (S3's most)

    def __init__(self, client=None, filesystem=None):
        self._client, self._filesystem = client, filesystem

    @classmethod
    def for_prefix(cls, prefix: str, filesystem_args: list[str] | None) -> "_ObjectStore":
        options = PipelineOptions(filesystem_args or [])
        if prefix.startswith("s3://") and filesystem_args is not None:
            import boto3  # apache-beam[aws]
            import botocore.session

            # Timestamps in answers stay text: nothing here reads them, and a listing's
            # LastModified, parsed by dateutil for each key, was most of a listing's cost.
            session = botocore.session.Session()
            session.get_component("response_parser_factory").set_parser_defaults(
                timestamp_parser=str
            )
            s3 = options.view_as(S3Options)
            client = boto3.Session(botocore_session=session).client(
                "s3", endpoint_url=s3.s3_endpoint_url, region_name=s3.s3_region_name,
                aws_access_key_id=s3.s3_access_key_id,
                aws_secret_access_key=s3.s3_secret_access_key,
                verify=s3.s3_verify, use_ssl=not s3.s3_disable_ssl,
            )
            return cls(client=client)
        if filesystem_args is None:
            return cls(filesystem=FileSystems)
        return cls(filesystem=type(FileSystems.get_filesystem(prefix))(options))

    @staticmethod
    def _bucket_and_key(path: str) -> tuple[str, str]:
        bucket, _, key = path.removeprefix("s3://").partition("/")
        return bucket, key

    def read(self, path: str) -> bytes | None:
        """The object's bytes, or None when there is none."""
        if self._client is None:
            if not self._filesystem.exists(path):
                return None
            with self._filesystem.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
                return f.read()
        bucket, key = self._bucket_and_key(path)
        try:
            return self._client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except self._client.exceptions.NoSuchKey:
            return None

    def may_exist(self, paths: list[str]) -> set[str] | None:
        """Of ``paths`` (sorted, one bucket), those that may exist: every one that does, from
        a listing of the keys from the first to the last, and any past where the listing
        stopped (after about as many keys as reading each object would cost). None when
        unknown: one path (a GET is as cheap), or a filesystem other than S3.

        A backlog's end flushes hundreds of new objects; without this, each merge asked for
        its object first and was told there is none.
        """
        if self._client is None or len(paths) < 2:
            return None
        bucket, first = self._bucket_and_key(paths[0])
        last = self._bucket_and_key(paths[-1])[1]
        wanted = {self._bucket_and_key(path)[1]: path for path in paths}
        request = {
            "Bucket": bucket,
            "Prefix": os.path.commonprefix([first, last]),
            "StartAfter": first[:-1],  # sorts just before the first key
            "MaxKeys": self.list_page,
        }
        found: set[str] = set()
        listed, budget = 0, LISTED_KEYS_PER_READ * len(paths)
        while True:
            page = self._client.list_objects_v2(**request)
            key = first
            for entry in page.get("Contents", []):
                key = entry["Key"]
                if key > last:
                    return found
                if key in wanted:
                    found.add(wanted[key])
            listed += page.get("KeyCount", 0)
            if wanted[last] in found or not page.get("IsTruncated"):
                return found
            if listed >= budget:  # many other objects in the range: read the rest
                return found | {path for k, path in wanted.items() if k > key}
            request["ContinuationToken"] = page["NextContinuationToken"]

    def write(self, path: str, body: bytes) -> None:
        if self._client is None:
            with self._filesystem.create(
                path, mime_type="application/x-ndjson",
                compression_type=CompressionTypes.UNCOMPRESSED,
            ) as handle:
                handle.write(body)
            return
        bucket, key = self._bucket_and_key(path)
        self._client.put_object(
            Bucket=bucket, Key=key, Body=body, ContentType="application/x-ndjson"
        )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


class _MergeIntoObjectsFn(beam.DoFn):
    """Buffers a shard's new lines and merges them into their objects on a timer.

    State and timers (per shard), made by :func:`_merge_into_objects` with names of their own:
      PENDING: BagStateSpec of ``(object path, line)`` waiting for the next flush.
      SCHEDULED: ReadModifyWriteStateSpec, whether FLUSH is set (one timer per flush, never
        one per element).
      FLUSH: processing-time timer, ``flush_s`` after the first waiting line.
      END: event-time timer at the end of the window: flushes what waits at a bounded
        input's end.
    """

    def __init__(
        self,
        prefix: str,
        id_field: str,
        version_field: str | None,
        flush_s: float,
        filesystem_args: list[str] | None,
    ):
        self.prefix = prefix
        self.id_field, self.version_field = id_field, version_field
        self.flush_s = flush_s
        self.filesystem_args = filesystem_args
        self.objects = metrics.counter("s3_objects_written")
        self.unchanged = metrics.counter("s3_objects_unchanged")
        self.records = metrics.counter("s3_records_written")
        self.retries = metrics.counter("s3_write_retries")

    def setup(self):
        self.store = _ObjectStore.for_prefix(self.prefix, self.filesystem_args)
        self.merges = ThreadPoolExecutor(MERGE_CONCURRENCY, thread_name_prefix="s3-merge")

    def teardown(self):
        merges = getattr(self, "merges", None)
        if merges is not None:
            merges.shutdown(wait=True)
        store = getattr(self, "store", None)
        if store is not None:
            store.close()

    def start_bundle(self):
        self.objects.inc(0)  # a series from the first bundle on, for dashboards
        self.records.inc(0)

    def _buffer(self, element, window, pending, scheduled, flush, end):
        _shard, path_and_line = element
        pending.add(path_and_line)
        if not scheduled.read():
            flush.set(Timestamp.now() + Duration(seconds=self.flush_s))
            end.set(window.max_timestamp())
            scheduled.write(True)

    def _flush(self, pending, scheduled):
        by_path: dict[str, list[str]] = {}
        for path, line in pending.read():
            by_path.setdefault(path, []).append(line)
        pending.clear()
        scheduled.clear()
        # Each object belongs to this key alone, so its merges may run side by side; the
        # counters are counted here, in the bundle's thread (Beam's metrics are per thread).
        paths = sorted(by_path)
        may_exist = self._may_exist(paths)
        merges = [
            self.merges.submit(self._merge_with_retries, path, by_path[path],
                               may_exist is not None and path not in may_exist)
            for path in paths
        ]
        for path, merge in zip(paths, merges):
            changed, retries = merge.result()
            self.records.inc(len(by_path[path]))
            self.retries.inc(retries)
            if changed:
                self.objects.inc()
                yield path
            else:
                self.unchanged.inc()

    def _may_exist(self, paths: list[str]) -> set[str] | None:
        """:meth:`_ObjectStore.may_exist`; None (each merge reads its object) if the listing
        fails."""
        try:
            return self.store.may_exist(paths)
        except RETRYABLE_ERRORS as error:
            logger.warning("s3: listing %s … %s failed, reading each object: %s",
                           paths[0], paths[-1], error)
            return None

    def _merge_into(self, path: str, lines: list[str], absent: bool = False) -> bool:
        """Rewrites the object with ``lines`` merged in; False if that changed nothing.
        ``absent``: a listing of this flush found no such object, so it is not read."""
        stored = b"" if absent else self.store.read(path) or b""
        body = merge_jsonl(stored, lines, self.id_field, self.version_field)
        if body == stored:
            return False  # a replay of versions the object already holds: no write
        self.store.write(path, body)
        logger.debug("wrote %s (%d bytes, %d new lines)", path, len(body), len(lines))
        return True

    def _merge_with_retries(
        self, path: str, lines: list[str], absent: bool = False
    ) -> tuple[bool, int]:
        """:meth:`_merge_into`, retried while the server fails (a retry reads the object:
        a failed write may have landed); whether the object changed, and how many retries
        it took."""
        backoff, attempt = INITIAL_BACKOFF_S, 1
        while True:
            try:
                return self._merge_into(path, lines, absent and attempt == 1), attempt - 1
            except RETRYABLE_ERRORS as error:
                if attempt == MAX_ATTEMPTS or not _worth_retrying(error):
                    raise
                logger.warning(
                    "s3: writing %s failed (attempt %d/%d), retrying in %.1fs: %s",
                    path, attempt, MAX_ATTEMPTS, backoff, error,
                )
                time.sleep(backoff)
                backoff, attempt = min(backoff * 2, MAX_BACKOFF_S), attempt + 1


def _merge_into_objects(prefix: str, *args) -> _MergeIntoObjectsFn:
    """A _MergeIntoObjectsFn for ``prefix`` whose timers are named after it.

    The FnApiRunner keeps the timers of all steps in one buffer per timer name, so two
    steps with timers of the same name (two writers here, or another step's ``flush``)
    would receive each other's timers.
    """
    tag = f"{zlib.crc32(prefix.encode('utf-8')):08x}"
    pending_spec = BagStateSpec(
        "pending", coders.TupleCoder([coders.StrUtf8Coder(), coders.StrUtf8Coder()])
    )
    scheduled_spec = ReadModifyWriteStateSpec("scheduled", coders.BooleanCoder())
    flush_spec = TimerSpec(f"s3-flush-{tag}", TimeDomain.REAL_TIME)
    end_spec = TimerSpec(f"s3-end-{tag}", TimeDomain.WATERMARK)

    class MergeIntoObjectsFn(_MergeIntoObjectsFn):
        PENDING, SCHEDULED, FLUSH, END = pending_spec, scheduled_spec, flush_spec, end_spec

        def process(
            self,
            element,
            window=beam.DoFn.WindowParam,
            pending=beam.DoFn.StateParam(pending_spec),
            scheduled=beam.DoFn.StateParam(scheduled_spec),
            flush=beam.DoFn.TimerParam(flush_spec),
            end=beam.DoFn.TimerParam(end_spec),
        ):
            self._buffer(element, window, pending, scheduled, flush, end)

        @on_timer(flush_spec)
        def on_flush(
            self,
            pending=beam.DoFn.StateParam(pending_spec),
            scheduled=beam.DoFn.StateParam(scheduled_spec),
        ):
            yield from self._flush(pending, scheduled)

        @on_timer(end_spec)
        def on_end(
            self,
            pending=beam.DoFn.StateParam(pending_spec),
            scheduled=beam.DoFn.StateParam(scheduled_spec),
            flush=beam.DoFn.TimerParam(flush_spec),
        ):
            yield from self._flush(pending, scheduled)
            flush.clear()

    return MergeIntoObjectsFn(prefix, *args)


class WriteEventTimeJson(beam.PTransform):
    """Writes ``(event_time, doc)`` pairs as JSON-lines objects named by event time.

    Args:
        prefix: e.g. ``s3://riskpipe/users`` (a folder per topic).
        id_field: the key that identifies a document (one line per id, sort key, shard hash).
        window_s: the event-time span of one object; must divide an hour, so no object
            straddles two hour folders.
        num_shards: objects per window at most.
        version_field: a field whose greatest value wins among versions of one id (e.g.
            ``processed_at``: a correction is emitted after what it corrects); see
            :func:`merge_jsonl`.
        flush_s: processing-time seconds a document waits before its object is rewritten
            (each object is rewritten at most once per ``flush_s``).
        filesystem_args: Beam flags for the filesystem (``["--s3_endpoint_url=..."]``);
            None uses the pipeline's options.

    Returns the PCollection of object paths written (one per flush of an object).
    """

    def __init__(
        self,
        prefix: str,
        id_field: str,
        window_s: int = 60,
        num_shards: int = DEFAULT_SHARDS,
        version_field: str | None = None,
        flush_s: float = DEFAULT_FLUSH_S,
        filesystem_args: list[str] | None = None,
    ):
        super().__init__()
        if "://" not in prefix:
            raise ValueError(
                f"WriteEventTimeJson: prefix must be a URL like s3://b/t, got {prefix!r}"
            )
        if window_s < 1 or 3600 % window_s:
            raise ValueError(f"WriteEventTimeJson: window_s must divide 3600, got {window_s}")
        if num_shards < 1:
            raise ValueError(f"WriteEventTimeJson: num_shards must be >= 1, got {num_shards}")
        if flush_s <= 0:
            raise ValueError(f"WriteEventTimeJson: flush_s must be > 0, got {flush_s}")
        self.prefix = prefix.rstrip("/")
        self.id_field = id_field
        self.window_s = window_s
        self.num_shards = num_shards
        self.version_field = version_field
        self.flush_s = flush_s
        self.filesystem_args = filesystem_args

    def expand(self, dated_docs):
        return (
            dated_docs
            | "KeyByShard"
            >> beam.ParDo(
                _KeyByShardFn(self.prefix, self.window_s, self.id_field, self.num_shards)
            ).with_output_types(tuple[int, tuple[str, str]])
            | "MergeIntoObjects"
            >> beam.ParDo(
                _merge_into_objects(
                    self.prefix,
                    self.id_field, self.version_field, self.flush_s, self.filesystem_args
                )
            )
        )
