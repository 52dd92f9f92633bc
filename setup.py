"""Build script: metadata lives in pyproject.toml; this file is where compiled extensions join.

The fast path (``refserver._speedups`` and the compiled copies of the HTTP/1.1 modules, Cython) is
optional: where it cannot be built -- no C compiler, no Cython, or ``REFSERVER_NO_EXTENSIONS=1`` --
the package still installs and runs on the pure-Python reference path (``--impl auto`` says so in
the log).
"""

import os
import sys
import warnings

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

SPEEDUPS = os.path.join("refserver", "_speedups")

#: Reference modules that the fast path also runs compiled: (source, extension name). The copy sits
#: in the package of its source, so the source's relative imports mean the same thing in both; its
#: ``.pxd`` (``refserver/wire/_compiled_h1.pxd``, named after the copy) declares the classes of the
#: source as extension types.
COMPILED_COPIES = [
    (os.path.join("refserver", "wire", "h1.py"), "refserver.wire._compiled_h1"),
    (os.path.join("refserver", "wire", "chunked.py"), "refserver.wire._compiled_chunked"),
    (os.path.join("refserver", "wire", "request.py"), "refserver.wire._compiled_request"),
    (os.path.join("refserver", "wire", "response.py"), "refserver.wire._compiled_response"),
    (os.path.join("refserver", "protocols", "h1.py"), "refserver.protocols._compiled_h1"),
]


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
    copies = [(source[:-3] + ".c", name) for source, name in COMPILED_COPIES]
    if cythonize is None:
        generated = [(SPEEDUPS + ".c", "refserver._speedups")] + copies
        if all(os.path.exists(c) for c, _ in generated):  # an sdist built with Cython ships them
            return [Extension(name, [c]) for c, name in generated]
        warnings.warn("Cython is not installed: refserver is built without its fast path")
        return []
    try:
        return cythonize(
            [Extension("refserver._speedups", [SPEEDUPS + ".pyx"])],
            compiler_directives={"language_level": "3"},
            quiet=True,
        ) + cythonize(
            [Extension(name, [source]) for source, name in COMPILED_COPIES],
            # The annotations of the reference modules document; they must not become C types
            # that the interpreted reference does not enforce.
            compiler_directives={"language_level": "3", "annotation_typing": False},
            quiet=True,
        )
    except Exception as exc:  # noqa: BLE001 - a Cython compile error must not break the install
        OptionalBuildExt._skip(exc)
        return []


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
