"""Just enough of the Kafka wire protocol to check a broker and create topics, stdlib only.

Uses request versions that Kafka 4.x still accepts (KIP-896): Metadata v4, CreateTopics v2,
IncrementalAlterConfigs v0, FindCoordinator v1 and OffsetFetch v2, all with the classic
(non-flexible) encoding and request header v1.
"""

from __future__ import annotations

import itertools
import socket
import struct
from dataclasses import dataclass

METADATA, CREATE_TOPICS, INCREMENTAL_ALTER_CONFIGS = 3, 19, 44
OFFSET_FETCH, FIND_COORDINATOR = 9, 10
RESOURCE_TOPIC, OPERATION_SET = 2, 0
TOPIC_ALREADY_EXISTS = 36
CLIENT_ID = b"riskpipe-stack"

_correlation_ids = itertools.count(1)


class KafkaProtocolError(Exception):
    """The broker answered with an error code or something unreadable."""


@dataclass(frozen=True)
class TopicInfo:
    name: str
    error_code: int
    partition_leaders: tuple[int, ...]  # -1 while a partition has no leader


@dataclass(frozen=True)
class ClusterMetadata:
    broker_ids: tuple[int, ...]
    controller_id: int
    topics: dict[str, TopicInfo]


def _string(value: str) -> bytes:
    raw = value.encode()
    return struct.pack(">h", len(raw)) + raw


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, fmt: str):
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str | None:
        length = self.take(">h")
        if length < 0:
            return None
        value = self.data[self.pos : self.pos + length].decode()
        self.pos += length
        return value

    def array(self, read_item) -> list:
        return [read_item() for _ in range(max(self.take(">i"), 0))]


def _call(
    address: str, api_key: int, version: int, body: bytes, timeout: float
) -> _Reader:
    host, _, port = address.rpartition(":")
    correlation_id = next(_correlation_ids)
    header = struct.pack(">hhi", api_key, version, correlation_id) + _string(
        CLIENT_ID.decode()
    )
    request = header + body
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        size = struct.unpack(">i", _recv_exactly(sock, 4))[0]
        reader = _Reader(_recv_exactly(sock, size))
    if reader.take(">i") != correlation_id:
        raise KafkaProtocolError("response does not match the request")
    return reader


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, remaining = [], size
    while remaining:
        chunk = sock.recv(remaining)
        if not chunk:
            raise KafkaProtocolError("broker closed the connection")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def metadata(address: str, timeout: float = 5.0) -> ClusterMetadata:
    """Brokers, controller and every topic with its partition leaders (Metadata v4)."""
    body = struct.pack(">i?", -1, False)  # all topics, no auto-creation
    r = _call(address, METADATA, 4, body, timeout)
    r.take(">i")  # throttle_time_ms

    def broker() -> int:
        node_id = r.take(">i")
        r.string(), r.take(">i"), r.string()  # host, port, rack
        return node_id

    brokers = r.array(broker)
    r.string()  # cluster_id
    controller_id = r.take(">i")

    def partition() -> tuple[int, int]:
        r.take(">h")  # error_code
        index, leader = r.take(">i"), r.take(">i")
        r.array(lambda: r.take(">i")), r.array(lambda: r.take(">i"))  # replicas, isr
        return index, leader

    def topic() -> TopicInfo:
        error_code, name = r.take(">h"), r.string()
        r.take(">?")  # is_internal
        leaders = tuple(leader for _, leader in sorted(r.array(partition)))
        return TopicInfo(name, error_code, leaders)

    topics = {t.name: t for t in r.array(topic)}
    return ClusterMetadata(tuple(brokers), controller_id, topics)


def _configs(configs: dict[str, str]) -> bytes:
    body = struct.pack(">i", len(configs))
    for name, value in configs.items():
        body += _string(name) + _string(value)
    return body


def create_topics(
    address: str,
    partitions: dict[str, int],
    timeout: float = 15.0,
    configs: dict[str, dict[str, str]] | None = None,
) -> None:
    """Creates topics (replication factor 1); ones that already exist are fine.

    Args:
        partitions: topic name -> partition count.
        configs: topic name -> topic configs set at creation (``cleanup.policy`` ...).
    """
    configs = configs or {}
    body = struct.pack(">i", len(partitions))
    for name, count in partitions.items():
        # partitions, replication factor 1, no replica assignments, then the configs
        body += _string(name) + struct.pack(">ihi", count, 1, 0)
        body += _configs(configs.get(name, {}))
    body += struct.pack(">i?", int(timeout * 1000), False)
    r = _call(address, CREATE_TOPICS, 2, body, timeout + 5)
    r.take(">i")  # throttle_time_ms

    def result() -> tuple[str, int, str | None]:
        return r.string(), r.take(">h"), r.string()

    for name, error_code, message in r.array(result):
        if error_code not in (0, TOPIC_ALREADY_EXISTS):
            raise KafkaProtocolError(
                f"creating topic {name}: error {error_code} ({message})"
            )


def set_topic_configs(
    address: str, configs: dict[str, dict[str, str]], timeout: float = 15.0
) -> None:
    """Sets configs of existing topics (IncrementalAlterConfigs SET); others are kept.

    Args:
        configs: topic name -> {config name: value}, e.g. ``{"users": {"cleanup.policy":
            "compact"}}``. Setting a value a topic already has changes nothing.
    """
    body = struct.pack(">i", len(configs))
    for topic, values in configs.items():
        body += struct.pack(">b", RESOURCE_TOPIC) + _string(topic)
        body += struct.pack(">i", len(values))
        for name, value in values.items():
            body += _string(name) + struct.pack(">b", OPERATION_SET) + _string(value)
    body += struct.pack(">?", False)  # validate_only
    r = _call(address, INCREMENTAL_ALTER_CONFIGS, 0, body, timeout)
    r.take(">i")  # throttle_time_ms

    def result() -> tuple[int, str | None, int, str]:
        return r.take(">h"), r.string(), r.take(">b"), r.string()

    for error_code, message, _type, name in r.array(result):
        if error_code:
            raise KafkaProtocolError(
                f"setting configs of topic {name}: error {error_code} ({message})"
            )


def group_offsets_error(address: str, group: str, timeout: float = 5.0) -> int:
    """0 once the broker answers for ``group``'s committed offsets, else the error code.

    The first FindCoordinator on a new broker creates ``__consumer_offsets``; until the
    group coordinator has taken over that topic's partition, the broker answers
    COORDINATOR_NOT_AVAILABLE (15), NOT_COORDINATOR (16) or COORDINATOR_LOAD_IN_PROGRESS (14)
    and clients that read or commit offsets fail.
    """
    body = _string(group) + struct.pack(">b", 0)  # key type 0: a consumer group
    r = _call(address, FIND_COORDINATOR, 1, body, timeout)
    r.take(">i")  # throttle_time_ms
    error_code = r.take(">h")
    if error_code:
        return error_code
    body = _string(group) + struct.pack(">i", -1)  # every topic the group has offsets of
    r = _call(address, OFFSET_FETCH, 2, body, timeout)

    def partition() -> int:
        r.take(">i")  # partition
        r.take(">q")  # offset
        r.string()  # metadata
        return r.take(">h")

    errors = [e for _name, parts in r.array(lambda: (r.string(), r.array(partition)))
              for e in parts]
    return r.take(">h") or next((e for e in errors if e), 0)
