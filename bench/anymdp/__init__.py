"""AnyMDP tasks: sampling, environments and exact solvers."""

from bench.anymdp.task import Task

__all__ = ["Task"]
