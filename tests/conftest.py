import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

#: Every behaviour test runs on each implementation listed here.
IMPLS = ["pure"]
LOOPS = ["asyncio", "uvloop"]


@pytest.fixture(params=IMPLS)
def impl(request):
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
