"""Filter expressions over the runs list, such as `lr < 1e-3 and units >= 64` (pandas, no Streamlit).

The expression is parsed with `ast` and only comparisons, `and`/`or`/`not`, names, numbers, strings and True/False/None
are accepted; nothing is ever evaluated by Python. A name is an hparam, an epoch metric (its last value; `best_<metric>`
for its best one) or a column of the list (`name`, `status`, `group`, `tags`, `epochs`, `params`, `id`). A run that
lacks a value, or whose value is not comparable (text against a number), does not match.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable

import numpy as np
import pandas as pd

MAX_EXPRESSION_CHARS = 2000
MAX_NODES = 200
_COMPARE: dict[type, Callable[[object, object], object]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


class QueryError(ValueError):
    """An expression that cannot be used, with a message for the user."""


class Query:
    """A parsed filter expression.

    Args:
        text: the expression, e.g. `lr < 1e-3 and (units >= 64 or status == "running")`.

    Raises:
        QueryError: the text is not such an expression (the message says where and why).

    Example:
    ```python
    query = Query("lr < 1e-3 and best_val_loss < 0.5")
    mask = query.mask(lambda name: columns[name])  # a boolean Series, one entry per run
    ```
    """

    def __init__(self, text: str) -> None:
        self.text = text.strip()
        if len(self.text) > MAX_EXPRESSION_CHARS:
            raise QueryError(f"the expression is longer than {MAX_EXPRESSION_CHARS:,} characters")
        try:
            tree = ast.parse(self.text, mode="eval")
        except SyntaxError as exc:
            where = f" at character {exc.offset}" if exc.offset else ""
            raise QueryError(f"could not read the expression{where}: {exc.msg}. Write comparisons joined by and/or, "
                             'e.g. lr < 1e-3 and units >= 64 or name == "baseline"') from None
        if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
            raise QueryError(f"the expression has more than {MAX_NODES} parts")
        self._tree = tree.body
        self.names = sorted({node.id for node in ast.walk(tree) if isinstance(node, ast.Name)})
        self._check(self._tree, top=True)

    def _check(self, node: ast.AST, top: bool = False) -> None:
        if isinstance(node, ast.BoolOp):
            for value in node.values:
                self._check(value, top=True)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            self._check(node.operand, top=True)
        elif isinstance(node, ast.Compare) and top:
            for op in node.ops:
                if type(op) not in _COMPARE:
                    raise QueryError(f"{_describe(op)} is not supported: compare with == != < <= > >=")
            for operand in (node.left, *node.comparators):
                self._check(operand)
        elif isinstance(node, ast.Name):
            return
        elif isinstance(node, ast.Constant) and (node.value is None or isinstance(node.value, (int, float, str))):
            if top:
                raise QueryError(f"{node.value!r} alone is not a condition: compare it, e.g. lr < 1e-3")
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)) and isinstance(
                node.operand, ast.Constant) and isinstance(node.operand.value, (int, float)):
            return
        else:
            raise QueryError(f"{_describe(node)} is not allowed: use names, numbers, \"text\" and comparisons joined "
                             "by and/or/not")

    def mask(self, column: Callable[[str], pd.Series | None], length: int) -> pd.Series:
        """Which runs match: `column(name)` gives a name's values (one per run), or None for an unknown name."""
        columns: dict[str, pd.Series] = {}
        for name in self.names:
            values = column(name)
            if values is None:
                raise QueryError(f"unknown name {name!r}: use an hparam, a metric (val_loss for its last value, "
                                 "best_val_loss for its best), or name, status, group, tags, epochs, params, id")
            columns[name] = values.reset_index(drop=True)
        result = self._eval(self._tree, columns, length)
        return result.fillna(False).astype(bool)

    def _eval(self, node: ast.AST, columns: dict[str, pd.Series], length: int) -> pd.Series:
        if isinstance(node, ast.BoolOp):
            parts = [self._eval(value, columns, length) for value in node.values]
            combined = parts[0]
            for part in parts[1:]:
                combined = (combined & part) if isinstance(node.op, ast.And) else (combined | part)
            return combined
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return ~self._eval(node.operand, columns, length)
        if isinstance(node, ast.Name):  # a bare name: true where the value is True
            return columns[node.id].map(lambda value: value is True or value == 1)
        assert isinstance(node, ast.Compare)
        result = pd.Series(True, index=range(length))
        left = self._operand(node.left, columns, length)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = self._operand(right_node, columns, length)
            result &= _compare(left, right, _COMPARE[type(op)], length)
            left = right
        return result

    def _operand(self, node: ast.AST, columns: dict[str, pd.Series], length: int) -> pd.Series | object:
        if isinstance(node, ast.Name):
            return columns[node.id]
        if isinstance(node, ast.UnaryOp):
            value = node.operand.value  # type: ignore[attr-defined]
            return -value if isinstance(node.op, ast.USub) else value
        return node.value  # type: ignore[attr-defined]


def _compare(left: pd.Series | object, right: pd.Series | object, op: Callable[[object, object], object],
             length: int) -> pd.Series:
    """`op` element-wise. Pairs where both sides read as numbers compare as numbers; others (text, booleans, None)
    as values; a pair that cannot be compared (text against a number, a missing value) is False."""
    sides = [side.reset_index(drop=True) if isinstance(side, pd.Series) else pd.Series([side] * length, dtype=object)
             for side in (left, right)]
    numbers = [pd.to_numeric(side.map(_number), errors="coerce") for side in sides]
    both = (numbers[0].notna() & numbers[1].notna()).to_numpy()
    result = np.zeros(length, dtype=bool)
    if both.any():
        with np.errstate(invalid="ignore"):
            result[both] = np.asarray(op(numbers[0][both].to_numpy(float), numbers[1][both].to_numpy(float)))
    for index in np.flatnonzero(~both):
        a, b = sides[0].iat[index], sides[1].iat[index]
        if _number(a) is not None or _number(b) is not None:
            continue  # a number against text or a missing value
        if a is None or b is None:
            result[index] = bool(op(a is None, b is None)) if op in (operator.eq, operator.ne) else False
            continue
        try:
            result[index] = bool(op(a, b))
        except TypeError:
            result[index] = False
    return pd.Series(result)


def _number(value: object) -> float | None:
    """A value as a number when it is one (bools are not), else None."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
        return float(value)
    return None


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.Call):
        return "a function call"
    if isinstance(node, ast.Attribute):
        return "an attribute (a.b)"
    if type(node) in (ast.In, ast.NotIn):
        return "`in`"
    if type(node) in (ast.Is, ast.IsNot):
        return "`is`"
    if isinstance(node, ast.BinOp):
        return "arithmetic"
    return f"`{type(node).__name__}`"
