"""The local Kafka's cluster id is one its storage tool accepts.

A URL-safe base64 UUID starts with "-" once in 64 draws, and ``kafka-storage format -t -X…``
then fails with "argument --cluster-id/-t: expected one argument" (seen in a clean-clone CI
run). 2,000 draws miss such a start with a probability of about 2e-14.
"""

from __future__ import annotations

import base64

from stack.kafka import new_cluster_id


def test_a_cluster_id_never_starts_with_a_dash():
    ids = [new_cluster_id() for _ in range(2000)]
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids)  # still a UUID
    assert len(set(ids)) == len(ids)
