"""calculator: arithmetic only, bounded; current_time: IANA zones; the schema checker."""
from __future__ import annotations

import datetime as dt

import pytest

from gateway.testing import make_call, make_services
from plugins.tools.calculator import Calculator, CalculatorError, evaluate
from plugins.tools.current_time import CurrentTime
from plugins.tools.schema_check import check_arguments


@pytest.mark.parametrize("expr,value", [
    ("(2+3)*4", 20), ("2^10", 1024), ("7 // 2", 3), ("7 % 4", 3), ("-3 + +2", -1), ("sqrt(16)", 4.0),
    ("round(pi, 2)", 3.14), ("max(1, 5, 3)", 5), ("1e3 / 8", 125.0),
])
def test_calculator_evaluates_arithmetic(expr, value):
    assert evaluate(expr) == value


@pytest.mark.parametrize("expr", [
    "__import__('os').system('id')", "().__class__", "open('/etc/passwd')", "a", "x = 1", "lambda: 1",
    "[1, 2]", "'ab' * 3", "9**9**9", "10**1001", "1/0", "sqrt(-1)", "2" * 600, "", "True + 1", "f(1)",
])
def test_calculator_refuses_everything_else(expr):
    with pytest.raises(CalculatorError):
        evaluate(expr)


async def test_calculator_tool_returns_result_dict():
    tool = Calculator(Calculator.Config(), make_services())
    assert await tool({"expression": "6*7"}, make_call({"model": "m", "messages": []})) == {"expression": "6*7", "result": 42}


async def test_current_time_in_a_named_zone():
    fixed = dt.datetime(2024, 7, 1, 12, 0, tzinfo=dt.timezone.utc)
    tool = CurrentTime(CurrentTime.Config(), make_services(), clock=lambda: fixed)
    out = await tool({"timezone": "Asia/Tokyo"}, make_call({"model": "m", "messages": []}))
    assert out["time"] == "21:00:00" and out["utc_offset"] == "+09:00" and out["weekday"] == "Monday"
    assert (await tool({}, make_call({"model": "m", "messages": []})))["timezone"] == "UTC"
    with pytest.raises(ValueError, match="unknown time zone"):
        await tool({"timezone": "Mars/Olympus"}, make_call({"model": "m", "messages": []}))


def test_current_time_refuses_a_bad_default_at_startup():
    with pytest.raises(Exception):
        CurrentTime(CurrentTime.Config(default_timezone="Nowhere/Land"), make_services())


def test_schema_checker_reports_every_problem():
    schema = Calculator.parameters
    assert check_arguments(schema, {"expression": "1+1"}) == []
    assert check_arguments(schema, {}) == ["arguments.expression: is required"]
    assert check_arguments(schema, {"expression": 5}) == ["arguments.expression: expected string, got int"]
    assert check_arguments(schema, {"expression": "1", "x": 1}) == ["arguments.x: unexpected property"]
    assert check_arguments({"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}}, {"n": 0}) == ["arguments.n: must be >= 1"]
    assert check_arguments({"type": "object", "properties": {"n": {"type": "integer"}}}, {"n": True})
    assert check_arguments({"type": "array", "items": {"enum": ["a"]}}, ["a", "b"]) == ["arguments[1]: must be one of ['a']"]
