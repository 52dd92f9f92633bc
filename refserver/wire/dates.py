"""The ``Date`` response header, shared by every HTTP/1.1 connection.

A module of its own so that the reference connection core (:mod:`refserver.wire.h1`) and its
compiled copy on the fast path read the same cache: a test that fixes the clock here fixes it
for both.
"""

from __future__ import annotations

import time
from email.utils import formatdate


class DateCache:
    """The ``Date`` header value, formatted at most once a second.

    ``clock`` is injectable so that tests can compare response bytes exactly (replace
    :data:`DATES` with ``DateCache(lambda: 0.0)``).
    """

    __slots__ = ("_second", "_value", "_clock")

    def __init__(self, clock=time.time):
        self._second = -1
        self._value = b""
        self._clock = clock

    def value(self) -> bytes:
        now = self._clock()
        second = int(now)
        if second != self._second:
            self._second = second
            self._value = formatdate(now, usegmt=True).encode("ascii")
        return self._value


DATES = DateCache()
