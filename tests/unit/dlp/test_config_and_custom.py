"""YAML options: unknown names and bad patterns fail at start-up with the key; custom detectors work."""
from __future__ import annotations

import pytest

from gateway.schema import SchemaError
from gateway.testing import ScriptedNext, make_call

from .conftest import chat, make_dlp


def test_unknown_detector_name_in_actions_is_a_startup_error_naming_it():
    with pytest.raises(SchemaError) as exc:
        make_dlp(actions={"credit_crad": "block"})
    assert "credit_crad" in str(exc.value) and "credit_card" in str(exc.value)


def test_unknown_action_and_unknown_key_are_rejected():
    with pytest.raises(SchemaError, match="actions.email"):
        make_dlp(actions={"email": "shred"})
    with pytest.raises(SchemaError, match="scan_responses: unknown key"):
        make_dlp(scan_responses=True)


def test_custom_pattern_that_re2_cannot_compile_is_rejected():
    with pytest.raises(SchemaError, match="not valid RE2"):
        make_dlp(custom=[{"name": "emp", "pattern": r"(a)\1"}])  # back-references are not linear


def test_custom_validator_must_exist():
    with pytest.raises(SchemaError, match="unknown validator"):
        make_dlp(custom=[{"name": "emp", "pattern": r"E\d+", "validator": "crc99"}])


async def test_custom_detector_with_validator_context_and_its_own_action():
    dlp = make_dlp(custom=[{
        "name": "employee_card", "pattern": r"\bEMP-(\d{8})\b", "validator": "luhn",
        "context": ["employee", "badge"], "label": "EMPLOYEE", "action": "redact",
    }])
    call = make_call(chat("employee badge EMP-79927398 and EMP-79927391, order EMP-12345674"))
    nxt = ScriptedNext(text="ok")
    await dlp(call, nxt)
    # group 1 is the value; Luhn rejects ...91; "employee" is within 48 chars of the third
    assert nxt.bodies[0]["messages"][0]["content"] == "employee badge EMP-[EMPLOYEE] and EMP-79927391, order EMP-[EMPLOYEE]"
    assert call.facts.dlp_findings == {"employee_card": 2}


async def test_custom_detector_without_context_word_nearby_is_ignored():
    dlp = make_dlp(custom=[{"name": "project_code", "pattern": r"\bPRJ-\d{4}\b", "context": ["confidential"],
                            "context_window": 20}])
    call = make_call(chat("PRJ-1234 is public. " + "x" * 40 + " confidential: PRJ-9876"))
    nxt = ScriptedNext(text="ok")
    await dlp(call, nxt)
    assert nxt.bodies[0]["messages"][0]["content"].startswith("PRJ-1234 is public.")
    assert nxt.bodies[0]["messages"][0]["content"].endswith("confidential: [PROJECT_CODE_1]")


async def test_disabled_detectors_do_not_run():
    dlp = make_dlp(disabled=["ipv4"])
    call = make_call(chat("ping 10.0.0.7"))
    nxt = ScriptedNext(text="ok")
    await dlp(call, nxt)
    assert nxt.bodies[0]["messages"][0]["content"] == "ping 10.0.0.7"
