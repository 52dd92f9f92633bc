"""Find the application object and decide which interface it speaks."""

from __future__ import annotations

import importlib
import inspect
import os
import sys

from .config import ConfigError


class AppLoadError(ConfigError):
    """The application could not be imported or is not an application: exit code 1."""


def import_from_string(spec: str, app_dir: str = ".") -> object:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise AppLoadError(f'APP must be given as "module:attribute", got {spec!r}')
    path = os.path.abspath(app_dir)
    if path not in sys.path:
        sys.path.insert(0, path)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise AppLoadError(f"could not import module {module_name!r}") from exc
        raise
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppLoadError(f"attribute {attr!r} not found in module {module_name!r}") from None
    return obj


def load_app(app: object, *, factory: bool = False, app_dir: str = ".") -> object:
    if isinstance(app, str):
        app = import_from_string(app, app_dir)
    if factory:
        if not callable(app):
            raise AppLoadError(f"--factory was given but {app!r} is not callable")
        app = app()
    return app


def _positional_count(func) -> int | None:
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return None
    count = 0
    for param in sig.parameters.values():
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            count += 1
        elif param.kind is param.VAR_POSITIONAL:
            return None
    return count


def _is_async(obj) -> bool:
    if inspect.iscoroutinefunction(obj):
        return True
    call = getattr(obj, "__call__", None)  # noqa: B004 - the method itself is inspected, not callability
    return call is not None and inspect.iscoroutinefunction(call)


def detect_interface(app: object) -> str:
    """RSGI for ``__rsgi__`` or an async callable of two parameters, ASGI for an async callable
    of three, WSGI for a sync callable of two; anything else cannot be served."""
    if hasattr(app, "__rsgi__"):
        return "rsgi"
    if not callable(app):
        raise AppLoadError(f"the application must be callable, got {type(app).__name__}")
    count = _positional_count(app)
    if _is_async(app):
        if count == 2:
            return "rsgi"
        if count == 3:
            return "asgi"
        raise AppLoadError(
            f"cannot detect the interface of {app!r}: an async callable with {count} parameters "
            "(RSGI takes 2: scope, protocol; ASGI takes 3: scope, receive, send); "
            "use --interface"
        )
    if count == 2:
        return "wsgi"
    raise AppLoadError(
        f"cannot detect the interface of {app!r}: a synchronous callable with {count} parameters "
        "(WSGI takes 2: environ, start_response); use --interface"
    )
