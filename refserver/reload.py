"""When ``--reload`` restarts the server: which changed files matter, and the watchers that tell.

:class:`ReloadFilter` is the one rule deciding whether a path matters; :func:`changes` reports the
changes that do, from watchfiles (operating-system notifications) when it is installed, else by
polling. Restarting anything is the caller's business: nothing here spawns a process.

Usage::

    flt = ReloadFilter.from_config(config)
    async with contextlib.aclosing(changes(flt)) as batches:
        async for paths in batches:
            ...  # restart: ``paths`` is the set of changed files, absolute

Iteration ends when ``stop_event`` (an :class:`asyncio.Event`) is set, or when the task iterating
is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import os
import re
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Iterator
from typing import Any

from .config import OPTIONS
from .logs import error_logger

#: Seconds between two scans of the polling watcher.
POLL_INTERVAL = 0.5
#: After a change, both watchers wait until nothing has changed for STEP seconds (at most
#: DEBOUNCE in all) and report everything seen meanwhile as one batch: editors save in several
#: writes (a temporary file then a rename, a truncation then the content), formatters run on save,
#: and one restart for all of it is what a developer expects.
STEP = 0.2
DEBOUNCE = 1.6

_DEFAULTS: dict[str, Any] = {option.name: option.default for option in OPTIONS}
DEFAULT_INCLUDES: tuple[str, ...] = _DEFAULTS["reload_include"]
DEFAULT_EXCLUDES: tuple[str, ...] = _DEFAULTS["reload_exclude"]

_WILDCARDS = re.compile(r"[*?[]")


def _compile(patterns: Iterable[str]) -> re.Pattern:
    """One regular expression matching any of the globs. A leading ``**/`` (any directories)
    also matches no directory at all, as in ``.gitignore``: ``**/build/**`` excludes ``build/x``
    at the top of the watched directory too."""
    globs: list[str] = []
    for pattern in patterns:
        pattern = os.path.normcase(pattern)
        globs.append(pattern)
        while pattern.startswith("**/"):
            pattern = pattern[3:]
            globs.append(pattern)
    if not globs:
        return re.compile(r"(?!)")  # matches nothing
    return re.compile("|".join(fnmatch.translate(glob) for glob in globs))


