"""The frozen task split, DPD trajectory synthesis, shards and the training loader (see docs/data.md)."""

from bench.data.shards import DataInfo, ensure_data

__all__ = ["DataInfo", "ensure_data"]
