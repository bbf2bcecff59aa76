-- 0001: tenancy (orgs, users, teams, projects, keys), usage, DLP events, alerts and webhooks.
-- Money is integer micro-USD. Times are Unix seconds (REAL). Ids are TEXT.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE orgs (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL
);

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    org_id        TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    REAL NOT NULL,
    last_login_at REAL
);
CREATE INDEX users_org ON users(org_id);

-- Failed logins per (lower-cased) email, whether or not the user exists (no enumeration).
CREATE TABLE login_failures (
    email        TEXT PRIMARY KEY,
    failures     INTEGER NOT NULL,
    first_at     REAL NOT NULL,
    locked_until REAL
);

-- Admin JWT denylist (logout, refresh rotation); rows can be purged after expires_at.
CREATE TABLE revoked_tokens (
    jti        TEXT PRIMARY KEY,
    expires_at REAL NOT NULL
);

CREATE TABLE teams (
    id         TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (org_id, name)
);

CREATE TABLE team_members (
    team_id    TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role       TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    created_at REAL NOT NULL,
    PRIMARY KEY (team_id, user_id)
);

-- A project is the tenant: keys, counters, cache entries and usage rows are scoped by its id.
-- settings: JSON with the per-tenant limits and budget (see gateway/store/projects.py).
CREATE TABLE projects (
    id         TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    team_id    TEXT REFERENCES teams(id) ON DELETE SET NULL,
    name       TEXT NOT NULL,
    plan       TEXT NOT NULL DEFAULT 'free',
    settings   TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    UNIQUE (org_id, name)
);

-- Only a hash of the secret is stored; id is the public key id embedded in the key.
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    project_id   TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name         TEXT NOT NULL DEFAULT '',
    prefix       TEXT NOT NULL,
    secret_hash  BLOB NOT NULL,
    is_test      INTEGER NOT NULL DEFAULT 0,
    created_at   REAL NOT NULL,
    created_by   TEXT,
    expires_at   REAL,
    revoked_at   REAL,
    last_used_at REAL
);
CREATE INDEX api_keys_project ON api_keys(project_id);

-- AES-256-GCM ciphertext (gateway/crypto.py); AAD binds project_id and provider.
CREATE TABLE provider_keys (
    project_id  TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    provider    TEXT NOT NULL,
    ciphertext  BLOB NOT NULL,
    key_id      TEXT NOT NULL,
    hint        TEXT NOT NULL DEFAULT '',
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    PRIMARY KEY (project_id, provider)
);

-- One row per request, id = request id (INSERT OR IGNORE makes retries idempotent).
CREATE TABLE usage (
    id                TEXT PRIMARY KEY,
    project_id        TEXT NOT NULL,
    key_id            TEXT,
    model_requested   TEXT,
    model_served      TEXT,
    provider          TEXT,
    attempts          INTEGER NOT NULL DEFAULT 0,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost_micros       INTEGER NOT NULL DEFAULT 0,
    cached            TEXT,
    tokens_saved      INTEGER NOT NULL DEFAULT 0,
    cost_saved_micros INTEGER NOT NULL DEFAULT 0,
    latency_ms        REAL,
    ttft_ms           REAL,
    status            INTEGER,
    error_code        TEXT,
    dlp_findings      TEXT,
    created_at        REAL NOT NULL
);
CREATE INDEX usage_project_time ON usage(project_id, created_at);

CREATE TABLE dlp_events (
    id         TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    project_id TEXT NOT NULL,
    detector   TEXT NOT NULL,
    action     TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX dlp_events_project_time ON dlp_events(project_id, created_at);

CREATE TABLE alerts (
    id            TEXT PRIMARY KEY,
    org_id        TEXT NOT NULL,
    project_id    TEXT,
    name          TEXT NOT NULL,
    metric        TEXT NOT NULL,
    threshold     REAL NOT NULL,
    window_s      INTEGER NOT NULL DEFAULT 300,
    channel       TEXT NOT NULL DEFAULT 'webhook',
    target        TEXT,
    enabled       INTEGER NOT NULL DEFAULT 1,
    settings      TEXT NOT NULL DEFAULT '{}',
    created_at    REAL NOT NULL,
    last_fired_at REAL
);
CREATE INDEX alerts_org ON alerts(org_id);

CREATE TABLE alert_events (
    id         TEXT PRIMARY KEY,
    alert_id   TEXT NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
    project_id TEXT,
    value      REAL,
    message    TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL
);
CREATE INDEX alert_events_alert_time ON alert_events(alert_id, created_at);

CREATE TABLE webhooks (
    id         TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL,
    project_id TEXT,
    url        TEXT NOT NULL,
    secret     BLOB,
    events     TEXT NOT NULL DEFAULT '[]',
    enabled    INTEGER NOT NULL DEFAULT 1,
    created_at REAL NOT NULL
);
CREATE INDEX webhooks_org ON webhooks(org_id);

CREATE TABLE webhook_deliveries (
    id              TEXT PRIMARY KEY,
    webhook_id      TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event           TEXT NOT NULL,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL,
    last_error      TEXT,
    created_at      REAL NOT NULL,
    delivered_at    REAL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
