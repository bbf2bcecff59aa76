-- 0002: usage columns and indexes for observability and analytics (issue 6).
-- endpoint/ended/upstream_ms/source describe the request; request_text/response_text hold
-- the optional per-project capture (off by default, DLP-masked when on).

ALTER TABLE usage ADD COLUMN endpoint TEXT;
ALTER TABLE usage ADD COLUMN ended TEXT;
ALTER TABLE usage ADD COLUMN upstream_ms REAL;
ALTER TABLE usage ADD COLUMN source TEXT NOT NULL DEFAULT 'proxy';
ALTER TABLE usage ADD COLUMN request_text TEXT;
ALTER TABLE usage ADD COLUMN response_text TEXT;

-- Retention purge and org-wide time ranges scan by time alone.
CREATE INDEX usage_time ON usage(created_at);
