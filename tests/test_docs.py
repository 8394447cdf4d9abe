"""The user documentation agrees with the code: CLI options, spec fields and defaults, presets."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from cli.main import app
from tenslora.core.adapter_config import AdapterConfig
from tenslora.core.job_spec import OptimSpec, SyntheticSpec, TrainLoopSpec, TrainSpec
from tenslora.sweeps.presets import adapter_parameters, paper_table2

DOCS = Path(__file__).resolve().parents[1] / "docs"
# Pages other parts of the project write; links to them are checked once they exist.
WRITTEN_ELSEWHERE = {"workers.md", "training.md", "dashboard.md"}


def _sections(text: str, heading: str) -> dict[str, str]:
    """``{title: body}`` of the markdown sections at ``heading`` level (e.g. "## ")."""
    parts = re.split(rf"^{heading}(.+)$", text, flags=re.MULTILINE)
    return {title.strip(): body for title, body in zip(parts[1::2], parts[2::2], strict=True)}


def _cli_sections() -> list[tuple[list[str], list[str]]]:
    """(command words, options in its table) for each `tenslora ...` section of cli.md."""
    found = []
    for title, body in _sections((DOCS / "cli.md").read_text(), "## ").items():
        command = re.match(r"`tenslora ([a-z ]+?)(?: [A-Z][A-Z.]*)?`", title)
        options = re.findall(r"^\| `(--[a-z-]+)`", body, re.MULTILINE)
        options += re.findall(r"^\| `--[a-z-]+` / `(--[a-z-]+)`", body, re.MULTILINE)
        options += re.findall(r"^\| `--[a-z-]+`, `(--[a-z-]+)`", body, re.MULTILINE)
        if command and options:
            found.append((command.group(1).split(), options))
    return found


@pytest.mark.parametrize(("command", "options"), _cli_sections(), ids=lambda v: " ".join(v))
def test_every_option_in_the_cli_reference_exists(command, options):
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for option in options:
        assert option in result.output, f"`tenslora {' '.join(command)}` has no {option}"


def test_the_cli_reference_covers_every_command():
    text = (DOCS / "cli.md").read_text()
    for command in ("serve", "token create", "db upgrade", "sweep submit", "sweep list",
                    "sweep preset", "sweep tune", "results", "train", "tasks", "methods", "demo",
                    "run", "analyze", "job adapter", "estimates list"):
        assert f"`tenslora {command}" in text


def _documented_defaults(heading: str, title: str) -> dict[str, str]:
    # A section ends where a deeper one starts (the adapter table is not the job's).
    section = _sections((DOCS / "sweep-file.md").read_text(), heading)[title].split("\n#")[0]
    rows = re.findall(r"^\| `([a-z_]+)` \| ([^|]+) \|", section, re.MULTILINE)
    return {field: default.strip().strip("`") for field, default in rows}


def _as_documented(default: object) -> str:
    if default is None or isinstance(default, bool):
        return {None: "null", True: "true", False: "false"}[default]
    if isinstance(default, list):
        return "[" + ", ".join(map(str, default)) + "]"
    if isinstance(default, dict):
        return "{" + ", ".join(f"{k}: {v}" for k, v in default.items()) + "}"
    return str(default)


def _is_section(annotation: object) -> bool:
    return isinstance(annotation, type) and (
        issubclass(annotation, BaseModel) or dataclasses.is_dataclass(annotation))


def _spec_fields(model: type) -> dict[str, tuple[bool, bool, object]]:
    """name -> (is a section, is required, default) of a spec model or of the adapter dataclass."""
    if dataclasses.is_dataclass(model):
        return {f.name: (False, f.default is dataclasses.MISSING
                         and f.default_factory is dataclasses.MISSING,
                         f.default if f.default is not dataclasses.MISSING else None)
                for f in dataclasses.fields(model)}
    return {name: (_is_section(field.annotation), field.is_required(),
                   None if field.is_required() else field.get_default(call_default_factory=True))
            for name, field in model.model_fields.items()}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("model", "heading", "title"),
    [(TrainSpec, "### ", "`kind: train`"), (AdapterConfig, "#### ", "`adapter`"),
     (OptimSpec, "#### ", "`optim`"), (TrainLoopSpec, "#### ", "`train`"),
     (SyntheticSpec, "### ", "`kind: synthetic`")],
)
def test_the_sweep_file_reference_lists_every_field_with_its_real_default(model, heading, title):
    documented = _documented_defaults(heading, title)
    if model in (TrainSpec, SyntheticSpec):  # kind, tag and seed share one table
        documented = {**_documented_defaults("### ", "Every kind"), **documented}
        documented["kind"] = model.model_fields["kind"].default
    for name, (section, required, default) in _spec_fields(model).items():
        if section:
            continue  # a section of its own (adapter, optim, train)
        assert name in documented, f"{model.__name__}.{name} is not in docs/sweep-file.md"
        shown = documented[name]
        if required:
            assert shown == "required", name
            continue
        if isinstance(default, tuple):
            default = list(default)  # a tuple field reads and writes JSON lists
        if isinstance(default, int | float) and not isinstance(default, bool):
            assert float(shown) == float(default), name
        else:
            assert shown == _as_documented(default), name


def test_the_presets_page_shows_the_parameter_counts_the_preset_produces():
    table = _sections((DOCS / "presets.md").read_text(), "## ")["`paper-table2`"]
    documented = [int(n.replace(",", "")) for n in re.findall(r"\| ([\d,]{4,}) \|$", table,
                                                                   re.MULTILINE)]
    produced = [adapter_parameters(c["adapter"], "roberta-base")
                for c in paper_table2("cola")["configs"]]
    assert documented == produced


def test_links_between_pages_resolve():
    for page in DOCS.glob("*.md"):
        for target in re.findall(r"\]\(([^)#]+\.md)\)", page.read_text()):
            if Path(target).name in WRITTEN_ELSEWHERE and not (DOCS / target).exists():
                continue
            assert (DOCS / target).exists(), f"{page.name} links to missing {target}"
