-- Admission (docs/admission.md): reservations against hard budgets, decided here, in PostgreSQL, the source of truth.
-- All of it is the api's; the ledger settles a reservation through `settle_reservations`, in the transaction that
-- records the usage event naming it.
--
-- The guarantee, for every hard budget: spent + live reservations never exceeds the amount through admitted
-- requests. Each hard budget has one `budget_holds` row: the sum of its live reservations, and the lock every admit,
-- settlement, release and expiry takes (in budget id order, and always before any reservation row, so that none of
-- them can deadlock another). An admit, holding the locks of every hard budget covering the request, reads each
-- one's spend in the current period and its holds, and either refuses or adds the amount to every one of them.

CREATE TABLE budget_holds (
    budget_id bigint PRIMARY KEY REFERENCES budgets (id),
    reserved  numeric(30, 12) NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    refusals  bigint NOT NULL DEFAULT 0
);

-- A reservation ends once: settled (by a usage event naming it), released (DELETE, the call was not made) or expired
-- (its ttl passed; swept within seconds). `budget_ids` are the hard budgets it holds money in, as decided at admit.
CREATE TABLE budget_reservations (
    id           uuid PRIMARY KEY,
    budget_ids   bigint[]    NOT NULL,
    amount       numeric(30, 12) NOT NULL CHECK (amount >= 0),
    request      jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    ended        text        CHECK (ended IN ('settled', 'released', 'expired')),
    ended_at     timestamptz,
    settled_cost numeric(30, 12),
    settled_by   text,  -- the usage event that settled it: source, a space, its id
    CHECK ((ended IS NULL) = (ended_at IS NULL))
);
CREATE INDEX budget_reservations_expiring ON budget_reservations (expires_at) WHERE ended IS NULL;
-- What ran over its reservation, per budget: the rare rows a budget's `overrun` adds up.
CREATE INDEX budget_reservations_overruns ON budget_reservations USING gin (budget_ids)
    WHERE ended = 'settled' AND settled_cost > amount;

-- Holds of these budgets locked, in id order (made first where missing: only those, since an insert that meets a
-- conflict still writes). Locked by updating each row in turn: on a row updated this often, an UPDATE costs less
-- than SELECT … FOR UPDATE, and the loop keeps the order.
CREATE FUNCTION lock_budget_holds(p_budget_ids bigint[]) RETURNS void LANGUAGE plpgsql
AS $$
DECLARE
    held bigint;
BEGIN
    INSERT INTO budget_holds (budget_id)
    SELECT DISTINCT wanted.id FROM unnest(p_budget_ids) AS wanted(id)
    WHERE NOT EXISTS (SELECT FROM budget_holds h WHERE h.budget_id = wanted.id)
    ORDER BY 1
    ON CONFLICT DO NOTHING;
    FOR held IN SELECT DISTINCT id FROM unnest(p_budget_ids) AS wanted(id) ORDER BY 1 LOOP
        UPDATE budget_holds SET reserved = reserved WHERE budget_id = held;
    END LOOP;
END
$$;

