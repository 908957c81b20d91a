-- What providers billed, as their own cost reports say (OpenAI's /organization/costs), per UTC day, project and line
-- item; written by the ledger from cg.billing.*. A revised figure replaces the earlier one.
CREATE TABLE billed_costs (
    source      text           NOT NULL,  -- //openai.com/organization/<admin key fingerprint>
    day         date           NOT NULL,
    project_id  text           NOT NULL DEFAULT '',
    line_item   text           NOT NULL DEFAULT '',
    amount      numeric(30, 12) NOT NULL,
    currency    text           NOT NULL,
    pulled_at   timestamptz    NOT NULL,
    recorded_at timestamptz    NOT NULL DEFAULT now(),
    PRIMARY KEY (source, day, project_id, line_item)
);

CREATE INDEX billed_costs_day ON billed_costs (day);
