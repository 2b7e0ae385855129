-- The account's fields the Flink SQL risk job wrote into banking.attributed_transactions and
-- riskpipe lacked, so that job's queries keep working: the email, type and balance of the
-- transaction's account as the join found it (its version as of the transaction), NULL when
-- the transaction went on without its account. Nullable columns without a default: adding
-- them rewrites no row. Vocabulary values are riskpipe's lower-case words (README,
-- "Migrating from the Flink SQL risk job").
ALTER TABLE banking.attributed_transactions
    ADD COLUMN IF NOT EXISTS email TEXT,
    ADD COLUMN IF NOT EXISTS account_type TEXT,
    ADD COLUMN IF NOT EXISTS balance NUMERIC(18, 2);
