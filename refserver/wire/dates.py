"""The ``Date`` response header, shared by every HTTP/1.1 connection.

A module of its own so that the reference connection core (:mod:`refserver.wire.h1`) and its
compiled copy on the fast path read the same cache: a test that fixes the clock here fixes it
for both.
"""

from __future__ import annotations

import time
from email.utils import formatdate


class DateCache:
    """The ``Date`` header field, formatted at most once a second.

    ``clock`` is injectable so that tests can compare response bytes exactly (replace
    :data:`DATES` with ``DateCache(lambda: 0.0)``). The field is kept as the ready
    ``(b"date", value)`` pair that a response head lists.
    """

    __slots__ = ("_clock", "_since", "_until", "_field")

    def __init__(self, clock=time.time):
        self._clock = clock
        self._since = self._until = 0.0  # the second that ``_field`` is right for
        self._field = (b"date", b"")

    def field(self) -> tuple:
        """``(b"date", value)`` for the current second."""
        now = self._clock()
        if not self._since <= now < self._until:  # either way: the wall clock may be set back
            self._since = float(int(now))
            self._until = self._since + 1.0
            self._field = (b"date", formatdate(now, usegmt=True).encode("ascii"))
        return self._field

    def value(self) -> bytes:
        return self.field()[1]


DATES = DateCache()
