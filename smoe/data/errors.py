"""The one exception type of smoe.data."""


class DataError(ValueError):
    """Invalid data file or argument; the message names the file (and line or row) or the argument."""
