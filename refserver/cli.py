"""``python -m refserver APP``: the command line, generated from :data:`refserver.config.OPTIONS`."""

from __future__ import annotations

import argparse
import sys

from .config import OPTIONS, Config, ConfigError


class _Parser(argparse.ArgumentParser):
    """Usage errors are configuration errors: one line and exit code 1, like every other one."""

    def error(self, message: str):
        self.exit(1, f"refserver: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="refserver",
        description="Serve a WSGI, ASGI or RSGI application over HTTP/1.1 and HTTP/2.",
        epilog="Every option can also be set as REFSERVER_<NAME> in the environment.",
    )
    parser.add_argument("app", metavar="APP", help='the application, as "module:attribute"')
    for option in OPTIONS:
        # SUPPRESS keeps unset options out of the namespace, so the environment can fill them.
        if option.type is bool:
            parser.add_argument(
                option.flag,
                dest=option.name,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=f"{option.help} (default: {option.default})",
            )
        else:
            parser.add_argument(
                option.flag,
                dest=option.name,
                action="append" if option.multiple else "store",
                type=str,
                metavar=option.name.upper(),
                choices=option.choices or None,
                default=argparse.SUPPRESS,
                help=f"{option.help} (default: {_shown_default(option)})",
            )
    return parser


def options_markdown() -> str:
    """The README's option table: one row per option of :data:`OPTIONS`, in its order."""
    rows = ["| option | default | what it does |", "| --- | --- | --- |"]
    for option in OPTIONS:
        flag = f"`{option.flag}`"
        if option.type is bool:
            flag += f" / `--no-{option.flag[2:]}`"
        text = option.help + (" " + option.details if option.details else "")
        if option.choices:
            text += " Choices: " + ", ".join(f"`{c}`" for c in option.choices) + "."
        rows.append(f"| {flag} | {_markdown_default(option)} | {_escape_cell(text)} |")
    return "\n".join(rows) + "\n"


def _markdown_default(option) -> str:
    value = option.default
    if option.type is bool:
        return "on" if value else "off"
    if value is None or value == ():
        return "none"
    if value == "":
        return '`""`'
    if option.type is float and value.is_integer():
        return f"`{int(value)}`"
    return f"`{_shown_default(option)}`"


def _escape_cell(text: str) -> str:
    return text.replace("|", "\\|")


def _shown_default(option) -> str:
    if option.multiple:
        return ",".join(map(str, option.default)) or "none"
    if option.base == 8:
        return oct(option.default)
    return str(option.default)


def main(argv: list[str] | None = None) -> int:
    from .server import run_from_config

    args = vars(build_parser().parse_args(argv))
    app = args.pop("app")
    try:
        for option in OPTIONS:
            if option.name in args:
                args[option.name] = option.convert(args[option.name], "command line")
        config = Config(app, **args)
    except ConfigError as exc:
        print(f"refserver: error: {exc}", file=sys.stderr)
        return 1
    return run_from_config(config)
