"""NumericTable's caps on known appends: which columns are kept (first names, keep_first always), how many rows fit
the cell cap, and what is counted as dropped."""

from __future__ import annotations

import numpy as np

from kerascope.monitor.table import MAX_DROPPED_NAMES, NumericTable


def ones(*names: str, rows: int = 2) -> dict[str, np.ndarray]:
    return {name: np.full(rows, float(index)) for index, name in enumerate(names)}


def test_the_column_cap_keeps_keep_first_then_the_first_new_names():
    table = NumericTable(max_columns=3, max_cells=10_000, keep_first=("step", "epoch"))
    assert (table.dropped_rows, table.dropped_columns, table.full) == (0, 0, False)
    table.append(ones("z", "a", "step", "b", "epoch", "c"), 2)
    assert list(table.frame()) == ["epoch", "step", "z"]
    assert table.dropped_names == {"a", "b", "c"} and table.dropped_columns == 3
    table.append(ones("a", "z", "d", rows=1), 1)  # known columns still take values; new ones are counted
    assert list(table.frame()) == ["epoch", "step", "z"] and table.dropped_names == {"a", "b", "c", "d"}
    assert table.frame()["z"].tolist() == [0.0, 0.0, 1.0]
    np.testing.assert_equal(table.frame()["step"].to_numpy(), [2.0, 2.0, np.nan])


def test_keep_first_columns_are_kept_beyond_the_column_cap():
    table = NumericTable(max_columns=1, max_cells=10_000, keep_first=("step", "epoch"))
    table.append(ones("loss", "epoch", "step"), 2)
    assert sorted(table.frame()) == ["epoch", "step"] and table.dropped_names == {"loss"}


def test_a_new_column_is_kept_while_its_allocation_fits_the_cell_cap():
    # A new column allocates at least 1,024 cells: 3 of them fit 3,072 cells, a fourth does not.
    table = NumericTable(max_columns=100, max_cells=3072)
    table.append(ones("a", "b", "c", "d"), 2)
    assert list(table.frame()) == ["a", "b", "c"] and table.dropped_names == {"d"}
    tight = NumericTable(max_columns=100, max_cells=3071)
    tight.append(ones("a", "b", "c"), 2)
    assert list(tight.frame()) == ["a", "b"]


def test_default_caps_keep_1000_columns():
    table = NumericTable()
    names = [f"m{index:04d}" for index in range(1001)]
    table.append(ones(*names, rows=1), 1)
    assert len(table.frame().columns) == 1000 and table.dropped_names == {"m1000"}


def test_dropped_names_are_remembered_up_to_their_cap():
    table = NumericTable(max_columns=1, max_cells=10_000)
    table.append(ones("kept", rows=1), 1)
    table.append({f"n{index}": np.zeros(1) for index in range(MAX_DROPPED_NAMES + 5)}, 1)
    assert table.dropped_columns == MAX_DROPPED_NAMES


def test_rows_beyond_the_cell_cap_are_counted_not_kept():
    table = NumericTable(max_columns=10, max_cells=3000)
    table.append({"a": np.arange(1000.0)}, 1000)
    assert (len(table), table.dropped_rows, table.full) == (1000, 0, False)
    table.append({"a": np.arange(1000.0, 2000.0), "b": np.arange(1000.0)}, 1000)  # 2 columns: 1,500 rows fit
    assert (len(table), table.dropped_rows, table.full) == (1500, 500, True)
    frame = table.frame()
    assert frame["a"].tolist() == list(np.arange(1500.0))
    np.testing.assert_equal(frame["b"].to_numpy(), np.concatenate([np.full(1000, np.nan), np.arange(500.0)]))
    table.append({"a": np.zeros(7), "b": np.zeros(7), "c": np.zeros(7)}, 7)  # full: nothing kept, "c" not added
    assert (len(table), table.dropped_rows) == (1500, 507) and list(table.frame()) == ["a", "b"]
    assert table.dropped_names == {"c"}


def test_a_single_column_fills_the_whole_cell_cap():
    table = NumericTable(max_columns=10, max_cells=2048)
    table.append({"a": np.arange(1024.0)}, 1024)
    assert not table.full
    table.append({"a": np.arange(2000.0)}, 2000)
    assert (len(table), table.dropped_rows, table.full) == (2048, 976, True)
    assert table.frame()["a"].tolist()[-1] == 1023.0


def test_full_is_reached_at_the_rows_the_cell_cap_allows():
    table = NumericTable(max_columns=10, max_cells=3001)  # 2 columns: 1,500 whole rows
    table.append({"a": np.zeros(1500), "b": np.zeros(1500)}, 1500)
    assert table.full and table.dropped_rows == 0


def test_appending_nothing_changes_nothing():
    table = NumericTable(max_columns=1, max_cells=10_000)
    table.append({"a": np.zeros(2)}, 2)
    frame = table.frame()
    table.append({"b": np.zeros(0)}, 0)
    table.append({"a": np.zeros(0)}, -1)
    assert (len(table), table.dropped_rows, table.dropped_columns) == (2, 0, 0) and table.frame() is frame


def test_leading_columns_exist_even_when_no_row_has_them():
    table = NumericTable()
    table.append({"loss": np.array([0.5, 0.25])}, 2)
    frame = table.frame(("step", "epoch"))
    assert list(frame) == ["step", "epoch", "loss"]
    assert frame["step"].dtype == np.float64 and np.isnan(frame["step"]).all() and len(frame["step"]) == 2
    assert np.isnan(frame["epoch"]).all()


def test_clear_keeps_the_caps():
    table = NumericTable(max_columns=2, max_cells=2048, keep_first=("step",))
    table.append({"step": np.zeros(3), "x": np.zeros(3)}, 3)
    table.clear()
    assert (len(table), table.dropped_rows, table.dropped_columns) == (0, 0, 0)
    table.append({"y": np.zeros(3000), "z": np.zeros(3000), "step": np.arange(3000.0)}, 3000)
    assert list(table.frame()) == ["step", "y"] and table.dropped_names == {"z"}  # keep_first and the column cap
    assert (len(table), table.dropped_rows) == (1024, 1976)  # the cell cap: 2,048 cells over 2 columns
