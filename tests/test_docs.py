"""README.md and docs/*.md stay true: their commands run, their links resolve, settings match the code.

Convention for code blocks (also in docs/testing.md):

- A block fenced ```sh is RUN, unless the line just before its fence is an HTML comment
  `<!-- not run: REASON -->` (needs Azure, Core Tools, minutes of CPU, or is `make run`/`make test`
  themselves, which would recurse). Shell commands must be fenced `sh`, never `bash`, `shell`,
  `zsh` or `console`, so that no block escapes this test by its fence. Other fences (`text`,
  `json`, ...) are not run; `json` blocks must parse.
- The runnable blocks of one page run in order as ONE bash script (`set -euo pipefail`), as a
  reader pastes them into one terminal: a host started with `&` in one block serves the next ones.
- Each page runs in a fresh copy of the project (`.venv` and `node_modules` linked, not copied),
  with every AMLEVENTS_* variable removed from the environment and AMLEVENTS_LEDGER_PATH in a
  temporary folder. Ports 7071-7079 in a block are replaced by free ports, so parallel runs do not
  collide; a page that uses Azurite's fixed port 10002 is skipped while that port is taken. Every
  process the script leaves running (hosts, Azurite) is stopped when the page ends.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
SETTINGS_PAGE = ROOT / "docs" / "settings.md"
SAMPLE = json.loads((ROOT / "local.settings.sample.json").read_text(encoding="utf-8"))["Values"]

NOT_RUN = re.compile(r"^<!-- not run: (?P<reason>\S.*?) -->$")
FENCE = re.compile(r"^```(?P<info>[^`\s]*)\s*$")
SHELL_ALIASES = {"bash", "shell", "zsh", "console", "shell-session"}
PORTS = re.compile(r"\b707[0-9]\b")
AZURITE_PORT = 10002
SETTING = re.compile(r"AMLEVENTS_[A-Z0-9_]*[A-Z0-9]")
LINK = re.compile(r"!?\[[^\]]*\]\((?P<target>[^)\s]+)\)")
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", "node_modules", ".amlevents", ".mypy_cache",
                                     ".ruff_cache", ".pytest_cache", ".hypothesis", "__pycache__",
                                     "*.egg-info", "local.settings.json")
PAGE_TIMEOUT_S = 180


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it starts, its fence's info string, its text, run or not."""

    page: Path
    line: int
    info: str
    text: str
    not_run_reason: str | None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """Every fenced block of a page."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found, index = [], 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        end = next(i for i in range(index + 1, len(lines)) if lines[i].strip() == "```")
        marker = NOT_RUN.match(lines[index - 1].strip()) if index else None
        found.append(Block(page, index + 1, opening["info"], "\n".join(lines[index + 1:end]),
                           marker["reason"] if marker else None))
        index = end + 1
    return found


def runnable(page: Path) -> list[Block]:
    return [b for b in blocks(page) if b.info == "sh" and b.not_run_reason is None]


def prose(page: Path) -> str:
    """A page without its fenced blocks and inline code (what links and headings live in)."""
    text = page.read_text(encoding="utf-8")
    text = re.sub(r"^```.*?^```\s*$", "", text, flags=re.MULTILINE | re.DOTALL)
    return re.sub(r"`[^`\n]*`", "", text)


def rel(page: Path) -> str:
    return str(page.relative_to(ROOT))


# -- the blocks ------------------------------------------------------------------------------------

@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_shell_blocks_are_fenced_sh_and_markers_give_a_reason(page: Path) -> None:
    text = page.read_text(encoding="utf-8").splitlines()
    for block in blocks(page):
        assert block.info not in SHELL_ALIASES, f"{block.where}: fence shell commands as ```sh"
    for number, line in enumerate(text, start=1):
        if "not run" in line and line.strip().startswith("<!--"):
            assert NOT_RUN.match(line.strip()), f"{rel(page)}:{number}: write <!-- not run: REASON -->"
            assert number < len(text) and text[number].startswith("```sh"), \
                f"{rel(page)}:{number}: a not-run marker must be the line just before a ```sh fence"


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_json_blocks_parse(page: Path) -> None:
    for block in blocks(page):
        if block.info == "json":
            try:
                json.loads(block.text)
            except ValueError as exc:
                pytest.fail(f"{block.where}: not JSON: {exc}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_taken(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def project_copy(where: Path) -> Path:
    """A fresh copy of the project, as a reader's clone, with the installed .venv linked in."""
    copy = where / "project"
    shutil.copytree(ROOT, copy, ignore=COPY_IGNORE, symlinks=True)
    for linked in (".venv", "node_modules"):
        if (ROOT / linked).exists():
            (copy / linked).symlink_to(ROOT / linked, target_is_directory=True)
    return copy


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop what the page's script left running: every process of its own process group."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


