-- Access for many systems (docs/access.md): API tokens, the dashboard's server-side sessions, and the audit log.
-- All three belong to the api.

-- A token is `cg_<public_id>_<secret>`: the public id finds the row through its unique index (no scan), the
-- secret's SHA-256 is compared in constant time. The secret is 32 random bytes, so a plain hash is enough.
CREATE TABLE api_tokens (
    id               bigserial PRIMARY KEY,
    public_id        text        NOT NULL UNIQUE,
    secret_sha256    bytea       NOT NULL,
    name             text        NOT NULL,
    scopes           text[]      NOT NULL,
    sources          text[],
    rate_limit_rpm   integer,
    rate_limit_burst integer,
    created_at       timestamptz NOT NULL DEFAULT now(),
    created_by       text        NOT NULL,
    expires_at       timestamptz,
    revoked_at       timestamptz,
    last_used_at     timestamptz
);

-- A dashboard sign-in: the web holds only the session's secret (in its cookie); the session ends when signed out,
-- when it expires, when its token is revoked, or when API_KEY changes (admin sessions keep a digest of the key
-- they were opened with).
CREATE TABLE dashboard_sessions (
    secret_sha256    bytea PRIMARY KEY,
    token_id         bigint REFERENCES api_tokens (id),
    admin_key_digest bytea,
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    CHECK ((token_id IS NULL) <> (admin_key_digest IS NULL))
);
CREATE INDEX dashboard_sessions_token ON dashboard_sessions (token_id);

CREATE TABLE audit_log (
    id         bigserial PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    credential text        NOT NULL,
    method     text        NOT NULL,
    path       text        NOT NULL,
    target     text,
    status     integer     NOT NULL
);
