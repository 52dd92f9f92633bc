"""The documentation site: every clause has its anchor, links to repository files become links to
their pages, and a strict build fails on a broken link (the build itself runs in .ci/run)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest

from refserver.conformance.report import clause_url, load_clause_index

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _hooks():
    spec = importlib.util.spec_from_file_location(
        "mkdocs_hooks", os.path.join(ROOT, "scripts", "mkdocs_hooks.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_clause_of_the_index_gets_its_anchor_on_its_page():
    hooks = _hooks()
    index = load_clause_index()
    assert index, "the clause index is shipped"
    rendered = {}
    for clause_id, item in index.items():
        repo_path = f"spec/{item['document']}.md"
        if repo_path not in rendered:
            with open(os.path.join(ROOT, repo_path), encoding="utf-8") as fh:
                rendered[repo_path] = hooks.render(repo_path, fh.read())
        # The page and anchor a conformance report links to.
        page, anchor = clause_url(clause_id, index).split("/#")
        assert page == f"spec/{item['document']}"
        assert f"{{#{anchor}}}" in rendered[repo_path], clause_id


def test_links_to_repository_files_point_at_their_pages():
    hooks = _hooks()
    text = (
        "[guide](../conformance/README.md) [h2](http2.md#connection) [code](../refserver/tls.py) "
        "[rfc](https://www.rfc-editor.org/rfc/rfc9112) [here](#why)\n"
        "```\n### H1-FRAMING-6 — inside a code block\n```\n"
        "### H1-FRAMING-6 — Transfer-Encoding and Content-Length together are 400\n"
    )
    out = hooks.render("spec/http1.md", text)
    assert "[guide](../conformance.md)" in out
    assert "[h2](http2.md#connection)" in out
    assert "[code](" not in out and "code" in out  # a source file stays as its name
    assert "[rfc](https://www.rfc-editor.org/rfc/rfc9112)" in out
    assert "[here](#why)" in out
    assert "### H1-FRAMING-6 — inside a code block\n" in out
    assert "together are 400 {#h1-framing-6}" in out


def _build(tmp_path, extra: str) -> subprocess.CompletedProcess:
    """A strict build of a copy of docs/ with ``extra`` appended to its first page."""
    docs = tmp_path / "docs"
    shutil.copytree(os.path.join(ROOT, "docs"), docs)
    with open(docs / "index.md", "a", encoding="utf-8") as fh:
        fh.write(extra)
    with open(os.path.join(ROOT, "mkdocs.yml"), encoding="utf-8") as fh:
        config = fh.read()
    config = config.replace("docs_dir: docs", f"docs_dir: {docs}")
    config = config.replace("  - scripts/mkdocs_hooks.py",
                            f"  - {os.path.join(ROOT, 'scripts', 'mkdocs_hooks.py')}")
    config = re.sub(r"\nwatch:\n(  - .*\n)+", "\n", config)  # paths relative to the checkout
    (tmp_path / "mkdocs.yml").write_text(config, encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(tmp_path / "mkdocs.yml"),
         "-d", str(tmp_path / "site")],
        capture_output=True, text=True, timeout=120, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


needs_mkdocs = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None,
    reason="mkdocs is not installed (pip install -e '.[docs]')",
)


@needs_mkdocs
@pytest.mark.parametrize("link", ["spec/http1.md#no-such-clause", "no-such-page.md"])
def test_a_strict_build_fails_on_a_broken_link(tmp_path, link):
    good = _build(tmp_path / "good", "\n[a clause](spec/http1.md#h1-error-1)\n")
    assert good.returncode == 0, good.stderr
    bad = _build(tmp_path / "bad", f"\n[broken]({link})\n")
    assert bad.returncode != 0
    assert link in bad.stderr + bad.stdout


def test_links_to_readme_sections_shown_as_pages_lead_to_those_pages():
    """A repository page links to the README's section (which works on GitHub); the site, which
    shows that section as a page of its own, links to the page."""
    hooks = _hooks()
    out = hooks.render(
        "benchmarks/README.md",
        "[figures](../README.md#performance) [plugin](../README.md#testing-your-framework-or-app-"
        "under-refserver) [other](../README.md#layout)\n",
    )
    assert "[figures](performance.md)" in out
    assert "[plugin](testing.md)" in out
    assert "[other](" not in out  # a README section the site does not show: its text stays
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        headings = {
            re.sub(r"[^a-z0-9 -]", "", line[3:].strip().lower()).replace(" ", "-")
            for line in fh
            if line.startswith("## ")
        }
    for anchor, page in hooks.README_ANCHORS.items():
        assert anchor in headings, f"README.md has no section #{anchor} any more"
        assert os.path.exists(os.path.join(ROOT, "docs", page)), page


def test_the_conformance_guide_lists_every_option_of_the_runner():
    """Its option table is written by hand: an option added to the runner must be added there."""
    from refserver.conformance.cli import build_parser

    with open(os.path.join(ROOT, "conformance", "README.md"), encoding="utf-8") as fh:
        guide = fh.read()
    names = " ".join(line.split("|")[1] for line in guide.splitlines() if line.startswith("| `-"))
    documented = set(re.findall(r"(?<![\w-])(--?[a-z][a-z0-9-]*)", names))
    options = {
        flag
        for action in build_parser()._actions
        for flag in action.option_strings
        if flag not in ("-h", "--help")
    }
    assert options - documented == set(), "missing from conformance/README.md's option table"
    assert documented - options == set(), "in conformance/README.md but not an option"


def test_the_options_page_links_the_pages_its_texts_name():
    table = _hooks().options_table("options.md")
    assert "[docs/deployment.md](deployment.md)" in table  # --fd, --workers
    assert "[spec/server.md](spec/server.md)" in table  # --proxy-headers


def test_the_readme_names_the_system_tools_ci_installs():
    """The README's test command needs the tools .ci/run installs; it lists the same packages."""
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as fh:
        installed = set(re.findall(r"missing\+=\(([\w.-]+)\)", fh.read()))
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        named = re.search(r"`apt-get install ([^`]+)`", fh.read())
    assert installed, ".ci/run installs its tools with missing+=(...)"
    assert named is not None and set(named.group(1).split()) == installed
