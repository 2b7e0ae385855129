"""Windowed newline-delimited JSON objects on S3 (or any Beam filesystem), replay-safe.

Write dicts into ``s3://bucket/<topic>/dt=YYYY-MM-DD/hour=HH/part-<start>-<shard>.jsonl``::

    docs | "WriteUsersToS3" >> WriteWindowedJson("s3://riskpipe/users", window_s=60,
                                                 id_field="account_id")

Elements are put in fixed windows of ``window_s`` seconds by their timestamps and spread
over ``num_shards`` shards by a stable hash of ``id_field``. Each (window, shard) becomes one
object whose name depends only on the window start and the shard, holding its records
deduplicated by id and sorted by id. Panes accumulate, so every firing (on time, then one
per late element within ``allowed_lateness_s``) rewrites the whole object: replaying the
same input writes the same names with the same contents instead of adding files.

The S3 endpoint and keys come from Beam's own flags (``--s3_endpoint_url``,
``--s3_access_key_id``, ``--s3_secret_access_key``, ``--s3_region_name``; needs
``apache-beam[aws]``), or from ``filesystem_args`` given to the transform.
"""

from __future__ import annotations

import json
import logging
import zlib
from datetime import UTC, datetime

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms import trigger, window

from pipeline import metrics

__all__ = ["WriteWindowedJson", "object_path", "render_jsonl"]

logger = logging.getLogger(__name__)

DEFAULT_SHARDS = 4
# Late data (by element timestamp) still rewrites its window's objects for a day.
DEFAULT_ALLOWED_LATENESS_S = 24 * 3600


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


def render_jsonl(docs, id_field: str) -> bytes:
    """Newline-delimited JSON, one line per id, sorted by id; the same input gives the same bytes.

    Of two versions of one id the one whose JSON sorts last wins, whatever their order.

    >>> render_jsonl([{"id": "b", "x": 2}, {"id": "a", "x": 1}, {"id": "b", "x": 2}], "id")
    b'{"id": "a", "x": 1}\\n{"id": "b", "x": 2}\\n'
    """
    lines: dict[str, str] = {}
    for doc in docs:
        key = str(doc[id_field])
        line = json.dumps(doc, sort_keys=True, default=str, ensure_ascii=False)
        if key not in lines or line > lines[key]:
            lines[key] = line
    return "".join(lines[key] + "\n" for key in sorted(lines)).encode("utf-8")


class _WriteObjectFn(beam.DoFn):
    """Writes one object per (window, shard) group, replacing any earlier version."""

    def __init__(self, prefix: str, id_field: str, filesystem_args: list[str] | None):
        self.prefix = prefix
        self.id_field = id_field
        self.filesystem_args = filesystem_args
        self.objects = metrics.counter("s3_objects_written")
        self.records = metrics.counter("s3_records_written")

    def setup(self):
        if self.filesystem_args is None:
            self.filesystem = FileSystems
        else:
            options = PipelineOptions(self.filesystem_args)
            self.filesystem = type(FileSystems.get_filesystem(self.prefix))(options)

    def process(self, element, win=beam.DoFn.WindowParam):
        shard, docs = element
        body = render_jsonl(docs, self.id_field)
        path = object_path(self.prefix, int(win.start), shard)
        with self.filesystem.create(path, mime_type="application/x-ndjson") as handle:
            handle.write(body)
        self.objects.inc()
        self.records.inc(body.count(b"\n"))
        logger.debug("wrote %s (%d bytes)", path, len(body))
        yield path


class WriteWindowedJson(beam.PTransform):
    """Writes dicts as windowed, sharded, deterministic JSON-lines objects under ``prefix``.

    Args:
        prefix: e.g. ``s3://riskpipe/users`` (a folder per topic).
        window_s: window length in seconds; must divide an hour, so no object straddles two.
        id_field: the key that identifies a record (dedup and sort key, shard hash).
        num_shards: objects per window at most.
        allowed_lateness_s: how late (event time) an element may be and still be written.
        filesystem_args: Beam flags for the filesystem (``["--s3_endpoint_url=..."]``);
            None uses the pipeline's options.

    Returns the PCollection of object paths written (one per firing).
    """

    def __init__(
        self,
        prefix: str,
        window_s: int = 60,
        id_field: str = "_id",
        num_shards: int = DEFAULT_SHARDS,
        allowed_lateness_s: int = DEFAULT_ALLOWED_LATENESS_S,
        filesystem_args: list[str] | None = None,
    ):
        super().__init__()
        if "://" not in prefix:
            raise ValueError(
                f"WriteWindowedJson: prefix must be a URL like s3://b/t, got {prefix!r}"
            )
        if window_s < 1 or 3600 % window_s:
            raise ValueError(f"WriteWindowedJson: window_s must divide 3600, got {window_s}")
        if num_shards < 1:
            raise ValueError(f"WriteWindowedJson: num_shards must be >= 1, got {num_shards}")
        self.prefix = prefix.rstrip("/")
        self.window_s = window_s
        self.id_field = id_field
        self.num_shards = num_shards
        self.allowed_lateness_s = allowed_lateness_s
        self.filesystem_args = filesystem_args

    def expand(self, docs):
        id_field, shards = self.id_field, self.num_shards
        return (
            docs
            | "FixedWindows"
            >> beam.WindowInto(
                window.FixedWindows(self.window_s),
                trigger=trigger.AfterWatermark(late=trigger.AfterCount(1)),
                accumulation_mode=trigger.AccumulationMode.ACCUMULATING,
                allowed_lateness=self.allowed_lateness_s,
            )
            | "KeyByShard"
            >> beam.Map(
                lambda d: (zlib.crc32(str(d[id_field]).encode("utf-8")) % shards, d)
            ).with_output_types(tuple[int, dict])
            | "GroupByWindowShard" >> beam.GroupByKey()
            | "WriteObjects"
            >> beam.ParDo(_WriteObjectFn(self.prefix, self.id_field, self.filesystem_args))
        )
