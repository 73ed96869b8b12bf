"""A small, safe expression language for requirement limits (parsed with ast, never eval)."""

from __future__ import annotations

import ast
import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from rig.errors import ProfileError, RigError

__all__ = ["FUNCTIONS", "Expr", "ExprError", "compile_expr"]

# Limits in the ICD need nothing more than these; anything else is a typo or an attack.
FUNCTIONS = {"max": max, "min": min, "abs": abs}
_ARITY = {"max": (1, None), "min": (1, None), "abs": (1, 1)}
MAX_LENGTH = 500

_BINOPS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}


class ExprError(RigError):
    """An expression could not be evaluated (a name is not bound, division by zero)."""


@dataclass(frozen=True, slots=True)
class Expr:
    """A compiled limit expression: `str(expr)` is its source text, `names` the names it reads."""

    text: str
    names: frozenset[str]
    _node: ast.expr = field(repr=False, compare=False)

    def __str__(self) -> str:
        return self.text

    def evaluate(self, env: Mapping[str, float]) -> float:
        """The value of the expression with `env` binding its names."""
        missing = sorted(self.names - env.keys())
        if missing:
            raise ExprError(
                f"expression {self.text!r} needs {', '.join(missing)}, "
                f"not bound (bound: {', '.join(sorted(env)) or 'nothing'})"
            )
        try:
            value = _eval(self._node, env)
        except OverflowError:
            raise ExprError(f"expression {self.text!r} overflows with {dict(env)}") from None
        except ZeroDivisionError:
            raise ExprError(
                f"expression {self.text!r}: division by zero with {dict(env)}"
            ) from None
        if not math.isfinite(value):
            raise ExprError(f"expression {self.text!r} is not finite with {dict(env)}")
        return float(value)


def compile_expr(
    text: str | int | float,
    allowed_names: Iterable[str],
    where: str,
    *,
    path: str = "<expression>",
) -> Expr:
    """Parse and check `text`; raise ProfileError(path, where, ...) naming what is wrong.

    Numbers are accepted as well as strings, so `low = 0` needs no quotes in TOML.
    """
    allowed = frozenset(allowed_names)
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ProfileError(path, where, text, "an expression string or a number")
    source = str(text)
    if len(source) > MAX_LENGTH:
        # Bounds parsing and the checker's recursion; no real limit comes near it.
        raise ProfileError(path, where, source, f"an expression of at most {MAX_LENGTH} characters")
    try:
        with warnings.catch_warnings():
            # "1and 2"-style warnings would reach the user as noise; the checker refuses it.
            warnings.simplefilter("ignore", SyntaxWarning)
            tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise ProfileError(
            path, where, source, f"a valid expression (syntax error: {exc.msg})"
        ) from None
    except (ValueError, MemoryError, RecursionError) as exc:
        raise ProfileError(path, where, source, f"a valid expression ({exc!r})") from None
    names: set[str] = set()
    _check(tree.body, allowed, names, source, where, path)
    return Expr(source, frozenset(names), tree.body)


def _check(
    node: ast.AST, allowed: frozenset[str], names: set[str], source: str, where: str, path: str
) -> None:
    def refuse(what: str) -> ProfileError:
        known = ", ".join(sorted(allowed)) or "none"
        return ProfileError(
            path,
            where,
            source,
            f"numbers, names ({known}), + - * /, unary -, parentheses and "
            f"max/min/abs only; found {what}",
        )

    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise refuse(f"constant {node.value!r}")
        try:
            finite = math.isfinite(float(node.value))
        except OverflowError:
            finite = False
        if not finite:
            raise refuse(f"a number too large ({source[:20]}...)")
    elif isinstance(node, ast.Name):
        if node.id not in allowed:
            raise refuse(f"unknown name {node.id!r}")
        names.add(node.id)
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _BINOPS:
            raise refuse(f"operator {type(node.op).__name__}")
        _check(node.left, allowed, names, source, where, path)
        _check(node.right, allowed, names, source, where, path)
    elif isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, ast.USub | ast.UAdd):
            raise refuse(f"operator {type(node.op).__name__}")
        _check(node.operand, allowed, names, source, where, path)
    elif isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            raise refuse(f"call of {ast.unparse(node.func)!r}")
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise refuse(f"keyword or starred arguments in {node.func.id}()")
        low, high = _ARITY[node.func.id]
        if len(node.args) < low or (high is not None and len(node.args) > high):
            raise refuse(f"{node.func.id}() with {len(node.args)} arguments")
        for arg in node.args:
            _check(arg, allowed, names, source, where, path)
    else:
        raise refuse(type(node).__name__)


def _eval(node: ast.expr, env: Mapping[str, float]) -> float:
    # Only node types admitted by _check can reach here.
    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, ast.Name):
        return float(env[node.id])
    if isinstance(node, ast.BinOp):
        return _BINOPS[type(node.op)](_eval(node.left, env), _eval(node.right, env))
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, env)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Call):
        args = [_eval(a, env) for a in node.args]
        func = node.func
        assert isinstance(func, ast.Name)
        # max/min take the list so that a single argument works too.
        return abs(args[0]) if func.id == "abs" else FUNCTIONS[func.id](args)
    raise AssertionError(f"unchecked node {node!r}")
