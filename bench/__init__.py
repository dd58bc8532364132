"""AnyMDP in-context RL benchmark for long-context sequence models."""

from bench.errors import BenchError

__all__ = ["BenchError"]
