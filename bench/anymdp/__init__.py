"""AnyMDP tasks: sampling, environments and exact solvers.

Importing this package registers the Gymnasium environment `AnyMDP-v0`
(`gymnasium.make("AnyMDP-v0", task=task)`).
"""

from bench.anymdp import env as _env  # noqa: F401  (registers AnyMDP-v0)
from bench.anymdp.garnet import sample_garnet
from bench.anymdp.official import from_official, to_official
from bench.anymdp.sampler import sample_task
from bench.anymdp.task import Task

__all__ = ["Task", "from_official", "sample_garnet", "sample_task", "to_official"]
