"""A small arithmetic evaluator for the ``eval(...)`` strings of SparseML recipes.

Recipes are files from elsewhere, so their expressions are never given to Python's ``eval``.
They are parsed with ``ast`` and walked here, node by node, over a whitelist:

* numbers (int, float) and names of recipe variables,
* ``+ - * / // % **``, unary ``-`` and ``+``, parentheses,
* calls of ``int float abs min max round`` with positional arguments.

Everything else (attributes, subscripts, other calls, lambdas, comprehensions, strings,
comparisons, ...) is a ConfigError. Size guards keep a hostile recipe from hanging or
exhausting memory: expression length, nesting depth, ``**`` exponents and result magnitude.
"""

from __future__ import annotations

import ast
import math
import operator
from typing import Any, Callable, Dict, Mapping, Set, Union

from acdc_exp.errors import ConfigError

Number = Union[int, float]

MAX_EXPR_CHARS = 500
MAX_DEPTH = 32
MAX_EXPONENT = 1000
MAX_MAGNITUDE = 1e18

ALLOWED = "numbers, recipe variables, + - * / // % ** , unary -/+, parentheses and calls of int, float, abs, min, max, round"

_BINOPS: Dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: Dict[type, Callable[[Any], Any]] = {ast.USub: operator.neg, ast.UAdd: operator.pos}
# name -> (function, minimum positional args, maximum positional args)
_FUNCS: Dict[str, tuple] = {
    "int": (int, 1, 1),
    "float": (float, 1, 1),
    "abs": (abs, 1, 1),
    "min": (min, 2, 64),
    "max": (max, 2, 64),
    "round": (round, 1, 2),
}


def is_expression(value: Any) -> bool:
    """True for a recipe string of the form ``eval(...)``."""
    return isinstance(value, str) and value.strip().startswith("eval(") and value.strip().endswith(")")


def expression_body(value: str) -> str:
    """``eval(a + b)`` -> ``a + b``."""
    return value.strip()[len("eval(") : -1]


def _refuse(expr: str, why: str) -> ConfigError:
    return ConfigError(f"recipe expression {expr!r} is not allowed ({why}); allowed: {ALLOWED}")


def parse_expression(expr: str) -> ast.Expression:
    """Parse and check an expression body without evaluating it."""
    if not isinstance(expr, str):
        raise ConfigError(f"recipe expression {expr!r} is not a string; allowed: {ALLOWED}")
    if len(expr) > MAX_EXPR_CHARS:
        shown = expr[:40] + "..."
        raise ConfigError(f"recipe expression {shown!r} is {len(expr)} characters long; allowed: at most {MAX_EXPR_CHARS}")
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as err:
        raise _refuse(expr, f"not a valid expression: {type(err).__name__}") from None
    _check(tree.body, expr, 1)
    return tree


def _check(node: ast.AST, expr: str, depth: int) -> None:
    """Structural whitelist, before anything is evaluated."""
    if depth > MAX_DEPTH:
        raise _refuse(expr, f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise _refuse(expr, f"literal {node.value!r} is not a number")
    elif isinstance(node, ast.Name):
        pass  # checked against the recipe's variables at evaluation
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _BINOPS:
            raise _refuse(expr, f"operator {type(node.op).__name__}")
        _check(node.left, expr, depth + 1)
        _check(node.right, expr, depth + 1)
    elif isinstance(node, ast.UnaryOp):
        if type(node.op) not in _UNARY:
            raise _refuse(expr, f"operator {type(node.op).__name__}")
        _check(node.operand, expr, depth + 1)
    elif isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCS:
            what = node.func.id if isinstance(node.func, ast.Name) else type(node.func).__name__
            raise _refuse(expr, f"call of {what}")
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise _refuse(expr, f"keyword or * arguments to {node.func.id}")
        _, lo, hi = _FUNCS[node.func.id]
        if not lo <= len(node.args) <= hi:
            raise _refuse(expr, f"{node.func.id} takes {lo}..{hi} arguments, got {len(node.args)}")
        for arg in node.args:
            _check(arg, expr, depth + 1)
    else:
        raise _refuse(expr, f"{type(node).__name__} syntax")


def referenced_names(tree: ast.Expression) -> Set[str]:
    """Variable names an expression reads (function names of calls excluded)."""
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in called}


def _number(value: Any, expr: str, what: str) -> Number:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _refuse(expr, f"{what} is {value!r}, not a number")
    return value


def _bounded(value: Any, expr: str) -> Number:
    if isinstance(value, complex):
        raise _refuse(expr, "result is a complex number")
    if isinstance(value, float) and not math.isfinite(value):
        raise _refuse(expr, f"result {value} is not finite")
    if abs(value) > MAX_MAGNITUDE:
        raise _refuse(expr, f"result exceeds {MAX_MAGNITUDE:g} in magnitude")
    return value


def _power(base: Number, exp: Number, expr: str) -> Number:
    # Refuse before computing: 9**9**9 would take minutes and gigabytes.
    if abs(exp) > MAX_EXPONENT:
        raise _refuse(expr, f"exponent {exp} exceeds {MAX_EXPONENT}")
    if abs(base) > 1 and exp > 0 and exp * math.log10(abs(base)) > math.log10(MAX_MAGNITUDE) + 1:
        raise _refuse(expr, f"result exceeds {MAX_MAGNITUDE:g} in magnitude")
    return base**exp


def _eval(node: ast.AST, env: Mapping[str, Any], expr: str) -> Any:
    if isinstance(node, ast.Constant):
        return _bounded(node.value, expr)
    if isinstance(node, ast.Name):
        if node.id not in env:
            known = ", ".join(sorted(env)) or "(none)"
            raise ConfigError(f"recipe expression {expr!r} uses {node.id!r}, which is not a recipe variable; defined: {known}")
        return env[node.id]
    if isinstance(node, ast.UnaryOp):
        value = _number(_eval(node.operand, env, expr), expr, "operand")
        return _bounded(_UNARY[type(node.op)](value), expr)
    if isinstance(node, ast.BinOp):
        left = _number(_eval(node.left, env, expr), expr, "left operand")
        right = _number(_eval(node.right, env, expr), expr, "right operand")
        if isinstance(node.op, ast.Pow):
            return _bounded(_power(left, right, expr), expr)
        try:
            return _bounded(_BINOPS[type(node.op)](left, right), expr)
        except ZeroDivisionError:
            raise ConfigError(f"recipe expression {expr!r} divides by zero") from None
    if isinstance(node, ast.Call):
        func = _FUNCS[node.func.id][0]
        args = [_number(_eval(a, env, expr), expr, f"argument of {node.func.id}") for a in node.args]
        # int rounding to -n digits builds 10**n: bound n like a ** exponent
        if node.func.id == "round" and len(args) == 2 and (not isinstance(args[1], int) or abs(args[1]) > 100):
            raise _refuse(expr, "round's digits must be an integer in [-100, 100]")
        try:
            return _bounded(func(*args), expr)
        except (OverflowError, ValueError) as err:
            raise _refuse(expr, f"{node.func.id} failed: {err}") from None
    raise _refuse(expr, f"{type(node).__name__} syntax")  # unreachable after _check


def evaluate(expr: str, env: Mapping[str, Any]) -> Any:
    """Value of an expression body (without the ``eval(...)`` wrapper) over ``env``.

    A bare variable name returns that variable whatever its type (so ``eval(mask)`` can copy a
    string variable); arithmetic needs numbers.
    """
    tree = parse_expression(expr)
    try:
        return _eval(tree.body, env, expr)
    except OverflowError:
        raise _refuse(expr, "numeric overflow") from None
