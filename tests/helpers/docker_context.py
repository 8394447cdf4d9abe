"""What a Dockerfile puts in its image, without a Docker engine: its instructions, and its COPY
lines replayed into a folder (the build context filtered by .dockerignore, as the engine sends it).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path, PurePosixPath

# `pip install ... .` (the project from the working directory), the step the staged files feed.
PROJECT_INSTALL = re.compile(r"pip install\b[^&;]*\s\.(?=\s|$)")


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """``(KEYWORD, arguments)`` of each instruction: continuations joined, comments dropped."""
    found: list[tuple[str, str]] = []
    pending = ""
    for line in dockerfile.read_text().splitlines():
        if line.lstrip().startswith("#") or (not line.strip() and not pending):
            continue
        pending += line.rstrip().removesuffix("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            keyword, _, rest = pending.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
            pending = ""
    return found


def _ignore_patterns(context: Path) -> list[re.Pattern[str]]:
    ignore = context / ".dockerignore"
    lines = ignore.read_text().splitlines() if ignore.exists() else []
    patterns = [x.strip().strip("/") for x in lines if x.strip() and not x.startswith("#")]
    # Exceptions would need Docker's last-match-wins order; nothing here uses them yet.
    assert not any(p.startswith("!") for p in patterns), "stage() does not handle ! patterns"
    regexes = []
    for pattern in patterns:
        parts = re.split(r"(\*\*/|\*\*|\*|\?)", pattern)
        wild = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
        regexes.append(re.compile("".join(wild.get(p, re.escape(p)) for p in parts) + r"\Z"))
    return regexes


def _ignored(rel: PurePosixPath, patterns: list[re.Pattern[str]]) -> bool:
    # A match on a folder excludes everything under it.
    candidates = [rel, *list(rel.parents)[:-1]]
    return any(p.match(str(c)) for p in patterns for c in candidates)


def _copy(source: Path, target: Path, context: Path, patterns: list[re.Pattern[str]]) -> None:
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    for path in files:
        rel = PurePosixPath(path.relative_to(context).as_posix())
        if _ignored(rel, patterns):
            continue
        dest = target if source.is_file() else target / path.relative_to(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)


def stage(dockerfile: Path, context: Path, root: Path) -> Path:
    """Replay the COPY and WORKDIR lines up to the project's `pip install ... .` into ``root``
    (the image's /) and return the folder that install runs in."""
    patterns = _ignore_patterns(context)
    workdir = PurePosixPath("/")
    for keyword, args in instructions(dockerfile):
        if keyword == "WORKDIR":
            workdir = workdir / args
        elif keyword == "COPY":
            words = [w for w in args.split() if not w.startswith("--chown=")]
            assert not any(w.startswith("--") for w in words), f"unhandled COPY flag in {args!r}"
            *sources, dest = words
            target = workdir / dest
            into = dest.endswith("/") or dest in (".", "./") or len(sources) > 1
            for source in sources:
                path = context / source
                assert path.exists(), f"{dockerfile.name} copies {source}, which does not exist"
                name = path.name if into and path.is_file() else ""
                _copy(path, root / str(target / name).lstrip("/"), context, patterns)
        elif keyword == "RUN" and PROJECT_INSTALL.search(args):
            return root / str(workdir).lstrip("/")
    raise AssertionError(f"{dockerfile.name} never runs `pip install ... .`")
