"""Run as a script: start the API with only the packages the API image installs importable.

Every module of an installed distribution outside the closure of docker/requirements-api.txt
(torch, numpy, transformers, ray ...) is made unimportable, then the app is built and its pages
requested. Prints one JSON line: the status of each page.
"""

from __future__ import annotations

import importlib.abc
import importlib.metadata as metadata
import json
import re
import sys
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(requirements: list[str]) -> set[str]:
    """Distributions the requirements pull in, extras included, as pip would resolve them."""
    wanted, todo = set(), [Requirement(line) for line in requirements]
    while todo:
        req = todo.pop()
        name = _canonical(req.name)
        if name in wanted:
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            continue
        wanted.add(name)
        for line in dist.requires or []:
            sub = Requirement(line)
            extras = [{"extra": e} for e in req.extras] or [{"extra": ""}]
            if sub.marker is None or any(sub.marker.evaluate(env) for env in extras):
                todo.append(sub)
    return wanted


class _Refuse(importlib.abc.MetaPathFinder):
    def __init__(self, blocked: set[str]) -> None:
        self.blocked = blocked

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in self.blocked:
            raise ModuleNotFoundError(f"{fullname} is not in the API image", name=fullname)
        return None


def main() -> None:
    lines = (ROOT / "docker" / "requirements-api.txt").read_text().splitlines()
    allowed = closure([x for x in lines if x.strip() and not x.startswith("#")])
    allowed.add("tenslora-sched")  # the project itself, installed with --no-deps
    blocked = {module for module, dists in metadata.packages_distributions().items()
               if not any(_canonical(d) in allowed for d in dists)}
    already = set(sys.modules)
    sys.meta_path.insert(0, _Refuse(blocked))

    from fastapi.testclient import TestClient

    from api.app import create_app

    with TestClient(create_app()) as client:
        pages = {path: client.get(path).status_code
                 for path in ("/healthz", "/docs", "/openapi.json", "/", "/login")}
    print(json.dumps({"pages": pages, "blocked_torch": "torch" in blocked,
                      "loaded": sorted(m for m in set(sys.modules) - already
                                       if m.split(".")[0] in blocked)}))


if __name__ == "__main__":
    main()
