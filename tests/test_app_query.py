"""app/query.py: filter expressions over the runs list, on known columns (which runs match, and why a text is refused).
"""

from __future__ import annotations

import ast

import numpy as np
import pandas as pd
import pytest

from kerascope.app.query import MAX_EXPRESSION_CHARS, Query, QueryError

# Five runs; the index is not 0..4 (a filtered frame's), the mask is positional. Object columns keep None (a column of
# mixed types, as hparams are; pandas turns None into NaN in a column of text only).
COLUMNS = {
    "lr": pd.Series([0.1, 0.01, 0.001, np.nan, None], index=[10, 11, 12, 13, 14], dtype=object),
    "units": pd.Series([64, 32, np.int64(64), 16, 128], index=[10, 11, 12, 13, 14]),
    "name": pd.Series(["base", "wide", "deep", None, "base"], index=[10, 11, 12, 13, 14], dtype=object),
    "flag": pd.Series([True, 1, False, "yes", None], index=[10, 11, 12, 13, 14]),
    "opt": pd.Series(["adam", 3, np.bool_(True), None, "sgd"], index=[10, 11, 12, 13, 14], dtype=object),
}


def matches(text: str) -> list[bool]:
    mask = Query(text).mask(COLUMNS.get, 5)
    assert mask.dtype == bool and list(mask.index) == [0, 1, 2, 3, 4]
    return mask.tolist()


@pytest.mark.parametrize(("text", "expected"), [
    ("lr < 0.05", [False, True, True, False, False]),  # NaN and None never match
    ("lr <= 0.01", [False, True, True, False, False]),
    ("lr > 0.01", [True, False, False, False, False]),
    ("lr >= 0.01", [True, True, False, False, False]),
    ("lr == 0.01", [False, True, False, False, False]),
    ("lr != 0.01", [True, False, True, False, False]),  # a missing value matches no comparison with a number
    ("0.05 > lr", [False, True, True, False, False]),
    ("units == 64", [True, False, True, False, False]),  # numpy integers are numbers
    ("units > -20", [True, True, True, True, True]),
    ("units < +20", [False, False, False, True, False]),
    ("32 <= units < 100", [True, True, True, False, False]),  # chained
    ("16 < units <= 64", [True, True, True, False, False]),
    ("lr < 0.05 and units >= 64", [False, False, True, False, False]),
    ("lr > 0.05 or units == 16", [True, False, False, True, False]),
    ("units == 16 or units == 32 or units == 128", [False, True, False, True, True]),
    ("units > 16 and units < 128 and lr > 0.005", [True, True, False, False, False]),
    ("not lr < 0.05", [True, False, False, True, True]),
    ("not (units == 64 or name == 'wide')", [False, False, False, True, True]),
    ('name == "base"', [True, False, False, False, True]),
    ('name != "base"', [False, True, True, True, False]),  # text compares as text; None differs from it
    ('name < "c"', [True, False, False, False, True]),
    ("name == None", [False, False, False, True, False]),
    ("name != None", [True, True, True, False, True]),
    ("lr == None", [False, False, False, False, True]),  # NaN is a number, not a missing value
    ("name < None", [False, False, False, False, False]),
    ("name > 5", [False, False, False, False, False]),  # text against a number
    ("flag", [True, True, False, False, False]),  # a bare name: True or 1
    ("not flag", [False, False, True, True, True]),
    ("flag == True", [True, False, False, False, False]),  # a bool against a number: not comparable
    ("flag == False", [False, False, True, False, False]),
    ("opt == True", [False, False, True, False, False]),  # numpy's bool is not a number either
    ("opt > 'a'", [True, False, False, False, True]),  # text against text only
    ("opt < True", [False, False, False, False, False]),  # text against a bool: not comparable
])
def test_which_runs_match(text, expected):
    assert matches(text) == expected


def test_names_are_the_distinct_names_used_sorted():
    assert Query(" units > 1 and lr < 2 or units < lr ").names == ["lr", "units"]
    assert Query(" units > 1 ").text == "units > 1"


def test_an_unknown_name_is_refused_with_the_names_that_exist():
    with pytest.raises(QueryError, match=r"^unknown name 'missing': use an hparam, a metric \(val_loss for its last "
                                         r"value, best_val_loss for its best\), or name, status, group, tags, "
                                         r"epochs, params, id$"):
        Query("missing > 1 and lr < 1").mask(COLUMNS.get, 5)


@pytest.mark.parametrize(("text", "message"), [
    ("lr < < 1", "could not read the expression at character 6: invalid syntax. Write comparisons joined by and/or, "
             'e.g. lr < 1e-3 and units >= 64 or name == "baseline"'),
    ("__import__('os').system('x') > 1", "a function call is not allowed: use names, numbers, \"text\" and comparisons "
                                         "joined by and/or/not"),
    ("lr <", "could not read the expression: invalid syntax."),  # no position known
    ("lr.real > 1", "an attribute (a.b) is not allowed"),
    ("lr * 2 > 1", "arithmetic is not allowed"),
    ("lr in [1, 2]", "`in` is not supported: compare with == != < <= > >="),
    ("lr not in [1]", "`in` is not supported"),
    ("lr is None", "`is` is not supported"),
    ("lr is not None", "`is` is not supported"),
    ("0.1", "0.1 alone is not a condition: compare it, e.g. lr < 1e-3"),
    ("'text' and lr > 1", "'text' alone is not a condition"),
    ("not None", "None alone is not a condition"),
    ("(lr < 1) == True", "`Compare` is not allowed"),
    ("lr < [1]", "`List` is not allowed"),
    ("lr < -x", "`UnaryOp` is not allowed"),
    ("lr < -'a'", "`UnaryOp` is not allowed"),
    ("lr < ~1", "`UnaryOp` is not allowed"),
    ("lr < b'x'", "`Constant` is not allowed"),
    ("lr if units else 1", "`IfExp` is not allowed"),
])
def test_malformed_expressions_are_refused_with_their_reason(text, message):
    with pytest.raises(QueryError) as raised:
        Query(text)
    assert str(raised.value).startswith(message)


def parts(text: str) -> int:
    return sum(1 for _ in ast.walk(ast.parse(text, mode="eval")))


def test_an_expression_is_bounded_in_length_and_parts():
    longest = "lr < " + "1" * (MAX_EXPRESSION_CHARS - 5)
    assert Query("  " + longest + "  ").text == longest  # surrounding blanks do not count
    with pytest.raises(QueryError, match="^the expression is longer than 2,000 characters$"):
        Query(longest + "1")
    most = " or ".join(["a < 1"] * 38 + ["not a < 1"])
    assert parts(most) == 200
    Query(most)
    too_many = " or ".join(["a < 1"] * 38 + ["not a < b"])
    assert parts(too_many) == 201
    with pytest.raises(QueryError, match="^the expression has more than 200 parts$"):
        Query(too_many)
