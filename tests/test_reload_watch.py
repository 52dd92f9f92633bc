"""--reload's file watching: which changes matter (ReloadFilter), and both watchers reporting them
on a real directory. The watchers are parametrised (watchfiles, polling) rather than the server's
implementation paths: no HTTP is involved."""

import asyncio
import os
import sys
import time

import pytest

from refserver.cli import build_parser, main
from refserver.config import Config, ConfigError
from refserver.reload import DEFAULT_EXCLUDES, ReloadFilter, changes, watcher_name

# ---------------------------------------------------------------------------------------- filter


@pytest.fixture
def tree(tmp_path):
    return str(tmp_path)


@pytest.mark.parametrize(
    "relative, matters",
    [
        ("app.py", True),
        ("pkg/sub/mod.py", True),
        ("README.md", False),  # not included
        ("app.pyc", False),
        ("pkg/__pycache__/mod.cpython-311.pyc", False),
        ("pkg/__pycache__/odd.py", False),  # in an excluded directory, though included itself
        (".venv/lib/python3.11/site-packages/x/__init__.py", False),
        ("venv/lib/python3.11/site-packages/x/__init__.py", False),
        (".git/hooks/pre-commit.py", False),
        ("node_modules/pkg/build.py", False),
        ("src/refserver.egg-info/x.py", False),
        (".hidden.py", False),
        ("pkg/.#mod.py", False),  # an emacs lock file
        ("flycheck_mod.py", False),
        ("mod.py~", False),
    ],
)
def test_default_filter(tree, relative, matters):
    flt = ReloadFilter([tree])
    assert flt(os.path.join(tree, relative)) is matters


def test_includes_match_a_name_or_a_relative_path(tree):
    flt = ReloadFilter([tree], includes=["*.py", "templates/*.html"], excludes=[".*"])
    assert flt(os.path.join(tree, "templates", "index.html"))
    assert flt(os.path.join(tree, "templates", "parts", "nav.html"))  # fnmatch's * spans "/"
    assert not flt(os.path.join(tree, "static", "index.html"))
    assert not flt(os.path.join(tree, "templates", ".index.html"))


def test_excludes_match_a_relative_path_and_hide_a_whole_directory(tree):
    flt = ReloadFilter([tree], excludes=["tests/fixtures", "**/build/**", "gen_*.py"])
    assert not flt(os.path.join(tree, "tests", "fixtures", "deep", "x.py"))
    assert flt(os.path.join(tree, "tests", "test_x.py"))
    assert flt(os.path.join(tree, "src", "tests", "fixtures", "x.py"))  # relative to the top only
    assert not flt(os.path.join(tree, "build", "lib", "x.py"))  # a leading **/ matches no directory
    assert not flt(os.path.join(tree, "a", "build", "lib", "x.py"))
    assert not flt(os.path.join(tree, "pkg", "gen_models.py"))


def test_only_directories_between_the_watched_one_and_the_file_count(tmp_path):
    # The watched directory is itself inside an excluded-looking one: that does not matter.
    watched = tmp_path / ".work" / "src"
    flt = ReloadFilter([str(watched)])
    assert flt(str(watched / "app.py"))
    assert not flt(str(watched / ".cache" / "app.py"))


def test_a_path_outside_the_watched_directories_does_not_matter(tmp_path):
    flt = ReloadFilter([str(tmp_path / "a")])
    assert not flt(str(tmp_path / "b" / "app.py"))
    assert not flt(str(tmp_path / "ab" / "app.py"))  # a prefix of the name is not a parent
    assert not flt(str(tmp_path / "a"))
    assert not flt("/")


def test_overlapping_directories_an_explicit_one_wins(tmp_path):
    flt = ReloadFilter([str(tmp_path), str(tmp_path / ".vendored" / "lib")])
    assert flt(str(tmp_path / ".vendored" / "lib" / "x.py"))
    assert not flt(str(tmp_path / ".vendored" / "other" / "x.py"))


def test_files_under_a_new_directory(tmp_path):
    for relative in ["pkg/a.py", "pkg/sub/b.py", "pkg/notes.txt", "pkg/__pycache__/c.py",
                     ".git/d.py"]:
        write(str(tmp_path / relative), "")
    flt = ReloadFilter([str(tmp_path)])
    assert flt.files_under(str(tmp_path / "pkg")) == {str(tmp_path / "pkg" / "a.py"),
                                                      str(tmp_path / "pkg" / "sub" / "b.py")}
    assert flt.files_under(str(tmp_path / ".git")) == set()
    assert flt.files_under(str(tmp_path.parent)) == set()  # not under a watched directory


def test_relative_paths_are_resolved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    flt = ReloadFilter(["."])
    assert flt.dirs == (os.path.realpath(tmp_path),)
    assert flt("app.py")
    assert not flt(os.path.join("..", "elsewhere.py"))


