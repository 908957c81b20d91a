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

-- Which definition of the budget its spend was kept under: a change of scope, period or time zone starts a new one
-- (the old one's spend stays as it was). The api sums what the usage already recorded in the current period holds
-- for the definition (its opening), with the table locked so that no batch falls between that sum and the ledger's
-- own counting, which starts from it; periods before the definition's are not counted.
ALTER TABLE budgets
    ADD COLUMN definition integer NOT NULL DEFAULT 1,
    ADD COLUMN opening_period_start timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN opening_spent numeric(30, 12) NOT NULL DEFAULT 0;

-- A scope as the members it names, sorted (`{attributes.team,model}`), and their values in that order as text
-- (numbers and booleans by their JSON text, as `usage_member_value` gives a record's): a record is covered when its
-- values for those members are these. The ledger matches a batch to budgets by hashing on the pair, so thousands of
-- budgets cost a lookup per record and per distinct set of members, not a comparison per record and budget.
CREATE FUNCTION budget_scope_members(scope jsonb) RETURNS text[] LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT coalesce(array_agg(member ORDER BY member), '{}') FROM (
        SELECT CASE name WHEN 'key_id' THEN 'key' ELSE name END AS member
        FROM jsonb_object_keys(scope - 'attributes') AS name
        UNION ALL
        SELECT 'attributes.' || name FROM jsonb_object_keys(coalesce(scope -> 'attributes', '{}'::jsonb)) AS name
    ) AS members
$$;

CREATE FUNCTION budget_scope_values(scope jsonb) RETURNS text[] LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT coalesce(array_agg(value ORDER BY member), '{}') FROM (
        SELECT CASE name WHEN 'key_id' THEN 'key' ELSE name END AS member, scope ->> name AS value
        FROM jsonb_object_keys(scope - 'attributes') AS name
        UNION ALL
        SELECT 'attributes.' || name,
               CASE jsonb_typeof(v) WHEN 'string' THEN v #>> '{}' ELSE v::text END
        FROM jsonb_each(coalesce(scope -> 'attributes', '{}'::jsonb)) AS a(name, v)
    ) AS members
$$;

ALTER TABLE budgets
    ADD COLUMN scope_members text[] GENERATED ALWAYS AS (budget_scope_members(scope)) STORED,
    ADD COLUMN scope_values text[] GENERATED ALWAYS AS (budget_scope_values(scope)) STORED;
CREATE INDEX budgets_live_scope ON budgets (scope_members, scope_values) WHERE deleted_at IS NULL;

-- A record's values for a list of members, in order: what `scope_values` is compared with.
CREATE FUNCTION usage_member_values(members text[], key_id bigint, source text, provider text, model text,
                                    attributes jsonb)
RETURNS text[] LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT coalesce(array_agg(usage_member_value(m, key_id, source, provider, model, attributes) ORDER BY n), '{}')
    FROM unnest(members) WITH ORDINALITY AS x(m, n)
$$;

-- The ledger's: each budget's spend per period (under one definition), kept in the transaction that records the
-- usage; the definition's first period starts from its opening. `last_added` is the part the latest transaction
-- added, so that the statement that adds it also knows the spend before it.
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
