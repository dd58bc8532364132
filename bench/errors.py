"""One exception type for bad input: the CLI prints it as a single line."""


class BenchError(ValueError):
    """Bad input or a failed check; the message names what is wrong and what is accepted."""
