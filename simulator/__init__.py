"""The bank simulator: accounts and transactions for riskpipe, with fraud and ground truth.

Run it with ``python -m simulator --help``. Modules:

- ``profiles``: Faker identities and per-account habits (home currency, typical amount,
  active hours, payees). The only place Faker is used.
- ``fraud``: the injected fraud scenarios.
- ``bad``: malformed transactions-topic messages for the dead-letter path.
- ``generator``: ``BankSimulator``, a pure seeded generator of events in publish order.
- ``publish``: Kafka producer (batched, compressed), Postgres ``banking.accounts`` upserts,
  ground-truth JSONL file.
- ``run``: the publish loop (pacing, progress, summary); ``__main__``: the CLI;
  ``bench``: throughput benchmark.

Kafka: accounts on ``accounts``, transactions (and bad messages) on ``transactions``, both
keyed by ``account_id``, values the records' JSON (``pipeline.records``); ground truth on
``ground-truth`` (keyed by account id). ``--topic-prefix`` prefixes every topic.

Ground truth: one JSON object per line/message, told apart by ``kind``; the pipeline never
reads it. Every fraud transaction and every bad message has a row; an ordinary transaction
has one only with ``--ground-truth-all`` (otherwise: absent means not fraud)::

    {"kind": "transaction", "transaction_id": "...", "account_id": "...", "is_fraud": true,
     "scenario": "transfer_burst", "episode": 17, "evaluation": "unidentified"}
    {"kind": "bad", "transaction_id": "...", "account_id": "...", "is_fraud": false,
     "scenario": null, "bad": "nan_amount", "id_in_payload": true,
     "payload_sha256": "...", "payload_bytes": 251, "field": "amount"}
    {"kind": "late_account", "account_id": "...", "transactions_before": 2}
    {"kind": "summary", ...}     # the run summary; last line of the file only

``episode`` groups the transactions of one fraud episode. A bad row's ``transaction_id``
is the id the message was generated with; ``id_in_payload`` says whether the payload still
carries it; ``payload_sha256`` matches the dead letter's payload bytes in every case.

Decisions:
- ``--count`` counts messages on the transactions topic, bad ones included; fraud
  episodes under way at the end are completed within the count.
- Ids are UUID-4-shaped strings drawn from the seeded RNG, never ``uuid4()``; with a seed,
  event time starts at ``--start-time`` or 2026-01-05T12:00:00Z, never the wall clock.
- Late accounts (``--late-account-rate``) are published to Kafka *and* written to Postgres
  only after 1-3 of their transactions, so the pipeline's Postgres fallback misses too and
  its join must buffer them.
- Postgres writes are batched (flushed every 0.5 s and before the first transaction), so
  an account update or a new account reaches Postgres up to 0.5 s after Kafka.

Summary (stdout, one JSON line): seed, start_time, accounts per reason (initial, late,
update, new), transactions, evaluations, transaction_types, fraud (transactions, episodes,
by_scenario), bad (messages, by_kind), messages (transactions-topic messages, everything
produced), postgres_rows, ground_truth_rows, delivery_failures, delivery_errors,
interrupted, elapsed_s, rate_tps.
"""
