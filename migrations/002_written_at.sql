-- When a row first landed in PostgreSQL: the start of the sink's write transaction (one per
-- batch). processed_at says when the job attributed the transaction; written_at - the Kafka
-- timestamp of the transaction is its end-to-end latency (make bench measures it). An upsert
-- of a replayed transaction leaves it unchanged.
ALTER TABLE banking.attributed_transactions
    ADD COLUMN IF NOT EXISTS written_at TIMESTAMPTZ NOT NULL DEFAULT now();
