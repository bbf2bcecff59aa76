-- 0003: alert state and webhook delivery attempts (issue 6).
-- alerts.state is 'ok' or 'firing': an alert fires on the ok → firing transition only,
-- made with a conditional UPDATE so several worker processes never fire it twice.
-- alert_events.kind is 'fired' or 'resolved'. webhook_deliveries keeps one row per
-- (event, webhook) with every attempt in attempt_log (JSON list).

ALTER TABLE alerts ADD COLUMN state TEXT NOT NULL DEFAULT 'ok';
ALTER TABLE alerts ADD COLUMN last_value REAL;
ALTER TABLE alerts ADD COLUMN last_evaluated_at REAL;
ALTER TABLE alerts ADD COLUMN updated_at REAL;

ALTER TABLE alert_events ADD COLUMN org_id TEXT;
ALTER TABLE alert_events ADD COLUMN kind TEXT NOT NULL DEFAULT 'fired';
ALTER TABLE alert_events ADD COLUMN threshold REAL;
CREATE INDEX alert_events_org_time ON alert_events(org_id, created_at);

ALTER TABLE webhooks ADD COLUMN name TEXT NOT NULL DEFAULT '';

ALTER TABLE webhook_deliveries ADD COLUMN event_id TEXT;
ALTER TABLE webhook_deliveries ADD COLUMN response_status INTEGER;
ALTER TABLE webhook_deliveries ADD COLUMN attempt_log TEXT NOT NULL DEFAULT '[]';
CREATE INDEX webhook_deliveries_hook_time ON webhook_deliveries(webhook_id, created_at);
