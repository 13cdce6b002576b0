"""The repository stands on its own: no tracked file points at something a user who
clones it does not have (the authors' private notes outside the checkout, an issue
tracker's numbering), and the documents it does point to exist.

The patterns below are written so that this file does not match them itself.
"""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Paths outside the checkout, and cross-references to an issue tracker. The design file
# name is matched in capitals only: the in-repo design document is docs/design.md.
OUTSIDE_PATH = "a path outside the repository"
NOT_IN_REPO = "a file that is not in the repository: cite docs/design.md"
THREAD_COPY = "a private copy of the thread: cite its Message-ID"
ISSUE = "an issue cross-reference: state the requirement itself"
OUTSIDE = [
    (re.compile(r"\.\./shared"), OUTSIDE_PATH),
    (re.compile(r"/work/share[d]"), OUTSIDE_PATH),
    (re.compile(r"shared/DESIG[N]"), OUTSIDE_PATH),
    (re.compile(r"(?<![\w/.-])DESIGN\.md"), NOT_IN_REPO),
    (re.compile(r"STYLE\.md"), NOT_IN_REPO),
    (re.compile(r"reference/per[-]process"), THREAD_COPY),
    (re.compile(r"thread\.txt"), THREAD_COPY),
    (re.compile(r"\b[Ii]ssues? #?\d+"), ISSUE),
    (re.compile(r"done[-]when"), ISSUE),
]

# Directories never scanned when git is unavailable (generated or private state).
SKIP_DIRS = {".git", "__pycache__", ".pytest_cache", "results", "outputs", "multirun"}


def tracked_files() -> list[Path]:
    """`git ls-files` of the checkout; without git (an unpacked archive), every file
    under the root except generated directories."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        names = [n for n in out.decode().split("\0") if n]
    except (OSError, subprocess.CalledProcessError):
        names = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*")
                 if p.is_file() and not SKIP_DIRS & set(p.relative_to(ROOT).parts)
                 and not p.name.endswith(".egg-info")]
    return [ROOT / n for n in sorted(names) if (ROOT / n).is_file()]


def text_of(path: Path) -> str | None:
    """The file as text, or None for binary data (NUL bytes or not UTF-8: traces, Parquet)."""
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def outside_references(text: str) -> list[tuple[int, str, str]]:
    """(line number, matched text, why) of every outside reference in text."""
    found = []
    for lineno, line in enumerate(text.splitlines(), 1):
        for pattern, why in OUTSIDE:
            for m in pattern.finditer(line):
                found.append((lineno, m.group(0), why))
    return found


def j(*parts: str) -> str:
    """Join parts: the samples below must not match the patterns in this file's own text."""
    return "".join(parts)


@pytest.mark.parametrize("text, expected", [
    (j("see ../../", "shared/", "DESIGN", ".md for the map"),
     [(1, j("../", "shared"), OUTSIDE_PATH), (1, j("shared/", "DESIGN"), OUTSIDE_PATH)]),
    (j("x\n# DESIGN", ".md: the metrics"), [(2, j("DESIGN", ".md"), NOT_IN_REPO)]),
    (j("layout (STYLE", ".md)"), [(1, j("STYLE", ".md"), NOT_IN_REPO)]),
    (j("(reference/", "per-process-page-size-thread", ".txt)"),
     [(1, j("reference/", "per-process"), THREAD_COPY), (1, j("thread", ".txt"), THREAD_COPY)]),
    (j("/work/", "shared/notes"), [(1, j("/work/", "shared"), OUTSIDE_PATH)]),
    (j('"""iss', "ue 3, done", "-when 1: a trace"), [(1, j("iss", "ue 3"), ISSUE), (1, j("done", "-when"), ISSUE)]),
    (j("< 50 ms (Iss", "ue #2)"), [(1, j("Iss", "ue #2"), ISSUE)]),
    # what the repository may say
    ("the config contract of docs/design.md; terms in ../docs/glossary.md", []),
    ("MAP_SHARED | MAP_ANONYMOUS; <20260217145026.3880286-1-dev.jain@arm.com>", []),
    ("the issue of pinned folios; 18 cells", []),
])
def test_the_patterns_catch_outside_references(text, expected):
    assert outside_references(text) == expected


def test_no_tracked_file_points_outside_the_repository():
    files = tracked_files()
    assert ROOT / "docs" / "design.md" in files and ROOT / "README.md" in files
    bad = []
    for path in files:
        text = text_of(path)
        if text is None:
            continue
        bad += [f"{path.relative_to(ROOT)}:{lineno}: {match!r}: {why}"
                for lineno, match, why in outside_references(text)]
    assert bad == []


def test_kernel_model_readme_names_every_module_and_only_real_ones():
    """kernel_model/README.md is the module contract: each non-empty module of
    kernel_model/ is named there by file name, and each .py it names exists."""
    pkg = ROOT / "kernel_model"
    readme = (pkg / "README.md").read_text()
    modules = {p.relative_to(pkg).as_posix() for p in pkg.rglob("*.py") if p.read_text().strip()}
    named = set(re.findall(r"(?<![\w/.*])((?:[\w]+/)*\w+\.py)\b", readme))
    by_name = {m.rsplit("/", 1)[-1] for m in modules}
    # a path from the repository root (tests/..., bench/...) is a reference, not a module
    named = {n for n in named if not (ROOT / n).is_file()}
    assert sorted(n for n in named if n not in modules and n.rsplit("/", 1)[-1] not in by_name) == []
    assert sorted(m for m in modules if m not in named and m.rsplit("/", 1)[-1] not in named) == []


MD_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_relative_links_of_the_docs_resolve():
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for doc in docs:
        for target in MD_LINK.findall(doc.read_text()):
            if "://" in target:
                continue
            if not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
    assert broken == []


def test_design_lists_every_contract_metric():
    from kernel_model.simulate import METRIC_NAMES

    design = (ROOT / "docs" / "design.md").read_text()
    assert [m for m in METRIC_NAMES if f"`{m}`" not in design] == []