def test_from_config_adds_given_globs_to_the_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    flt = ReloadFilter.from_config(Config("x:y", reload=True))
    assert flt.dirs == (os.path.realpath(tmp_path),)
    assert flt.includes == ("*.py",) and flt.excludes == DEFAULT_EXCLUDES

    config = Config(
        "x:y",
        reload=True,
        reload_dir=[str(tmp_path)],
        reload_include=["*.html", ".env"],
        reload_exclude=["tests/*"],
    )
    flt = ReloadFilter.from_config(config)
    assert flt.includes == ("*.py", "*.html", ".env")
    assert flt.excludes == DEFAULT_EXCLUDES + ("tests/*",)
    assert flt(str(tmp_path / "page.html"))
    # Named without wildcards, .env is wanted although .* is excluded; other dot files are not.
    assert flt(str(tmp_path / ".env")) and flt(str(tmp_path / "sub" / ".env"))
    assert not flt(str(tmp_path / ".other"))
    assert not flt(str(tmp_path / ".git" / ".env"))  # the directories above still count
    assert not flt(str(tmp_path / "tests" / "test_x.py"))
    assert not flt(str(tmp_path / "__pycache__" / "x.py"))

    # A default exclude given as an include is no longer excluded.
    flt = ReloadFilter.from_config(Config("x:y", reload=True, reload_include=["*~"]))
    assert "*~" not in flt.excludes and flt(str(tmp_path / "mod.py~"))

    # Excluding a default include takes it out of the includes.
    flt = ReloadFilter.from_config(Config("x:y", reload=True, reload_exclude=["*.py"],
                                          reload_include=["*.toml"]))
    assert flt.includes == ("*.toml",)
    assert not flt(str(tmp_path / "app.py"))


# --------------------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    "options, message",
    [
        ({"reload_dir": ["."]}, "^--reload-dir given without --reload$"),
        ({"reload_include": ["*.html"]}, "^--reload-include given without --reload$"),
        (
            {"reload_dir": ["."], "reload_exclude": ["x"]},
            "^--reload-dir, --reload-exclude given without --reload$",
        ),
        (
            {"reload": True, "reload_dir": ["/no/such/dir"]},
            "^--reload-dir /no/such/dir: not a directory$",
        ),
    ],
)
def test_reload_option_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        Config("x:y", **options)


def test_reload_dir_must_be_a_directory_not_a_file(tmp_path):
    path = tmp_path / "app.py"
    path.write_text("")
    with pytest.raises(ConfigError, match="not a directory"):
        Config("x:y", reload=True, reload_dir=[str(path)])


