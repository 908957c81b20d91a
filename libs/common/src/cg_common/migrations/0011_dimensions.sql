-- Dimensions: the attributes named in DIMENSIONS (team, project, customer, feature, …), rolled up so that summaries
-- grouped or filtered by them read a few rows per day instead of every record.
--
-- A "grouping" is what one roll-up row is summed over besides its time bucket: one dimension (`attributes.team`), or
-- a pair (`attributes.team+attributes.project`, `attributes.team+model`) for queries that group by one and filter or
-- group by the other. The ledger keeps the list here (from its DIMENSIONS and DIMENSION_PAIRS settings) and reads it
-- in the very statement that records a batch, so every replica rolls up the same groupings whatever its settings.
-- A grouping added to a database that already holds usage is `complete` only once the ledger has rebuilt its
-- history from usage_events; until then the api answers queries on it from usage_events (exact, slower).
CREATE TABLE usage_rollup_groupings (
    grouping      text        PRIMARY KEY,
    first_member  text        NOT NULL,  -- `attributes.<name>`, or key, source, provider, model
    second_member text,                  -- NULL for a single dimension
    complete      boolean     NOT NULL DEFAULT false,
    changed_at    timestamptz NOT NULL DEFAULT now()
);

-- What a record holds for one member of a grouping, as text: NULL where the record lacks the attribute (or holds
-- JSON null); numbers and booleans by their JSON text. Inlined by the planner (a plain immutable SQL expression).
CREATE FUNCTION usage_member_value(member text, key_id bigint, source text, provider text, model text,
                                   attributes jsonb)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE member
        WHEN 'key' THEN key_id::text
        WHEN 'source' THEN source
        WHEN 'provider' THEN provider
        WHEN 'model' THEN model
        ELSE attributes ->> substr(member, 12)  -- after 'attributes.'
    END
$$;

-- The same three tables as for key, source, provider and model (0002, 0005): hourly and daily sums, and the sums of
-- committed batches not folded in yet. value2 is NULL for a single dimension; a NULL value1 or value2 means "no
-- such attribute" and groups like any other value.
CREATE TABLE usage_rollup_dimension_hourly (
    grouping            text        NOT NULL,
    bucket              timestamptz NOT NULL,  -- start of the UTC hour
    value1              text,
    value2              text,
    events              bigint      NOT NULL DEFAULT 0,
    requests            bigint      NOT NULL DEFAULT 0,
    input_tokens        bigint      NOT NULL DEFAULT 0,
    cached_input_tokens bigint      NOT NULL DEFAULT 0,
    output_tokens       bigint      NOT NULL DEFAULT 0,
    cost                numeric(30, 12) NOT NULL DEFAULT 0,
    unpriced_events     bigint      NOT NULL DEFAULT 0,
    CONSTRAINT usage_rollup_dimension_hourly_group UNIQUE NULLS NOT DISTINCT (grouping, bucket, value1, value2)
) WITH (fillfactor = 80);

CREATE TABLE usage_rollup_dimension_daily (
    grouping            text        NOT NULL,
    bucket              date        NOT NULL,  -- the UTC day
    value1              text,
    value2              text,
    events              bigint      NOT NULL DEFAULT 0,
    requests            bigint      NOT NULL DEFAULT 0,
    input_tokens        bigint      NOT NULL DEFAULT 0,
    cached_input_tokens bigint      NOT NULL DEFAULT 0,
    output_tokens       bigint      NOT NULL DEFAULT 0,
    cost                numeric(30, 12) NOT NULL DEFAULT 0,
    unpriced_events     bigint      NOT NULL DEFAULT 0,
    CONSTRAINT usage_rollup_dimension_daily_group UNIQUE NULLS NOT DISTINCT (grouping, bucket, value1, value2)
) WITH (fillfactor = 80);

CREATE TABLE usage_rollup_dimension_pending (
    grouping            text        NOT NULL,
    bucket              timestamptz NOT NULL,
    value1              text,
    value2              text,
    events              bigint      NOT NULL,
    requests            bigint      NOT NULL,
    input_tokens        bigint      NOT NULL,
    cached_input_tokens bigint      NOT NULL,
    output_tokens       bigint      NOT NULL,
    cost                numeric(30, 12) NOT NULL,
    unpriced_events     bigint      NOT NULL
);

-- One value of a dimension over time (`?attributes.project=…`, and GET /data's look-up of the hours holding it); the
-- unique constraints serve a whole grouping over a range.
CREATE INDEX usage_rollup_dimension_hourly_value1 ON usage_rollup_dimension_hourly (grouping, value1, bucket DESC);
CREATE INDEX usage_rollup_dimension_daily_value1 ON usage_rollup_dimension_daily (grouping, value1, bucket);
CREATE INDEX usage_rollup_dimension_daily_value2 ON usage_rollup_dimension_daily (grouping, value2, bucket)
    WHERE value2 IS NOT NULL;

CREATE OR REPLACE FUNCTION clear_usage() RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp
AS $$ TRUNCATE usage_events, usage_rollup_hourly, usage_rollup_daily, usage_rollup_pending,
               usage_rollup_dimension_hourly, usage_rollup_dimension_daily, usage_rollup_dimension_pending $$;
