-- GET /data?model=… (or source, provider): the hours holding such usage, newest first, read off the hourly roll-up
-- through these instead of reading usage_events through its time index until enough records turn up. The roll-up
-- gets a row per group and hour, so these stay small, and folding mostly updates rows in place (HOT) without them.
CREATE INDEX usage_rollup_hourly_model ON usage_rollup_hourly (model, bucket DESC);
CREATE INDEX usage_rollup_hourly_source ON usage_rollup_hourly (source, bucket DESC);
CREATE INDEX usage_rollup_hourly_provider ON usage_rollup_hourly (provider, bucket DESC);
