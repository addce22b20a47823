"""A growable table of float64 columns: appending n rows costs O(n) amortized, whatever the table's length."""

from __future__ import annotations

import numpy as np
import pandas as pd

INTEGER_COLUMNS = frozenset({"step", "epoch", "batch", "phase"})


class NumericTable:
    def __init__(self) -> None:
        self._columns: dict[str, np.ndarray] = {}
        self._rows = 0
        self._capacity = 0
        self._frame: pd.DataFrame | None = None

    def __len__(self) -> int:
        return self._rows

    def clear(self) -> None:
        self.__init__()

    def append(self, columns: dict[str, np.ndarray], rows: int) -> None:
        if rows <= 0:
            return
        needed = self._rows + rows
        if needed > self._capacity:
            self._grow(max(needed, 2 * self._capacity, 1024))
        for name, values in columns.items():
            if name not in self._columns:
                # A column that appears late (a metric added by a recompile) is NaN for the earlier rows.
                self._columns[name] = np.full(self._capacity, np.nan)
            self._columns[name][self._rows : needed] = values
        for name, store in self._columns.items():
            if name not in columns:
                store[self._rows : needed] = np.nan
        self._rows = needed
        self._frame = None

    def _grow(self, capacity: int) -> None:
        for name, store in self._columns.items():
            grown = np.full(capacity, np.nan)
            grown[: self._rows] = store[: self._rows]
            self._columns[name] = grown
        self._capacity = capacity

    def frame(self, leading: tuple[str, ...] = ()) -> pd.DataFrame:
        """The rows so far as a DataFrame; the `leading` columns come first and always exist (NaN where no record had
        them), so readers can rely on them even for an empty or damaged stream. Cached until the next append."""
        if self._frame is None:
            names = list(leading) + sorted(n for n in self._columns if n not in leading)
            data: dict[str, np.ndarray] = {}
            for name in names:
                column = self._columns.get(name)
                values = np.full(self._rows, np.nan) if column is None else column[: self._rows].copy()
                # Counters read back as integers when every row has one (JSON keeps no int/float distinction here).
                if name in INTEGER_COLUMNS and np.isfinite(values).all():
                    values = values.astype(np.int64)
                data[name] = values
            self._frame = pd.DataFrame(data)
        return self._frame

    def arrays(self) -> dict[str, np.ndarray]:
        """Read-only views of the columns, without copying: for hot paths such as a live chart refresh."""
        views = {}
        for name, store in self._columns.items():
            view = store[: self._rows]
            view.flags.writeable = False
            views[name] = view
        return views
