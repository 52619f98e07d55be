"""The one exception type a user sees for a bad input."""


class DojoConfigError(ValueError):
    """A user-supplied value is invalid; the message names the value and what is allowed."""
