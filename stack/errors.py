"""The one exception type of the local stack: the CLI prints it as a single line."""


class StackError(Exception):
    """A service could not be installed, started, checked or stopped."""
