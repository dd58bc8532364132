"""What every benchmark records in `benchmark.extra_info`: the tables of docs/performance.md
(benchmarks/doc.py) are built from these keys alone."""

from __future__ import annotations

from pytest_benchmark.fixture import BenchmarkFixture


def record(
    benchmark: BenchmarkFixture,
    table: str,
    row: str,
    variant: str,
    setting: str,
    per_call: dict[str, int],
    columns: dict[str, object] | None = None,
) -> None:
    """Label a benchmark: its `table` (a section of the doc), the `row` it shares with the variants it is
    compared with side by side (`variant`: "ours" / "xenoverse", "chunked" / "recurrent", a layout),
    what it runs (`setting`), the work one call does per unit (`per_call`, the first unit is the one
    ratios use: throughput = work / mean time) and other `columns` of its table row."""
    benchmark.group = f"{table}: {row}"
    benchmark.extra_info.update(
        table=table, row=row, variant=variant, setting=setting, per_call=per_call, columns=columns or {}
    )
