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