-- Admit or refuse each of a batch of requests, in order, in the caller's one transaction (one commit for many
-- admits: on a contended budget the commit, not the decision, is what costs). Each request is a JSON object:
-- id, key_id, source, provider, model, attributes, amount, ttl_secs, request. First the hard budgets covering each
-- (their scope's members and values, as the ledger matches usage), then every one of them locked at once in id
-- order (so that batches cannot deadlock), then each request in turn: refused by the first covering budget (in id
-- order) whose amount, less its spend in the current period (in its time zone, as the ledger counts it) and its
-- holds, is below the request's amount; else its amount is added to every covering budget's holds.
CREATE FUNCTION admit_reservations(p_requests jsonb)
RETURNS TABLE (n bigint, admitted boolean, budget_id bigint, budget_name text, remaining numeric,
               expires_at timestamptz)
LANGUAGE plpgsql
AS $$
DECLARE
    coverings text[];
    covering bigint[];
    req record;
    refusing record;
    expiry timestamptz;
BEGIN
    WITH shape AS (SELECT DISTINCT scope_members FROM budgets WHERE hard AND deleted_at IS NULL)
    SELECT array_agg(coalesce(found.ids, '') ORDER BY q.n) INTO coverings
    FROM jsonb_array_elements(p_requests) WITH ORDINALITY AS q(r, n)
    -- A fingerprint names the newest stored key with it, as the ledger attributes the usage event.
    CROSS JOIN LATERAL (
        SELECT coalesce((q.r ->> 'key_id')::bigint,
                        (SELECT k.id FROM api_keys k WHERE k.fingerprint = q.r ->> 'key_fingerprint'
                         ORDER BY k.id DESC LIMIT 1)) AS id
    ) AS key
    LEFT JOIN LATERAL (
        SELECT string_agg(b.id::text, ',' ORDER BY b.id) AS ids
        FROM shape JOIN budgets b
            ON b.hard AND b.deleted_at IS NULL AND b.scope_members = shape.scope_members
           AND b.scope_values = usage_member_values(shape.scope_members, key.id, q.r ->> 'source',
                                                    q.r ->> 'provider', q.r ->> 'model', q.r -> 'attributes')
    ) AS found ON true;
    PERFORM lock_budget_holds(ARRAY(
        SELECT DISTINCT id::bigint FROM unnest(string_to_array(array_to_string(coverings, ','), ',')) AS ids(id)
        WHERE id <> ''
    ));
    FOR req IN SELECT q.r, q.n FROM jsonb_array_elements(p_requests) WITH ORDINALITY AS q(r, n) ORDER BY q.n LOOP
        covering := coalesce(string_to_array(nullif(coverings[req.n], ''), ',')::bigint[], '{}');
        expiry := now() + make_interval(secs => (req.r ->> 'ttl_secs')::double precision);
        SELECT b.id, b.name, b.amount - h.reserved - coalesce(
                   s.spent, CASE WHEN b.opening_period_start = p.start THEN b.opening_spent ELSE 0 END) AS left_over
        INTO refusing
        FROM budgets b
        JOIN budget_holds h ON h.budget_id = b.id
        CROSS JOIN LATERAL (SELECT date_trunc(b.period, now(), b.timezone) AS start) AS p
        LEFT JOIN budget_spend s ON s.budget_id = b.id AND s.definition = b.definition AND s.period_start = p.start
        WHERE b.id = ANY(covering)
          AND b.amount - h.reserved
              - coalesce(s.spent, CASE WHEN b.opening_period_start = p.start THEN b.opening_spent ELSE 0 END)
              < (req.r ->> 'amount')::numeric
        ORDER BY b.id
        LIMIT 1;
        IF FOUND THEN
            UPDATE budget_holds SET refusals = refusals + 1 WHERE budget_holds.budget_id = refusing.id;
            RETURN QUERY SELECT req.n, false, refusing.id, refusing.name, greatest(refusing.left_over, 0),
                                NULL::timestamptz;
            CONTINUE;
        END IF;
        UPDATE budget_holds SET reserved = reserved + (req.r ->> 'amount')::numeric
        WHERE budget_holds.budget_id = ANY(covering);
        INSERT INTO budget_reservations (id, budget_ids, amount, request, expires_at)
        VALUES ((req.r ->> 'id')::uuid, covering, (req.r ->> 'amount')::numeric, req.r -> 'request', expiry);
        RETURN QUERY SELECT req.n, true, NULL::bigint, NULL::text, NULL::numeric, expiry;
    END LOOP;
END
$$;

-- End live reservations (those of `p_ids`, or, with p_ids NULL, up to p_limit whose ttl has passed) as `p_how`,
-- giving their money back to their budgets' holds. Returns the reservations ended, with their amount.
CREATE FUNCTION end_reservations(p_ids uuid[], p_how text, p_limit integer DEFAULT 1000)
RETURNS TABLE (id uuid, amount numeric)
LANGUAGE plpgsql
AS $$
DECLARE
    chosen uuid[];
BEGIN
    SELECT array_agg(r.id) INTO chosen FROM (
        SELECT r.id FROM budget_reservations r
        WHERE r.ended IS NULL AND (r.id = ANY(p_ids) OR (p_ids IS NULL AND r.expires_at <= now()))
        ORDER BY r.expires_at LIMIT p_limit
    ) AS r;
    IF chosen IS NULL THEN
        RETURN;
    END IF;
    PERFORM lock_budget_holds(ARRAY(SELECT DISTINCT unnest(r.budget_ids) FROM budget_reservations r
                                    WHERE r.id = ANY(chosen)));
    RETURN QUERY
    WITH ended AS (
        UPDATE budget_reservations r SET ended = p_how, ended_at = now()
        WHERE r.id = ANY(chosen) AND r.ended IS NULL
        RETURNING r.id, r.budget_ids, r.amount
    ),
    given_back AS (
        UPDATE budget_holds h SET reserved = h.reserved - t.total
        FROM (SELECT u.budget_id, sum(e.amount) AS total FROM ended e, unnest(e.budget_ids) AS u(budget_id)
              GROUP BY u.budget_id) AS t
        WHERE h.budget_id = t.budget_id
    )
    SELECT e.id, e.amount FROM ended e;
END
$$;

-- The ledger's way in: settle the reservations its just-recorded usage events name, in the transaction that
-- records them. A reservation already ended (released, expired, or settled by an earlier event) is left as it is:
-- the event's cost counts as spent all the same. Returns each settled reservation with what it ran over.
CREATE FUNCTION settle_reservations(p_ids uuid[], p_costs numeric[], p_events text[])
RETURNS TABLE (id uuid, overrun numeric)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
BEGIN
    PERFORM lock_budget_holds(ARRAY(SELECT DISTINCT unnest(r.budget_ids) FROM budget_reservations r
                                    WHERE r.id = ANY(p_ids) AND r.ended IS NULL));
    RETURN QUERY
    WITH given AS (
        SELECT DISTINCT ON (g.id) g.id, g.cost, g.event
        FROM unnest(p_ids, p_costs, p_events) AS g(id, cost, event) ORDER BY g.id
    ),
    ended AS (
        UPDATE budget_reservations r
        SET ended = 'settled', ended_at = now(), settled_cost = coalesce(g.cost, 0), settled_by = g.event
        FROM given g
        WHERE r.id = g.id AND r.ended IS NULL
        RETURNING r.id, r.budget_ids, r.amount, r.settled_cost
    ),
    given_back AS (
        UPDATE budget_holds h SET reserved = h.reserved - t.total
        FROM (SELECT u.budget_id, sum(e.amount) AS total FROM ended e, unnest(e.budget_ids) AS u(budget_id)
              GROUP BY u.budget_id) AS t
        WHERE h.budget_id = t.budget_id
    )
    SELECT e.id, greatest(e.settled_cost - e.amount, 0) FROM ended e;
END
$$;

REVOKE EXECUTE ON FUNCTION settle_reservations(uuid[], numeric[], text[]) FROM PUBLIC;
