"""Run as `python -S -I wheel_import_probe.py UNPACKED SITE [SITE ...] -- MODULE:ATTR ...`.

Imports each MODULE:ATTR with only UNPACKED (an unzipped wheel of the project) and the SITE
folders (third-party packages) importable: -S skips site-packages and their .pth files, so the
repository's editable install cannot supply a module the wheel lacks. Then builds the API app on
TENSLORA_DATABASE_URL and requests its pages (templates and static files come from the wheel too).
Prints one JSON line: the modules loaded from the wheel, any module loaded from anywhere else than
the wheel, the SITE folders and the standard library (none should be), and the pages' statuses.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path


def main() -> None:
    args = sys.argv[1:]
    split = args.index("--")
    unpacked, sites, targets = str(Path(args[0]).resolve()), args[1:split], args[split + 1 :]
    sys.path[:0] = [unpacked]
    sys.path.extend(sites)
    for target in targets:
        module, _, attr = target.partition(":")
        if not callable(getattr(importlib.import_module(module), attr)):
            raise TypeError(f"{target} is not callable")

    from fastapi.testclient import TestClient

    from api.app import create_app

    with TestClient(create_app()) as client:
        pages = {path: client.get(path).status_code for path in ("/healthz", "/login")}
    files = {name: str(Path(module.__file__).resolve()) for name, module in sys.modules.items()
             # multiprocessing, once imported, names this script __mp_main__ too
             if name not in ("__main__", "__mp_main__") and getattr(module, "__file__", None)}
    wheel = unpacked + "/"
    known = tuple(str(Path(p).resolve()) + "/" for p in (*sites, sys.base_prefix))
    from_wheel = sorted(name for name, file in files.items() if file.startswith(wheel))
    strays = sorted(f"{name}: {file}" for name, file in files.items()
                    if not file.startswith((wheel, *known)))
    print(json.dumps({"from_wheel": from_wheel, "strays": strays, "pages": pages}))


if __name__ == "__main__":
    main()
