-- DELETE /reset clears recorded usage, which is the ledger's data: the api calls this function, offered by the
-- ledger's schema, instead of writing the ledger's tables itself. It runs with its owner's rights (SECURITY DEFINER),
-- so a role that may only read those tables can still call it where it is granted EXECUTE (cg_common.ownership).
CREATE FUNCTION clear_usage() RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp
AS $$ TRUNCATE usage_events, usage_rollup_hourly, usage_rollup_daily, usage_rollup_pending $$;

REVOKE EXECUTE ON FUNCTION clear_usage() FROM PUBLIC;
