"""A growable table of float64 columns: appending n rows costs O(n) amortized, whatever the table's length.

Its size is capped (columns, and cells = rows x columns), so a hostile or runaway stream costs bounded memory: what
does not fit is counted, not kept.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

INTEGER_COLUMNS = frozenset({"step", "epoch", "batch", "phase"})


MAX_DROPPED_NAMES = 100_000  # distinct dropped column names remembered for the count (beyond: "100,000+")


class NumericTable:
    """Float64 columns that grow by appending rows.

    Args:
        max_columns: columns kept; the `keep_first` ones always, then others in the order they appear.
        max_cells: rows x columns kept (rows beyond it are counted in `dropped_rows`, not kept).
        keep_first: columns that are kept whatever the cap (the stream's leading columns).

    Example:
    ```python
    table = NumericTable(max_columns=500, max_cells=12_000_000, keep_first=("step",))
    table.append({"step": np.arange(3.0), "loss": np.ones(3)}, 3)
    table.frame(("step",))
    ```
    """

    def __init__(self, max_columns: int = 1_000, max_cells: int = 50_000_000, keep_first: tuple[str, ...] = ()) -> None:
        self.max_columns = max_columns
        self.max_cells = max_cells
        self.keep_first = keep_first
        self._columns: dict[str, np.ndarray] = {}
        self._rows = 0
        self._capacity = 0
        self._frame: pd.DataFrame | None = None
        self.dropped_names: set[str] = set()  # filled by the parser too, which drops names before they get here
        self.dropped_rows = 0

    def __len__(self) -> int:
        return self._rows

    @property
    def dropped_columns(self) -> int:
        """Distinct column names seen but not kept (at most MAX_DROPPED_NAMES are counted)."""
        return len(self.dropped_names)

    @property
    def full(self) -> bool:
        """No further row fits: later appends only count what they drop."""
        return self._rows >= self._max_rows()

    def _max_rows(self) -> int:
        return self.max_cells // max(len(self._columns), 1)

    def clear(self) -> None:
        self.__init__(self.max_columns, self.max_cells, self.keep_first)

    def append(self, columns: dict[str, np.ndarray], rows: int) -> None:
        if rows <= 0:
            return
        columns = self._admit(columns)
        max_rows = self.max_cells // max(len(self._columns.keys() | columns.keys()), 1)
        fits = max(min(rows, max_rows - self._rows), 0)
        self.dropped_rows += rows - fits
        if fits < rows:
            columns = {name: values[:fits] for name, values in columns.items()}
            rows = fits
        if rows <= 0:
            return
        needed = self._rows + rows
        if needed > self._capacity:
            self._grow(min(max(needed, 2 * self._capacity, 1024), max_rows))
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

    def _admit(self, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The columns that are kept: known ones, then new ones while the column cap and the cell cap allow."""
        admitted = {}
        count = len(self._columns)
        # What a new column allocates now: the table's capacity in float64 cells (rows beyond the cap are cut later).
        length = max(self._capacity, 1024)
        for name in sorted(columns, key=lambda name: name not in self.keep_first):
            if name in self._columns:
                admitted[name] = columns[name]
            elif name in self.keep_first or (count < self.max_columns and length * (count + 1) <= self.max_cells):
                admitted[name] = columns[name]
                count += 1
            elif len(self.dropped_names) < MAX_DROPPED_NAMES:
                self.dropped_names.add(name)
        return admitted

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