class ReloadFilter:
    """Whether a changed path matters, for every watcher alike.

    A path matters when it lies under one of ``dirs`` and, relative to that directory:

    - neither its name nor its relative path, nor those of any directory between the watched
      directory and it, match an exclude glob (so an excluded directory such as ``.venv``,
      ``.git`` or ``__pycache__`` hides everything it contains: the polling watcher does not
      even descend into it);
    - its name or its relative path matches an include glob (an include without wildcards,
      which names a file, wins over the exclude globs matching that file: ``.env`` is watched
      when included, although ``.*`` is excluded).

    Relative paths are written with ``/`` whatever the platform; globs are :mod:`fnmatch` globs,
    whose ``*`` also matches ``/``. Under directories that overlap, a path matters if it does
    relative to any of them: watching ``.venv/src`` explicitly watches it even though ``.`` is
    watched and ``.*`` excluded.
    """

    def __init__(
        self,
        dirs: Iterable[str],
        includes: Iterable[str] = DEFAULT_INCLUDES,
        excludes: Iterable[str] = DEFAULT_EXCLUDES,
    ):
        self.dirs: tuple[str, ...] = tuple(dict.fromkeys(os.path.realpath(d) for d in dirs))
        self.includes = tuple(includes)
        self.excludes = tuple(excludes)
        self._include = _compile(self.includes)
        self._exclude = _compile(self.excludes)
        self._named = {os.path.normcase(p) for p in self.includes if not _WILDCARDS.search(p)}

    @classmethod
    def from_config(cls, config) -> ReloadFilter:
        """The filter of ``--reload-dir``, ``--reload-include`` and ``--reload-exclude``.

        Given globs add to the default ones, and a default glob given to the other option is
        taken out of its own list, as with uvicorn: ``--reload-include '.env'`` does not
        need ``.*`` restated minus one, and ``--reload-exclude 'tests/*'`` keeps ``.venv``
        ignored.
        """
        # An option not given holds its default: nothing given, for this rule.
        includes = () if config.reload_include == DEFAULT_INCLUDES else config.reload_include
        excludes = () if config.reload_exclude == DEFAULT_EXCLUDES else config.reload_exclude
        return cls(
            config.reload_dir or (os.getcwd(),),
            _merge(DEFAULT_INCLUDES, excludes, includes),
            _merge(DEFAULT_EXCLUDES, includes, excludes),
        )

    def __call__(self, path: str) -> bool:
        return any(self._relevant(relative) for relative in self._locations(path))

    def __repr__(self) -> str:
        return f"ReloadFilter({self.dirs!r}, {self.includes!r}, {self.excludes!r})"

    def files_under(self, directory: str) -> set[str]:
        """The files that matter under ``directory``, a directory just created or moved in:
        notifications of what was written in it before it was being watched are lost (with
        inotify, a file written right after its directory is created is not reported)."""
        found: set[str] = set()
        for relative in self._locations(directory):
            if not self._dir_excluded(relative):
                found.update(_walk(self, directory, relative + "/"))
        return found

    def _locations(self, path: str) -> Iterator[str]:
        """The path of ``path`` relative to each watched directory that holds it, written with
        ``/``."""
        path = os.path.abspath(path)
        for root in self.dirs:
            prefix = root if root.endswith(os.sep) else root + os.sep
            if path.startswith(prefix):
                yield path[len(prefix) :].replace(os.sep, "/")

    def _relevant(self, relative: str) -> bool:
        """The file at ``relative`` (under a watched directory) matters."""
        return not self._dir_excluded(relative.rpartition("/")[0]) and self._file_matters(relative)

    def _dir_excluded(self, relative: str) -> bool:
        """The directory at ``relative`` ("": the watched one), or one between the watched
        directory and it, is excluded."""
        parts = relative.split("/") if relative else []
        return any(self._excluded("/".join(parts[:i])) for i in range(1, len(parts) + 1))

    def _file_matters(self, relative: str) -> bool:
        """The file at ``relative`` matters, the directories above it being known not excluded.

        An include without wildcards names a file (``.env``, ``config/settings.toml``): that file
        is wanted even if an exclude glob (``.*``) matches it too."""
        name = relative.rpartition("/")[2]
        if os.path.normcase(name) in self._named or os.path.normcase(relative) in self._named:
            return True
        return not self._excluded(relative) and self._included(relative)

    def _excluded(self, relative: str) -> bool:
        """The file or directory at ``relative`` is excluded by its own name or path; a caller
        checks the directories above it, or does not descend into an excluded one."""
        name = relative.rpartition("/")[2]
        return bool(
            self._exclude.match(os.path.normcase(name))
            or self._exclude.match(os.path.normcase(relative))
        )

    def _included(self, relative: str) -> bool:
        name = relative.rpartition("/")[2]
        return bool(
            self._include.match(os.path.normcase(name))
            or self._include.match(os.path.normcase(relative))
        )


def _merge(defaults: tuple, taken_out: tuple, given: tuple) -> tuple:
    return tuple(dict.fromkeys([p for p in defaults if p not in taken_out] + list(given)))


def watchfiles_available() -> bool:
    try:
        import watchfiles  # noqa: F401
    except ImportError:
        return False
    return True


def watcher_name(force_polling: bool = False) -> str:
    """``"watchfiles"`` or ``"polling"``: the watcher :func:`changes` uses with these arguments."""
    return "polling" if force_polling or not watchfiles_available() else "watchfiles"