@pytest.mark.parametrize("page", [p for p in PAGES if runnable(p)], ids=rel)
def test_runnable_blocks_run(page: Path, tmp_path: Path) -> None:
    # GIVEN the page's runnable blocks, one script, free ports instead of 7071-7079
    script_blocks = runnable(page)
    if any(str(AZURITE_PORT) in b.text for b in script_blocks) and port_taken(AZURITE_PORT):
        pytest.skip(f"{rel(page)} starts Azurite on its fixed port {AZURITE_PORT}, which is taken")
    ports: dict[str, str] = {}
    parts = ["set -euo pipefail"]
    for block in script_blocks:
        text = PORTS.sub(lambda m: ports.setdefault(m.group(0), str(free_port())), block.text)
        parts += [f"echo '--- {block.where}' >&2", text]
    cwd = project_copy(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMLEVENTS_")}
    env["AMLEVENTS_LEDGER_PATH"] = str(tmp_path / "ledger.sqlite3")

    # WHEN it runs in a fresh copy, its output in files (background hosts keep pipes open)
    out_path, err_path = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        process = subprocess.Popen(["bash", "-c", "\n".join(parts)], cwd=cwd, env=env, stdout=out,
                                   stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            returncode = process.wait(timeout=PAGE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            returncode = None
        finally:
            stop_group(process)

    # THEN every command succeeded
    stderr = err_path.read_text(errors="replace")
    failed_at = re.findall(r"^--- (\S+)$", stderr, flags=re.MULTILINE)[-1:]
    assert returncode == 0, (
        f"{rel(page)}: the block at {failed_at or '?'} failed (exit {returncode})\n"
        f"--- stdout\n{out_path.read_text(errors='replace')[-3000:]}\n--- stderr\n{stderr[-3000:]}")


# -- the front page ------------------------------------------------------------------------------

def test_readme_opens_with_make_run_and_make_test_which_the_makefile_defines() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# ")
    body = [line for line in lines[1:] if line.strip() and not line.strip().startswith("<!--")]
    assert body[0] == "```sh", "README must open with the two commands"
    first = blocks(README)[0]
    commands = [line.split("#")[0].strip() for line in first.text.splitlines() if line.strip()]
    assert commands == ["make run", "make test"]
    assert first.not_run_reason, "the test must not run `make run` / `make test` (recursion, time)"
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    run = re.search(r"^run:.*\n((?:\t.*\n)+)", makefile, flags=re.MULTILINE)
    test = re.search(r"^test:(.*)\n((?:\t.*\n)+)", makefile, flags=re.MULTILINE)
    assert run and "amlevents demo" in run.group(1), "make run runs the demo"
    assert test and "lint" in test.group(1) and "pytest" in test.group(2), \
        "make test runs the linters and pytest"


def test_readme_is_a_front_page_under_15_kb() -> None:
    assert len(README.read_bytes()) < 15 * 1024


def test_readme_outcome_table_lists_every_outcome() -> None:
    from handlers.outcome import Outcome

    table = re.findall(r"^\| `([a-z_]+)` \|", README.read_text(encoding="utf-8"), flags=re.MULTILINE)
    assert sorted(table) == sorted(o.value for o in Outcome)


# -- links -----------------------------------------------------------------------------------------

def slugs(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings."""
    found: set[str] = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", prose_with_code_spans(page), flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        candidate, n = slug, 0
        while candidate in found:
            n += 1
            candidate = f"{slug}-{n}"
        found.add(candidate)
    return found


def prose_with_code_spans(page: Path) -> str:
    """A page without its fenced blocks (headings keep their inline code)."""
    text = page.read_text(encoding="utf-8")
    return re.sub(r"^```.*?^```\s*$", "", text, flags=re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_relative_links_point_at_existing_files_and_headings(page: Path) -> None:
    broken = []
    for match in LINK.finditer(prose(page)):
        target = match["target"]
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
            continue
        path_part, _, anchor = target.partition("#")
        file = (page.parent / path_part).resolve() if path_part else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in slugs(file):
            broken.append(f"{target}: no heading #{anchor} in {file.relative_to(ROOT)}")
    assert broken == [], f"{rel(page)}: " + "; ".join(broken)


# -- settings --------------------------------------------------------------------------------------

@functools.cache
def settings_in_code() -> frozenset[str]:
    """Every AMLEVENTS_ setting name the code spells out, plus those the sample lists (the
    per-concern dry-run switches are built from AMLEVENTS_DRY_RUN and the concern's name)."""
    names = {name for name in SAMPLE if name.startswith("AMLEVENTS_")}
    sources = [*ROOT.glob("handlers/**/*.py"), *ROOT.glob("amlevents/**/*.py"), ROOT / "function_app.py"]
    for source in sources:
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and re.fullmatch(r"AMLEVENTS_[A-Z0-9_]+", node.value):
                names.add(node.value)
    return frozenset(names)


def documented_settings() -> dict[str, list[str]]:
    """The rows of docs/settings.md: setting name → its cells."""
    rows = {}
    for line in SETTINGS_PAGE.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        match = re.fullmatch(r"`(AMLEVENTS_[A-Z0-9_]+)`", cells[0]) if line.startswith("|") else None
        if match:
            assert match[1] not in rows, f"{match[1]} has two rows in docs/settings.md"
            rows[match[1]] = cells
    return rows


def test_settings_page_documents_every_setting_the_code_reads_and_no_other() -> None:
    in_code, documented = settings_in_code(), set(documented_settings())
    assert sorted(in_code - documented) == [], "settings missing from docs/settings.md"
    assert sorted(documented - in_code) == [], "docs/settings.md documents settings the code does not read"


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_pages_name_only_settings_that_exist(page: Path) -> None:
    named = set(SETTING.findall(page.read_text(encoding="utf-8")))
    assert sorted(named - settings_in_code()) == []


def test_literal_defaults_match_the_sample_settings() -> None:
    # A default written as a literal (`600`) must be what local.settings.sample.json shows, when
    # the sample sets a value; defaults described in words ("*(none)*") are not compared.
    wrong = []
    for name, cells in documented_settings().items():
        literal = re.match(r"`([^`]*)`", cells[1])
        sample = SAMPLE.get(name, "")
        if literal and sample and literal[1] != sample:
            wrong.append(f"{name}: docs say {literal[1]!r}, the sample {sample!r}")
    assert wrong == []
