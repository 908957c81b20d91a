-- Forecast alerts (docs/budgets.md, "Forecast"): the ledger keeps each budget's spend per hour too, in the same
-- statement as its spend per period, so that the recent burn rate (the last 24 hours) is a handful of rows; a
-- `budget.forecast` alert carries the projected spend that crossed the amount.
CREATE TABLE budget_spend_hourly (
    budget_id  bigint      NOT NULL REFERENCES budgets (id),
    definition integer     NOT NULL,
    hour       timestamptz NOT NULL,
    spent      numeric(30, 12) NOT NULL,
    PRIMARY KEY (budget_id, definition, hour)
);

ALTER TABLE budget_alerts ADD COLUMN forecast numeric(30, 12);
