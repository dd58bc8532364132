"""The one exception type of the architectures package (which must not depend on `bench`)."""


class BackboneError(ValueError):
    """Bad input or a failed check; the message is one line naming what is wrong and what is accepted."""
