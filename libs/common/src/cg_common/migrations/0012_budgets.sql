-- Budgets (the api's): an amount per day, week or month in the budget's own time zone, over the usage its scope
-- covers (key_id, source, model, provider, dimension attributes; all must match; empty covers everything), with the
-- percentages at which it alerts. A deleted budget keeps its row (deleted_at) so that what was said about it stays
-- attributable.
CREATE TABLE budgets (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text        NOT NULL,
    amount      numeric(30, 12) NOT NULL CHECK (amount > 0),
    period      text        NOT NULL CHECK (period IN ('day', 'week', 'month')),
    timezone    text        NOT NULL,
    scope       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    thresholds  integer[]   NOT NULL,
    hard        boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);

-- Names tell budgets apart in alerts and in the dashboard: one live budget per name.
CREATE UNIQUE INDEX budgets_live_name ON budgets (name) WHERE deleted_at IS NULL;

-- Which definition of the budget its spend was kept under: a change of scope, period or time zone starts a new one,
-- whose spend in the current period is summed afresh from the records (the old one's stays as it was).
ALTER TABLE budgets ADD COLUMN definition integer NOT NULL DEFAULT 1;

-- Whether a budget's scope covers a record: every field the scope names must match; attributes compare by their
-- JSON text, as `attributes.<name>` filters do (`{"team": 7}` covers `"team": "7"` and `"team": 7`).
CREATE FUNCTION budget_covers(scope jsonb, key_id bigint, source text, provider text, model text, attributes jsonb)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT (scope -> 'key_id' IS NULL OR (scope ->> 'key_id')::bigint = key_id)
       AND (scope -> 'source' IS NULL OR scope ->> 'source' = source)
       AND (scope -> 'provider' IS NULL OR scope ->> 'provider' = provider)
       AND (scope -> 'model' IS NULL OR scope ->> 'model' = model)
       AND NOT EXISTS (
           SELECT FROM jsonb_each(coalesce(scope -> 'attributes', '{}'::jsonb)) AS wanted(name, value)
           WHERE (attributes ->> wanted.name) IS DISTINCT FROM
                 (CASE jsonb_typeof(wanted.value) WHEN 'string' THEN wanted.value #>> '{}' ELSE wanted.value::text END)
       )
$$;

-- The ledger's: each budget's spend per period (under one definition), kept in the transaction that records the
-- usage; its first row for a period starts from the records already stored in it. `last_added` is the part the
-- latest transaction added, so that the statement that adds it also knows the spend before it.
CREATE TABLE budget_spend (
    budget_id    bigint      NOT NULL REFERENCES budgets (id),
    definition   integer     NOT NULL,
    period_start timestamptz NOT NULL,
    period_end   timestamptz NOT NULL,
    spent        numeric(30, 12) NOT NULL,
    last_added   numeric(30, 12) NOT NULL,
    PRIMARY KEY (budget_id, definition, period_start)
);

-- The ledger's: every alert, decided in the transaction that moved the spend across its threshold; one per
-- (budget, period, kind, threshold), whatever replays, re-sends or repricing do.
CREATE TABLE budget_alerts (
    id           text        PRIMARY KEY,
    type         text        NOT NULL,
    budget_id    bigint      NOT NULL REFERENCES budgets (id),
    threshold    integer     NOT NULL,
    period_start timestamptz NOT NULL,
    period_end   timestamptz NOT NULL,
    spent        numeric(30, 12) NOT NULL,
    occurred_at  timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,  -- on cg.alert.budget; NULL: still to publish (the ledger retries until it is)
    CONSTRAINT budget_alerts_once UNIQUE (budget_id, period_start, type, threshold)
);
CREATE INDEX budget_alerts_newest ON budget_alerts (occurred_at DESC, id DESC);
CREATE INDEX budget_alerts_unpublished ON budget_alerts (occurred_at) WHERE published_at IS NULL;
