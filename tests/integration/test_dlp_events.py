"""Every DLP finding leaves an event row (detector, action, project, request id) and never the value."""
from __future__ import annotations

import sqlite3
import time

import openai

from tests.fixtures.gateway import base_config, files_at_rest


def test_findings_are_stored_as_event_rows_without_values(gateway_factory, tmp_path):
    cfg = base_config(tmp_path, pipeline=[{"dlp": {"default_action": "mask"}}, "router"])
    gw = gateway_factory(cfg)
    c = openai.OpenAI(base_url=gw.base_url, api_key="k", max_retries=0)
    raw = c.chat.completions.with_raw_response.create(
        model="mock", messages=[{"role": "user", "content": "mail jane.doe@example.com or call +14155552671"}])
    rid = raw.headers["x-request-id"]
    assert "jane.doe@example.com" in raw.parse().choices[0].message.content  # restored for the client
    db = tmp_path / "watchllm.db"
    rows: list = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(rows) < 2:
        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT request_id, project_id, detector, action FROM dlp_events").fetchall()
        time.sleep(0.2)
    assert sorted(r[2] for r in rows) == ["email", "phone"]
    assert {r[0] for r in rows} == {rid} and {r[3] for r in rows} == {"mask"}
    gw.stop()
    blob = files_at_rest(tmp_path)
    assert b"jane.doe@example.com" not in blob and b"4155552671" not in blob
