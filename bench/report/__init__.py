"""Everything after a run: result files (schema, writing, loading), their validation, the
leaderboard, comparison plots and the plain-text tables the commands print."""