def test_reload_options_from_the_command_line_and_the_environment(tmp_path, monkeypatch, capsys):
    # One line, exit code 1, from the command line too.
    assert main(["x:y", "--reload-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err == "refserver: error: --reload-dir given without --reload\n"

    monkeypatch.setenv("REFSERVER_RELOAD_INCLUDE", "*.html,*.css")
    config = Config("x:y", reload=True)
    assert config.reload_include == ("*.html", "*.css") and config.reload_dir == ()

    help_text = " ".join(build_parser().format_help().split())
    assert "directory). (default: none)" in help_text  # --reload-dir's empty default
    assert "(default: *.py)" in help_text


# -------------------------------------------------------------------------------------- watchers

TIMEOUT = 5.0  # bounds every wait for a batch


@pytest.fixture(params=["watchfiles", "polling"])
def force_polling(request):
    if request.param == "watchfiles":
        pytest.importorskip("watchfiles")
    return request.param == "polling"


class Watching:
    """``changes()`` iterated in a task, its batches in a queue.

    Neither watcher says when it has started watching, so :meth:`ready` polls: it writes a
    sentinel file until a batch names it. Changes made after that are seen.
    """

    def __init__(self, root, force_polling, **kwargs):
        self.root = root
        self.sentinel = os.path.join(root, "sentinel.py")
        self.flt = ReloadFilter([root], **kwargs)
        self.force_polling = force_polling
        self.batches = asyncio.Queue()
        self.stop = asyncio.Event()

    async def __aenter__(self):
        self.task = asyncio.create_task(self._run())
        await self.ready()
        return self

    async def __aexit__(self, *exc_info):
        self.stop.set()
        await asyncio.wait_for(self.task, TIMEOUT)  # ends by itself once stop is set

    async def _run(self):
        async for batch in changes(self.flt, force_polling=self.force_polling,
                                   poll_interval=0.05, stop_event=self.stop):
            await self.batches.put(batch)

    async def ready(self):
        deadline = time.monotonic() + TIMEOUT
        count = 0
        while time.monotonic() < deadline:
            count += 1
            write(self.sentinel, f"# {count}\n")
            try:
                batch = await asyncio.wait_for(self.batches.get(), 0.3)
            except asyncio.TimeoutError:
                continue
            if self.sentinel in batch:
                return
        raise AssertionError("the watcher did not report the sentinel file")

    async def until(self, path):
        """The batches received up to and including the first that names ``path``, without the
        sentinel file (a late write of :meth:`ready` may still be reported)."""
        received = []
        while True:
            batch = await asyncio.wait_for(self.batches.get(), TIMEOUT) - {self.sentinel}
            if batch:
                received.append(batch)
            if path in batch:
                return received


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def run(coroutine):
    asyncio.run(asyncio.wait_for(coroutine, 30))


def test_watcher_name(force_polling):
    assert watcher_name(force_polling) == ("polling" if force_polling else "watchfiles")


def test_without_watchfiles_the_polling_watcher_is_used(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "watchfiles", None)  # import watchfiles: ImportError
    assert watcher_name() == "polling"
    root = os.path.realpath(tmp_path)
    app = os.path.join(root, "app.py")

    async def scenario():
        async with Watching(root, force_polling=False) as watching:
            write(app, "")
            assert await watching.until(app) == [{app}]

    with caplog.at_level("INFO", logger="refserver.error"):
        run(scenario())
    assert f"watching for changes in {root} (polling)" in caplog.messages


def test_an_edit_is_reported_and_the_watcher_logged(tmp_path, force_polling, caplog):
    root = os.path.realpath(tmp_path)
    app = os.path.join(root, "pkg", "app.py")
    write(app, "x = 1\n")

    async def scenario():
        async with Watching(root, force_polling) as watching:
            write(app, "x = 22\n")  # another size: seen whatever the mtime resolution
            assert await watching.until(app) == [{app}]

    with caplog.at_level("INFO", logger="refserver.error"):
        run(scenario())
    name = "polling" if force_polling else "watchfiles"
    assert f"watching for changes in {root} ({name})" in caplog.messages


def test_created_and_deleted_files_are_reported(tmp_path, force_polling):
    root = os.path.realpath(tmp_path)
    old = os.path.join(root, "old.py")
    new = os.path.join(root, "sub", "new.py")
    write(old, "")

    async def scenario():
        async with Watching(root, force_polling) as watching:
            os.unlink(old)
            assert {old} in await watching.until(old)
            write(new, "")
            assert {new} in await watching.until(new)

    run(scenario())


def test_excluded_and_not_included_files_are_not_reported(tmp_path, force_polling):
    root = os.path.realpath(tmp_path)
    ignored = [
        os.path.join(root, "notes.txt"),
        os.path.join(root, "app.pyc"),
        os.path.join(root, ".venv", "lib", "x.py"),
        os.path.join(root, "pkg", "__pycache__", "x.py"),
        os.path.join(root, "generated", "x.py"),
    ]
    marker = os.path.join(root, "marker.py")

    async def scenario():
        async with Watching(root, force_polling, excludes=DEFAULT_EXCLUDES + ("generated",)) as w:
            for path in ignored:
                write(path, "ignored")
            # Written after them: a watcher that reported them would have done so by the batch
            # naming the marker (both watchers report in order).
            write(marker, "")
            batches = await w.until(marker)
            assert set().union(*batches) == {marker}

    run(scenario())


def test_a_new_directory_written_at_once_is_reported(tmp_path, force_polling):
    # A checkout or a copy: files written in a directory right after it was created, before a
    # notification-based watcher could watch it.
    root = os.path.realpath(tmp_path)
    wanted = {os.path.join(root, "pkg", "a.py"), os.path.join(root, "pkg", "sub", "b.py")}
    unwanted = {os.path.join(root, "pkg", "__pycache__", "c.py"),
                os.path.join(root, "pkg", "d.txt")}

    async def scenario():
        async with Watching(root, force_polling) as watching:
            for path in sorted(wanted | unwanted):
                write(path, "")
            marker = os.path.join(root, "marker.py")
            write(marker, "")
            batches = await watching.until(marker)
            assert set().union(*batches) == wanted | {marker}

    run(scenario())


def test_quick_writes_come_as_one_batch(tmp_path, force_polling):
    root = os.path.realpath(tmp_path)
    paths = [os.path.join(root, f"m{i}.py") for i in range(5)]

    async def scenario():
        async with Watching(root, force_polling) as watching:
            # What an editor or a formatter does on save: several writes within milliseconds.
            for path in paths:
                write(path, "a")
                write(path + ".tmp", "b")
                os.replace(path + ".tmp", path)
            batches = await watching.until(paths[-1])
            # Everything written before the last file was seen by then, in at most 2 batches
            # (a scan of the poller may fall between two of the writes).
            assert set().union(*batches) == set(paths)
            assert len(batches) <= 2, batches

    run(scenario())


def test_stop_event_ends_the_iteration(tmp_path, force_polling):
    async def scenario():
        stop = asyncio.Event()
        flt = ReloadFilter([str(tmp_path)])
        stop.set()
        # Set before the first change: the iterator ends without yielding.
        batches = [b async for b in changes(flt, force_polling=force_polling, stop_event=stop)]
        assert batches == []

    run(scenario())


def test_cancelling_the_iterating_task_ends_it_promptly(tmp_path, force_polling):
    async def scenario():
        watching = Watching(os.path.realpath(tmp_path), force_polling)
        watching.task = asyncio.create_task(watching._run())
        await watching.ready()  # the watcher is waiting for changes
        watching.task.cancel()
        started = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(watching.task, TIMEOUT)
        assert time.monotonic() - started < 1

    run(scenario())
