"""The ``calculator`` tool: safe arithmetic on an expression, parsed with ``ast``, never ``eval``.

Only numbers, + - * / // % **, unary signs, parentheses, a few math functions and
the constants pi, e and tau are accepted. Exponents and results are bounded so a
model cannot ask for ``9**9**9`` and pin a core.
"""
from __future__ import annotations

import ast
import math
import operator
from dataclasses import dataclass, field
from typing import Any, Callable

from gateway.call import Call
from gateway.plugin import Services

__all__ = ["Calculator", "CalculatorConfig", "evaluate", "CalculatorError"]


class CalculatorError(ValueError):
    pass


@dataclass(frozen=True, kw_only=True)
class CalculatorConfig:
    max_length: int = field(default=500, metadata={"help": "longest expression accepted, in characters"})
    max_exponent: float = field(default=1000.0, metadata={"help": "largest |exponent| for **"})
    timeout: float = 1.0


_BIN: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt, "abs": abs, "round": round, "floor": math.floor, "ceil": math.ceil,
    "sin": math.sin, "cos": math.cos, "tan": math.tan, "log": math.log, "log10": math.log10, "log2": math.log2,
    "exp": math.exp, "min": min, "max": max,
}
_CONSTS = {"pi": math.pi, "e": math.e, "tau": math.tau}
_MAX_MAGNITUDE = 1e300


def evaluate(expression: str, *, max_length: int = 500, max_exponent: float = 1000.0) -> int | float:
    """The value of an arithmetic expression; CalculatorError for anything else."""
    expr = expression.replace("^", "**").replace("×", "*").replace("÷", "/").strip()
    if not expr:
        raise CalculatorError("empty expression")
    if len(expr) > max_length:
        raise CalculatorError(f"expression longer than {max_length} characters")
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as exc:
        raise CalculatorError(f"not an arithmetic expression: {exc.msg}") from None

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow) and (abs(right) > max_exponent or (abs(left) > 1 and abs(right) * math.log10(abs(left)) > 300)):
                raise CalculatorError("exponent too large")
            try:
                out = _BIN[type(node.op)](left, right)
            except ZeroDivisionError:
                raise CalculatorError("division by zero") from None
            return _bounded(out)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](ev(node.operand))
        if isinstance(node, ast.Name) and node.id in _CONSTS:
            return _CONSTS[node.id]
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS and not node.keywords:
            args = [ev(a) for a in node.args]
            try:
                return _bounded(_FUNCS[node.func.id](*args))
            except (ValueError, TypeError, OverflowError) as exc:
                raise CalculatorError(f"{node.func.id}: {exc}") from None
        raise CalculatorError(f"unsupported syntax: {ast.dump(node)[:60]}" if not isinstance(node, ast.Name) else f"unknown name {node.id!r}")

    return ev(tree)


def _bounded(value: Any) -> Any:
    if isinstance(value, complex):
        raise CalculatorError("complex result")
    if isinstance(value, (int, float)) and (abs(value) > _MAX_MAGNITUDE or (isinstance(value, float) and math.isnan(value))):
        raise CalculatorError("result out of range")
    return value


class Calculator:
    """Evaluate an arithmetic expression exactly as written."""

    Config = CalculatorConfig
    name = "calculator"
    description = "Evaluate an arithmetic expression (+ - * / // % ** and sqrt, abs, round, floor, ceil, sin, cos, tan, log, exp, min, max, pi, e)."
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {"expression": {"type": "string", "description": "e.g. (2+3)*4 or sqrt(2)/2", "minLength": 1}},
        "required": ["expression"],
        "additionalProperties": False,
    }

    def __init__(self, config: CalculatorConfig, services: Services) -> None:
        self.cfg = config
        self.timeout = config.timeout

    async def __call__(self, arguments: dict[str, Any], call: Call) -> dict[str, Any]:
        value = evaluate(str(arguments["expression"]), max_length=self.cfg.max_length, max_exponent=self.cfg.max_exponent)
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
            value = int(value)
        return {"expression": arguments["expression"], "result": value}
