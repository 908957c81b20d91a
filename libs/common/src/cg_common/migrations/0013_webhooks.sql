-- Webhooks (docs/budgets.md "Webhooks"): where alerts are sent, and the notifier's durable record of every delivery.

-- The api's: a receiver, the alert types it wants, its format, and its signing secret encrypted under MASTER_KEY (the
-- notifier decrypts it to sign; the plaintext is shown once, when the webhook is made). Deleted ones keep their row
-- so that their delivery log stays readable.
CREATE TABLE webhooks (
    id                bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url               text        NOT NULL,
    events            text[]      NOT NULL,
    format            text        NOT NULL CHECK (format IN ('json', 'slack')),
    secret_ciphertext bytea       NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    created_by        text        NOT NULL,
    deleted_at        timestamptz
);

-- The notifier's: one delivery per (webhook, message), made when the alert reaches the notifier, so a redelivered
-- alert adds nothing. `body` is the exact payload signed and sent, the same on every attempt, as `message_id` is the
-- `webhook-id`. A pending delivery is due at `next_attempt_at`; a notifier claiming it moves that forward by a lease,
-- so a notifier that dies mid-attempt leaves it to be tried again once the lease has passed, by any replica.
CREATE TABLE webhook_deliveries (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id      bigint      NOT NULL REFERENCES webhooks (id),
    message_id      text        NOT NULL,
    event_type      text        NOT NULL,
    body            text        NOT NULL,
    status          text        NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'delivered', 'failed', 'cancelled')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    CONSTRAINT webhook_deliveries_once UNIQUE (webhook_id, message_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (webhook_id, next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (webhook_id, id DESC);

-- The notifier's: every attempt and what the receiver answered (or why there was no answer): the delivery log.
CREATE TABLE webhook_attempts (
    delivery_id     bigint      NOT NULL REFERENCES webhook_deliveries (id),
    attempt         integer     NOT NULL,
    started_at      timestamptz NOT NULL,
    duration_ms     integer     NOT NULL,
    response_status integer,
    error           text,
    PRIMARY KEY (delivery_id, attempt)
);
