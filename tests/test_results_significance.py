"""The pure parts of ``compare_to``: parsing, value matching and Welch's test against scipy."""

from __future__ import annotations

import random
import re

import pytest
from scipy import stats

from scheduler.errors import InvalidInput
from scheduler.results import (
    ResultRow,
    compare,
    compare_text,
    parse_compare_to,
    value_matches,
    welch_p_value,
)


def test_compare_to_splits_pairs_but_not_commas_inside_a_value():
    fields = ["tag", "adapter.ranks", "seed"]
    assert parse_compare_to(["adapter.ranks:[4,4],tag:lora"], fields) == {
        "adapter.ranks": "[4,4]", "tag": "lora"}
    assert parse_compare_to(["tag:lora", " seed : 1 "], fields) == {"tag": "lora", "seed": "1"}
    assert parse_compare_to(["", " "], fields) == {}


@pytest.mark.parametrize(
    ("text", "says"),
    [("tag", "FIELD:VALUE"), (":lora", "FIELD:VALUE"), ("a..b:1", "FIELD:VALUE"),
     ("task:cola", "not one of group_by (tag, seed)"), ("tag:a,tag:b", "twice")],
)
def test_bad_compare_to_says_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(says)):
        parse_compare_to([text], ["tag", "seed"])


def test_values_match_as_text_for_strings_and_as_json_otherwise():
    assert value_matches("lora", "lora") and not value_matches("lora", "'lora'")
    assert value_matches(0.0001, "1e-4") and value_matches(4, "4.0")
    assert value_matches([4, 4], "[4, 4]") and value_matches(None, "null")
    assert not value_matches(True, "1") and not value_matches(1, "true")
    assert not value_matches(4, "four")
    group = {"tag": "lora", "adapter.ranks": [4, 4], "optim.lr": 0.0005, "seed": None}
    text = compare_text(group)
    parsed = parse_compare_to([text], list(group))
    assert all(value_matches(group[k], v) for k, v in parsed.items())


def _summary(values: list[float]) -> tuple[float, float, int]:
    return sum(values) / len(values), stats.tstd(values), len(values)


def test_welch_p_value_is_scipys_ttest_ind_unequal_var():
    generator = random.Random(7)
    for _ in range(50):
        a = [generator.gauss(0.8, generator.uniform(0.001, 0.05))
             for _ in range(generator.randint(2, 8))]
        b = [generator.gauss(0.78, generator.uniform(0.001, 0.05))
             for _ in range(generator.randint(2, 8))]
        expected = stats.ttest_ind(a, b, equal_var=False).pvalue
        assert welch_p_value(*_summary(a), *_summary(b)) == pytest.approx(expected, rel=1e-9)


@pytest.mark.filterwarnings("ignore:Precision loss")  # scipy, on the constant samples
def test_welch_p_value_degenerate_cases():
    assert welch_p_value(0.8, 0.0, 1, 0.7, 0.01, 5) is None  # one run: no variance
    assert welch_p_value(0.8, 0.01, 5, 0.7, 0.0, 1) is None
    assert welch_p_value(0.5, 0.0, 3, 0.5, 0.0, 4) is None  # t = 0/0
    assert welch_p_value(0.6, 0.0, 3, 0.5, 0.0, 4) == 0.0  # t infinite
    assert stats.ttest_ind([0.6] * 3, [0.5] * 4, equal_var=False).pvalue == 0.0
    # One side constant: a plain one-sample-like test against the other's spread.
    expected = stats.ttest_ind([0.5] * 3, [0.4, 0.45, 0.5], equal_var=False).pvalue
    assert welch_p_value(0.5, 0.0, 3, *_summary([0.4, 0.45, 0.5])) == pytest.approx(expected)


def _row(summary: dict, **group: object) -> ResultRow:
    return ResultRow(group=dict(group), n=2, metrics={"accuracy": dict(summary)})


def test_unnamed_fields_stratify_only_where_they_vary_within_the_named_values():
    stats_of = {"n": 2, "mean": 0.5, "std": 0.1, "min": 0.4, "max": 0.6}
    by_task = [_row(stats_of, tag=tag, task=task)
               for tag in ("lora", "qkv") for task in ("cola", "mrpc")]
    by_task.append(_row(stats_of, tag="qkv", task="sst2"))  # no LoRA row on sst2
    compare(by_task, {"tag": "lora"}, "t")
    assert [r.group["task"] for r in by_task if r.baseline] == ["cola", "mrpc"]
    assert by_task[2].metrics["accuracy"]["delta"] == 0.0  # qkv/cola against lora/cola
    assert by_task[4].metrics["accuracy"]["delta"] is None  # qkv/sst2: no baseline there
    by_method = [_row(stats_of, tag="lora", method="lora"), _row(stats_of, tag="q", method="qkv")]
    compare(by_method, {"tag": "lora"}, "t")  # the tag determines the method: one baseline
    assert by_method[1].metrics["accuracy"]["delta"] == 0.0
    with pytest.raises(InvalidInput, match="matches no row of t"):
        compare(by_method, {"tag": "nope"}, "t")
