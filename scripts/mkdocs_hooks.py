"""MkDocs hooks: the site shows the repository's own Markdown, rendered at build time.

The spec (spec/*.md), the conformance guide (conformance/README.md) and the benchmark notes
(benchmarks/README.md) live beside the code they describe and are read there on GitHub; the site
takes them as they are instead of keeping copies under docs/. Each becomes a page, its links to
other files are pointed at their pages, and every clause heading gets a short anchor of its own
(``spec/http1/#h1-error-1``) that stays put when a clause's title changes, so that conformance
reports can link to it. The options reference is rendered from the option table, like the README's.
"""

from __future__ import annotations

import os
import posixpath
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from refserver.cli import options_markdown  # noqa: E402
from refserver.conformance.report import clause_anchor  # noqa: E402  (the reports link to it)

#: Repository files shown as pages: {path in the repository: path in the site}.
PAGES = {
    "spec/README.md": "spec/index.md",
    "conformance/README.md": "conformance.md",
    "benchmarks/README.md": "benchmarks.md",
}
for _name in sorted(os.listdir(os.path.join(ROOT, "spec"))):
    if _name.endswith(".md") and _name != "README.md":
        PAGES[f"spec/{_name}"] = f"spec/{_name}"
for _name in sorted(os.listdir(os.path.join(ROOT, "spec", "peers"))):
    if _name.endswith(".md"):
        PAGES[f"spec/peers/{_name}"] = f"spec/peers/{_name}"

#: Where ``<!-- options -->`` stands in a page, the option table goes.
OPTIONS_MARKER = "<!-- options -->"

#: Where ``<!-- README.md: deployment -->`` stands, the README's deployment section goes (the
#: lines between its begin and end comments), its headings one level up: the README keeps what
#: a deployment needs first, the guide adds the rest.
README_SECTION = re.compile(r"<!-- README\.md: (\w+) -->")

#: README sections the site shows as pages of their own (through ``<!-- README.md: NAME -->``):
#: a repository page's link to one of them (``../README.md#performance``, which works on GitHub)
#: leads to that page on the site.
README_ANCHORS = {
    "running-an-application": "index.md",
    "behaviour-worth-knowing": "behaviour.md",
    "deployment": "deployment.md",
    "testing-an-application-in-process": "testing.md",
    "testing-your-framework-or-app-under-refserver": "testing.md",
    "performance": "performance.md",
}

CLAUSE_HEADING = re.compile(r"^(#{2,6}) ([A-Z][A-Z0-9]*(?:-[A-Z0-9]+)+) — (.*?)\s*$")
LINK = re.compile(r"\[([^\]\n]*)\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def site_path(repo_path: str) -> str | None:
    """The page a repository path is shown as, or None for a file the site does not show."""
    if repo_path in PAGES:
        return PAGES[repo_path]
    if repo_path.startswith("docs/"):
        return repo_path[len("docs/"):]
    return PAGES.get(posixpath.join(repo_path, "README.md"))  # a folder: its README


def _link(match: re.Match, repo_path: str, page: str) -> str:
    text, target = match.group(1), match.group(2)
    if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
        return match.group(0)
    path, _, fragment = target.partition("#")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(repo_path), path)).rstrip("/")
    shown = site_path(resolved)
    if resolved == "README.md" and fragment in README_ANCHORS:
        shown, fragment = README_ANCHORS[fragment], ""
    if shown is None:
        return text  # a source file or a folder without a page: its name stays, as text
    new = posixpath.relpath(shown, posixpath.dirname(page))
    return f"[{text}]({new}{'#' + fragment if fragment else ''})"


def render(repo_path: str, text: str) -> str:
    """A repository page as the site shows it: links pointed at pages, clauses anchored."""
    page = PAGES[repo_path]
    lines = []
    in_fence = False
    for line in text.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence:
            heading = CLAUSE_HEADING.match(line)
            if heading:
                line = f"{line} {{#{clause_anchor(heading.group(2))}}}"
            line = LINK.sub(lambda m: _link(m, repo_path, page), line)
        lines.append(line)
    return "\n".join(lines) + "\n"


def on_files(files, config):
    from mkdocs.structure.files import File

    for repo_path, page in PAGES.items():
        with open(os.path.join(ROOT, repo_path), encoding="utf-8") as fh:
            text = fh.read()
        files.append(File.generated(config, page, content=render(repo_path, text)))
    return files


def readme_section(name: str, page: str) -> str:
    """The README's lines between ``<!-- NAME: begin ...-->`` and ``<!-- NAME: end -->``, for
    ``page``: headings one level up, links pointed at pages."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        text = fh.read()
    begin = re.search(rf"^<!-- {name}: begin.*-->$", text, re.M)
    end = re.search(rf"^<!-- {name}: end -->$", text, re.M)
    if begin is None or end is None:
        raise ValueError(f"README.md has no {name} section between begin and end comments")
    lines = []
    in_fence = False
    for line in text[begin.end():end.start()].strip("\n").splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence:
            if line.startswith("### "):
                line = line[1:]
            line = LINK.sub(lambda m: _link(m, "README.md", page), line)
        lines.append(line)
    return "\n".join(lines)


def options_table(page: str) -> str:
    """The option table for ``page``: the paths its texts name (they are ``--help`` text too,
    so they cannot hold links) become links to their pages."""
    table = re.sub(r"(?<![\w/])((?:docs|spec)/[\w-]+\.md)", r"[\1](\1)", options_markdown())
    return LINK.sub(lambda m: _link(m, "README.md", page), table)


def on_page_markdown(markdown, page, config, files):
    if OPTIONS_MARKER in markdown:
        markdown = markdown.replace(OPTIONS_MARKER, options_table(page.file.src_uri))
    return README_SECTION.sub(lambda m: readme_section(m.group(1), page.file.src_uri), markdown)