async def changes(
    flt: ReloadFilter,
    *,
    force_polling: bool = False,
    poll_interval: float = POLL_INTERVAL,
    stop_event: asyncio.Event | None = None,
) -> AsyncIterator[set[str]]:
    """Yield the set of changed paths (created, modified or deleted files that ``flt`` says
    matter, absolute) each time some change, under ``flt.dirs``.

    ``force_polling`` uses the polling watcher even when watchfiles is installed; watchfiles'
    own ``WATCHFILES_FORCE_POLLING`` environment variable is honoured too, for filesystems that
    send no notifications (network and some container mounts). Changes made before the
    iteration starts are not reported.
    """
    name = watcher_name(force_polling)
    error_logger.info("watching for changes in %s (%s)", ", ".join(flt.dirs), name)
    if name == "watchfiles":
        batches = _watchfiles_changes(flt, stop_event)
    else:
        batches = _polling_changes(flt, poll_interval, stop_event)
    async with contextlib.aclosing(batches):
        async for batch in batches:
            yield batch


async def _watchfiles_changes(
    flt: ReloadFilter, stop_event: asyncio.Event | None
) -> AsyncGenerator[set[str], None]:
    from watchfiles import Change, awatch

    def new_directory(change: Change, path: str) -> bool:
        return change == Change.added and os.path.isdir(path)

    batches = awatch(
        *flt.dirs,
        watch_filter=lambda change, path: new_directory(change, path) or flt(path),
        debounce=int(DEBOUNCE * 1000),
        step=int(STEP * 1000),
        stop_event=stop_event,
    )
    async with contextlib.aclosing(batches):  # the notifications stop with the iteration
        async for batch in batches:
            changed: set[str] = set()
            for change, path in batch:
                if new_directory(change, path):
                    changed |= flt.files_under(path)
                else:
                    changed.add(path)
            if changed:
                yield changed


async def _polling_changes(
    flt: ReloadFilter, interval: float, stop_event: asyncio.Event | None
) -> AsyncGenerator[set[str], None]:
    """Compare snapshots of the relevant files every ``interval`` seconds. A file whose
    modification time (in ns), size or inode differs is modified, one that appears or disappears
    is created or deleted; a rename-over (the way many editors save) changes the inode."""
    before = await asyncio.to_thread(_snapshot, flt)
    while not await _stopped(stop_event, interval):
        now = await asyncio.to_thread(_snapshot, flt)
        changed = _difference(before, now)
        if not changed:
            continue
        # Settle: gather what follows within STEP seconds, up to DEBOUNCE in all.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEBOUNCE
        while loop.time() < deadline:
            if await _stopped(stop_event, STEP):
                return
            later = await asyncio.to_thread(_snapshot, flt)
            more = _difference(now, later)
            now = later
            if not more:
                break
            changed |= more
        before = now
        yield changed


def _snapshot(flt: ReloadFilter) -> dict[str, tuple[int, int, int]]:
    """(mtime in ns, size, inode) of every file that matters under the watched directories."""
    files: dict[str, tuple[int, int, int]] = {}
    for root in flt.dirs:
        for path in _walk(flt, root, ""):
            try:
                st = os.stat(path)
            except OSError:  # deleted meanwhile, or a dangling link
                continue
            files[path] = (st.st_mtime_ns, st.st_size, st.st_ino)
    return files


def _walk(flt: ReloadFilter, top: str, base: str) -> Iterator[str]:
    """The files that matter under ``top``, whose path relative to its watched directory is
    ``base`` ("" or ending in "/"), never descending into an excluded directory (nor following
    links to directories)."""
    for dirpath, dirnames, filenames in os.walk(top):
        below = os.path.relpath(dirpath, top).replace(os.sep, "/")
        prefix = base if below == "." else base + below + "/"
        dirnames[:] = [d for d in dirnames if not flt._excluded(prefix + d)]
        for filename in filenames:
            if flt._file_matters(prefix + filename):
                yield os.path.join(dirpath, filename)


def _difference(before: dict, after: dict) -> set[str]:
    return {path for path in before.keys() | after.keys() if before.get(path) != after.get(path)}


async def _stopped(stop_event: asyncio.Event | None, seconds: float) -> bool:
    """Wait ``seconds``; True (at once) when ``stop_event`` is set."""
    if stop_event is None:
        await asyncio.sleep(seconds)
        return False
    try:
        await asyncio.wait_for(stop_event.wait(), seconds)
    except asyncio.TimeoutError:
        return False
    return True
