-- The banking schema: the account table of record and every scored transaction.
CREATE SCHEMA IF NOT EXISTS banking;

CREATE TABLE IF NOT EXISTS banking.accounts (
    account_id      TEXT PRIMARY KEY,
    account_name    TEXT NOT NULL,
    email           TEXT,
    account_type    TEXT,
    balance         NUMERIC(18, 2),
    created_at      TIMESTAMPTZ,
    address         TEXT,
    birthdate       DATE,
    phone_number    TEXT,
    job             TEXT,
    company         TEXT,
    bank            TEXT,
    bank_account    TEXT,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS banking.attributed_transactions (
    transaction_id          TEXT PRIMARY KEY,
    account_id              TEXT NOT NULL,
    counterparty_account_id TEXT,
    transaction_type        TEXT NOT NULL,
    amount                  NUMERIC(18, 2) NOT NULL,
    currency                CHAR(3) NOT NULL,
    transaction_status      TEXT NOT NULL,
    datetime_occurred       TIMESTAMPTZ NOT NULL,
    sender_bank             TEXT,
    evaluation              TEXT,
    account_name            TEXT,
    risk_score              SMALLINT NOT NULL CHECK (risk_score BETWEEN 0 AND 100),
    risk_reasons            TEXT[] NOT NULL DEFAULT '{}',
    is_fraudulent           BOOLEAN NOT NULL DEFAULT false,
    validated_by            TEXT NOT NULL CHECK (validated_by IN ('bank', 'validator', 'none')),
    processed_at            TIMESTAMPTZ NOT NULL
);

CREATE INDEX IF NOT EXISTS attributed_transactions_account_time
    ON banking.attributed_transactions (account_id, datetime_occurred);
CREATE INDEX IF NOT EXISTS attributed_transactions_time
    ON banking.attributed_transactions (datetime_occurred DESC);
CREATE INDEX IF NOT EXISTS attributed_transactions_fraud
    ON banking.attributed_transactions (datetime_occurred) WHERE is_fraudulent;
