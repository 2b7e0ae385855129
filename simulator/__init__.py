"""The bank simulator: accounts and transactions for riskpipe, with fraud and ground truth.

Run it with ``python -m simulator --help``. Modules:

- ``profiles``: Faker identities and per-account habits (home currency, typical amount,
  active hours, payees). The only place Faker is used.
- ``bank``: the accounts, their roles (mules, late accounts), payees and outside parties.
- ``fraud``: the injected fraud families (``fraud/__init__.py`` has the table of all 13).
- ``pace``: event time at bank pace (a daily rhythm) and the burstiness measure.
- ``bad``: malformed transactions-topic messages for the dead-letter path.
- ``generator``: ``BankSimulator``, a pure seeded generator of events in publish order.
- ``formats``: the record shapes (``--format riskpipe|flinksql|poc``); ``serialize``:
  riskpipe's fast JSON.
- ``publish``: Kafka producer (batched, compressed), Postgres ``banking.accounts`` upserts,
  ground-truth JSONL file.
- ``run``: the publish loop (pacing, progress, summary); ``__main__``: the CLI;
  ``bench``: throughput benchmark.

Kafka (``--format riskpipe``, the default): accounts on ``accounts``, transactions (and bad
messages) on ``transactions``, both keyed by ``account_id``, values the records' JSON
(``pipeline.records``); ground truth on ``ground-truth`` (keyed by account id).
``--format flinksql`` and ``--format poc`` write the same bank in the shapes of the two
systems riskpipe replaces (unkeyed; ``bank_transactions``, or one ``bank-transactions``
topic of transfers): see ``formats``. ``--topic-prefix`` prefixes every topic.

Event time: seeded runs start at ``--start-time`` (default 2025-01-06T12:00:00Z) and run at
bank pace, ``--tx-per-account-per-day`` (default 3) per account in its waking hours, so a
normal account has 5 transactions within 10 minutes about never; 20,000 transactions over
1,000 accounts span about a week. Unseeded (live) runs start now and follow ``--tps``.

Ground truth: one JSON object per line/message, told apart by ``kind``; the pipeline never
reads it. Every fraud transaction and every bad message has a row; an ordinary transaction
has one only with ``--ground-truth-all`` (otherwise: absent means not fraud)::

    {"kind": "transaction", "transaction_id": "...", "account_id": "...", "is_fraud": true,
     "scenario": "transfer_burst", "episode": 17, "evaluation": "unidentified",
     "bank_labelled": false}
    {"kind": "bad", "transaction_id": "...", "account_id": "...", "is_fraud": false,
     "scenario": null, "bad": "nan_amount", "id_in_payload": true,
     "payload_sha256": "...", "payload_bytes": 251, "field": "amount"}
    {"kind": "late_account", "account_id": "...", "transactions_before": 2}
    {"kind": "summary", ...}     # the run summary; last line of the file only

``episode`` groups the transactions of one fraud episode; ``bank_labelled`` says whether
the bank labelled the transaction ``fraudulent`` (``--fraud-known-share`` of fraud) or left
it ``unidentified``, so an evaluation can count only what the bank did not catch;
``evaluation`` is riskpipe's vocabulary in every format. A bad row's ``transaction_id``
is the id the message was generated with; ``id_in_payload`` says whether the payload still
carries it; ``payload_sha256`` matches the dead letter's payload bytes in every case.

Decisions:
- ``--count`` counts messages on the transactions topic, bad ones included; fraud
  episodes under way at the end are completed within the count.
- Ids are UUID-4-shaped strings drawn from the seeded RNG, never ``uuid4()``; with a seed,
  event time starts at ``--start-time`` or 2025-01-06T12:00:00Z, never the wall clock.
- Late accounts (``--late-account-rate``) are published to Kafka *and* written to Postgres
  only after 1-3 of their transactions (at most a minute of event time after the first),
  so the pipeline's Postgres fallback misses too and its join must buffer them.
- Postgres writes are batched (flushed every 0.5 s and before the first transaction), so
  an account update or a new account reaches Postgres up to 0.5 s after Kafka.

Summary (stdout, one JSON line): seed, format, start_time, event_rate (transactions per
second of event time, the day's mean), accounts per reason (initial, late, update, new),
transactions, evaluations, transaction_types, fraud (transactions, episodes, by_scenario),
bad (messages, by_kind), event_time (first, last, days), messages (transactions-topic
messages, everything produced), postgres_rows, ground_truth_rows, delivery_failures,
delivery_errors, interrupted, elapsed_s, rate_tps.
"""
