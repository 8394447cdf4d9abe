"""scripts/gpu-bundle: the pieces that decide what travels to the GPU machine and how it lands.

Building the real bundle downloads ~90 MB of wheels (run by hand, not here); these check the
parts on small inputs: which wheels fit the device's Python, how a wheel is unpacked, what is
pruned, that requirements missing from both the bundle and the device are caught, and that the
random MiniLM stand-in loads like the real one.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from tools.gpu_check import bundle


@pytest.mark.parametrize(("name", "fits"), [
    ("ray-2.60.0-cp312-cp312-manylinux2014_x86_64.whl", True),
    ("ray-2.60.0-cp311-cp311-manylinux2014_x86_64.whl", False),
    ("pydantic-2.14.4-py3-none-any.whl", True),
    ("thing-1.0-cp39-abi3-manylinux_2_17_x86_64.whl", True),
])
def test_only_wheels_for_the_device_python_are_taken(name: str, fits: bool) -> None:
    assert bundle._fits(name, "3.12") is fits


def _wheel(path: Path, files: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return path


def test_unpack_puts_purelib_at_the_root_and_drops_scripts(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path / "demo-1.0-py3-none-any.whl", {
        "demo/__init__.py": "X = 1\n",
        "demo-1.0.data/purelib/demo_extra.py": "Y = 2\n",
        "demo-1.0.data/scripts/demo": "#!/bin/sh\n",
        "demo-1.0.dist-info/METADATA": "Name: demo\n",
    })
    site = tmp_path / "site"
    bundle.unpack([wheel], site)
    assert (site / "demo" / "__init__.py").read_text() == "X = 1\n"
    assert (site / "demo_extra.py").exists()
    assert not any("scripts" in str(p) for p in site.rglob("*"))


def test_prune_drops_what_no_process_imports_and_keeps_ray_core(tmp_path: Path) -> None:
    for relative in ("ray/jars/x.jar", "ray/serve/a.py", "ray/dashboard/client/build/m.js",
                     "ray/_private/tests/t.py", "ray/actor.py", "ray/dashboard/agent.py",
                     "ray/core/src/ray/raylet/raylet", "plotly/package_data/plotly.min.js",
                     "plotly/io/__init__.py", "ray/__pycache__/x.pyc"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("x")
    removed = bundle.prune(tmp_path)
    assert {"ray/jars", "ray/serve", "ray/dashboard/client", "plotly/package_data"} <= set(removed)
    kept = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()}
    assert kept == {"ray/actor.py", "ray/dashboard/agent.py", "ray/core/src/ray/raylet/raylet",
                    "plotly/io/__init__.py"}


def test_a_requirement_neither_bundled_nor_on_the_device_is_reported(tmp_path: Path) -> None:
    info = tmp_path / "fastapi-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Name: fastapi\nRequires-Dist: starlette>=1\nRequires-Dist: anyio>=4\n"
        "Requires-Dist: leftpad>=1\nRequires-Dist: tomli; python_version < '3.11'\n"
        "Requires-Dist: email-validator; extra == 'all'\n"
    )
    assert bundle.check_requirements(tmp_path, "3.12") == ["fastapi needs leftpad>=1"]


def test_the_device_list_holds_torch_and_not_the_service_packages() -> None:
    on_device = bundle.device_packages()
    assert {"torch", "transformers", "httpx", "nvidia-ml-py", "typer"} <= on_device
    assert not {"pydantic", "fastapi", "sqlalchemy", "ray", "tensorly"} & on_device


def test_random_minilm_stand_in_loads_as_a_classifier(tmp_path: Path) -> None:
    from transformers import BertConfig, BertForSequenceClassification

    BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
               vocab_size=100).save_pretrained(tmp_path)
    bundle.write_random_minilm(tmp_path)
    assert "not the pretrained" in (tmp_path / "RANDOM_INIT").read_text()
    model = BertForSequenceClassification.from_pretrained(tmp_path, num_labels=2)
    assert model.config.hidden_size == 32
    assert json.loads((tmp_path / "config.json").read_text())["num_hidden_layers"] == 2
    first = model.bert.embeddings.word_embeddings.weight.detach().clone()
    bundle.write_random_minilm(tmp_path)  # seeded: the same weights again
    again = BertForSequenceClassification.from_pretrained(tmp_path, num_labels=2)
    assert (again.bert.embeddings.word_embeddings.weight == first).all()


def test_bundled_bf16_weights_are_widened_to_float32_and_load(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, vocab_size=100)
    config.save_pretrained(tmp_path)
    weights = {k: v.to(torch.bfloat16) if v.is_floating_point() else v
               for k, v in BertModel(config).state_dict().items()}
    save_file(weights, tmp_path / bundle.BF16_WEIGHTS)
    bundle.widen_minilm(tmp_path)
    assert not (tmp_path / bundle.BF16_WEIGHTS).exists()
    assert (tmp_path / "BF16_ROUNDED").exists()
    model = BertForSequenceClassification.from_pretrained(tmp_path, num_labels=2)
    loaded = model.bert.embeddings.word_embeddings.weight
    assert loaded.dtype == torch.float32
    assert torch.equal(loaded, weights["embeddings.word_embeddings.weight"].float())
