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
    :data:`DATES` with ``DateCache(lambda: 0.0)``). The connection core reads the attributes
    rather than calling :meth:`value`, so that a response costs no interpreted call while the
    second lasts (see ``wire.h1._date_field``).
    """

    __slots__ = ("clock", "since", "until", "field")

    def __init__(self, clock=time.time):
        self.clock = clock
        self.since = self.until = 0.0  # the second that ``field`` is right for
        self.field = (b"date", b"")

    def refresh(self, now: float) -> None:
        self.since = float(int(now))
        self.until = self.since + 1.0
        self.field = (b"date", formatdate(now, usegmt=True).encode("ascii"))

    def value(self) -> bytes:
        now = self.clock()
        if not self.since <= now < self.until:  # either way: the wall clock may be set back
            self.refresh(now)
        return self.field[1]


DATES = DateCache()
