import logging
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

#: Set to 1 only on a machine that cannot compile the fast path; CI never sets it.
PURE_ONLY = os.environ.get("REFSERVER_TEST_PURE_ONLY") == "1"

#: Every behaviour test runs on each implementation listed here.
IMPLS = ["pure"] if PURE_ONLY else ["pure", "fast"]
LOOPS = ["asyncio", "uvloop"]


def require_fast_path():
    """Fail (never skip) when the built fast path does not import: a missing extension would
    otherwise silently halve the coverage of every behaviour test."""
    from refserver.impl import ImplementationUnavailable, select

    try:
        select("fast")  # the extension and the compiled HTTP/1.1 modules
    except ImplementationUnavailable as exc:
        problem = str(exc)
    else:
        return
    pytest.fail(
        f"the fast path does not import ({problem}): build it with `pip install -e .` (needs a C "
        "compiler), or set REFSERVER_TEST_PURE_ONLY=1 on a machine that cannot",
        pytrace=False,
    )


@pytest.fixture(params=IMPLS)
def impl(request):
    if request.param == "fast":
        require_fast_path()
    return request.param


@pytest.fixture(params=LOOPS)
def loop_name(request):
    if request.param == "uvloop":
        pytest.importorskip("uvloop")
    return request.param


@pytest.fixture
def server_factory(impl, loop_name):
    """``with server_factory(app, **options) as srv:`` runs ``app`` on this test's path and loop."""
    from support import serve

    def factory(app, **options):
        options.setdefault("impl", impl)
        return serve(app, loop=loop_name, **options)

    return factory


@pytest.fixture
def server_logs():
    """Every record of the "refserver" loggers, whatever the logging configuration."""
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record)

    logger = logging.getLogger("refserver")
    handler = Collect(logging.DEBUG)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(old_level)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Under coverage (CI), record each test's lines, and those of the servers it starts as
    processes, in the context of the path it runs on ("impl=pure", "impl=fast", or "impl=none"
    for tests not parametrised by path or by a cell of the pytest plugin), so that ``coverage
    report --contexts=impl=pure`` gives the coverage of one path."""
    try:
        from coverage import Coverage
    except ImportError:
        return
    cov = Coverage.current()
    if cov is not None:
        params = item.callspec.params if hasattr(item, "callspec") else {}
        cell = params.get("refserver_cell")  # the pytest plugin's cells name their path too
        context = f"impl={params.get('impl', getattr(cell, 'impl', 'none'))}"
        cov.switch_context(context)
        os.environ["COVERAGE_CONTEXT"] = context  # for the servers the test starts as processes
