"""The one error the grammar raises."""

from __future__ import annotations


class StreamSyntaxError(ValueError):
    """A malformed stream clause, worded like a database syntax error.

    ``message`` reads e.g. ``Invalid input 'FOO' (line 1, column 15): expected WITH TOPIC``.
    ``line`` and ``column`` count from 1 (a column is a character, tabs included); ``expected``
    lists what would have been accepted there (keyword phrases such as ``WITH TOPIC``, or
    ``a stream name``, ``a string``, ``a positive integer``, ``';'``, ``end of input``).

    The caller should answer the RUN with a FAILURE carrying ``code`` and ``message``: this is
    the client's mistake, and the connection and transaction state are unaffected.
    """

    code = "Neo.ClientError.Statement.SyntaxError"

    def __init__(self, message: str, line: int, column: int, expected: list[str]) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column
        self.expected = expected

    def __reduce__(self) -> tuple[type[StreamSyntaxError], tuple[str, int, int, list[str]]]:
        return (type(self), (self.message, self.line, self.column, self.expected))
