"""Build script: metadata lives in pyproject.toml; this file is where compiled extensions join.

The fast path (``refserver._speedups``, Cython) is optional: where it cannot be built -- no C
compiler, no Cython, or ``REFSERVER_NO_EXTENSIONS=1`` -- the package still installs and runs on
the pure-Python reference path (``--impl auto`` says so in the log).
"""

import os
import sys
import warnings

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

SPEEDUPS = os.path.join("refserver", "_speedups")


class OptionalBuildExt(build_ext):
    """A failed compilation is a warning, not a failed install."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - distutils raises a zoo of types here
            self._skip(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            self._skip(exc, ext.name)

    @staticmethod
    def _skip(exc, name="refserver._speedups"):
        message = (
            f"could not build {name} ({type(exc).__name__}: {exc}); "
            "refserver is installed without its fast path (pure-Python reference path only)"
        )
        warnings.warn(message)
        print("WARNING: " + message, file=sys.stderr)


def extensions():
    if os.environ.get("REFSERVER_NO_EXTENSIONS") == "1":
        return []
    if hasattr(sys, "pypy_version_info"):
        return []  # the fast path is for CPython; PyPy runs the reference path
    try:
        from Cython.Build import cythonize
    except ImportError:
        cythonize = None
    if cythonize is None or not os.path.exists(SPEEDUPS + ".pyx"):
        if os.path.exists(SPEEDUPS + ".c"):  # an sdist built with Cython ships the C source
            return [Extension("refserver._speedups", [SPEEDUPS + ".c"])]
        warnings.warn("Cython is not installed: refserver is built without its fast path")
        return []
    try:
        return cythonize(
            [Extension("refserver._speedups", [SPEEDUPS + ".pyx"])],
            compiler_directives={"language_level": "3"},
            quiet=True,
        )
    except Exception as exc:  # noqa: BLE001 - a Cython compile error must not break the install
        OptionalBuildExt._skip(exc)
        return []


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
