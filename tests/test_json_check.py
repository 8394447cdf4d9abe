"""The JSON rules of every body and zip member (scheduler.json_check) and the zip directory check
(scheduler.adapter_zip): the fast path gives the exact path's answers, in far less time."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest

from scheduler.adapter_zip import ArchiveLimits, read_archive
from scheduler.errors import InvalidInput, TooLarge
from scheduler.json_check import JsonRefused, _parse_exactly, most_values, parse_json
from tools.hostile_clients import zip_of_empty_files

DEPTH, VALUES = 32, 1_000_000
SURROGATE = "\udc00"


def _answer(data: bytes) -> Any:
    try:
        return ("ok", parse_json(data, DEPTH, VALUES))
    except JsonRefused as refused:
        return ("refused", refused.problem.loc, refused.problem.type)


def _exact(data: bytes) -> Any:
    document, problem = _parse_exactly(data, DEPTH)
    return ("ok", document) if problem is None else ("refused", problem.loc, problem.type)


DOCUMENTS = [
    b'{"a": [1, 2.5, "x", true, null, {"b": []}]}',
    b'{"x": NaN, "y": -Infinity}',
    json.dumps({"tag": SURROGATE}).encode(),
    json.dumps({"k": {SURROGATE: 1}}).encode(),
    '{"raw": "\udc00"}'.encode("utf-8", "surrogatepass"),
    json.dumps({"n": "a\x00b"}).encode(),
    b'{"escaped backslash": "\\\\u0000"}',
    b'{"big": 1' + b"0" * 400 + b"}",
    b'{"huge": [1, {"f": 1e400}]}',
    b'{"many": -' + b"9" * 5000 + b"}",
    b'{"fine": 1e300, "tiny": 1e-400}',
    b'{"d": ' + b"[" * 32 + b"]" * 32 + b"}",
    b'{"d": ' + b"[" * 31 + b"]" * 31 + b"}",
    b"[" * 100_000 + b"]" * 100_000,
    json.dumps({"text": "caf\u00e9 \U0001f600"}).encode("utf-16"),
    b"not json",
]


@pytest.mark.parametrize("data", DOCUMENTS, ids=range(len(DOCUMENTS)))
def test_the_fast_path_answers_as_the_exact_path_does(data: bytes) -> None:
    fast, exact = _answer(data), _exact(data)
    if fast[0] == "ok" and exact[0] == "ok":
        assert json.dumps(fast[1]) == json.dumps(exact[1])
    else:
        assert fast == exact


def test_a_problem_names_its_place_and_the_deepest_container_allowed_is_32_down() -> None:
    assert _answer(json.dumps({"grid": {"seed": [1, SURROGATE]}}).encode()) == (
        "refused", ("grid", "seed", 1), "string_invalid")
    assert _answer(b'{"d": ' + b"[" * 31 + b"]" * 31 + b"}")[0] == "ok"
    assert _answer(b'{"d": ' + b"[" * 32 + b"]" * 32 + b"}") == (
        "refused", ("d",) + (0,) * 31, "too_deep")


def test_values_are_counted_before_parsing_and_never_undercounted() -> None:
    for document in ({"a": [1, 2, {"b": [3, "x, y"]}]}, [], [[], {}], "text", 1):
        data = json.dumps(document).encode()
        assert most_values(data) >= _count(json.loads(data))
    with pytest.raises(TooLarge, match="TENSLORA_MAX_JSON_VALUES"):
        parse_json(b"[" + b"0," * 2000 + b"0]", DEPTH, 2000)


def _count(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + sum(_count(item) for item in value.values())
    if isinstance(value, list):
        return 1 + sum(_count(item) for item in value)
    return 1


def test_a_plain_body_takes_the_fast_path_and_a_suspect_one_the_exact_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The exact path calls Python for every number (8M integers: about 10 s); a body that holds
    nothing it looks for never gets there."""
    calls: list[bytes] = []

    def exact(data: bytes, max_depth: int) -> Any:
        calls.append(data)
        return _parse_exactly(data, max_depth)

    monkeypatch.setattr("scheduler.json_check._parse_exactly", exact)
    plain = b'{"a": [' + b"1, 2.5, [], {}, " * 10_000 + rb'"caf\u00e9"]}'
    assert parse_json(plain, DEPTH, VALUES)["a"][-1] == "caf\u00e9"
    assert calls == []
    for suspect in (rb'["\u0000"]', rb'["\udc00"]', b"[1e400]", b"[" + b"9" * 400 + b"]"):
        with pytest.raises(JsonRefused):
            parse_json(suspect, DEPTH, VALUES)
    assert len(calls) == 4


# ---- the zip's directory, read from its end record before zipfile parses it --------------------

LIMITS = ArchiveLimits(max_bytes=1 << 20, max_members=8, max_json_depth=DEPTH,
                       max_json_values=VALUES)


def test_a_zip_stating_more_members_than_allowed_is_refused_naming_the_setting() -> None:
    with pytest.raises(InvalidInput, match=r"holds 9 files; at most 8.*MAX_ADAPTER_MEMBERS"):
        read_archive(zip_of_empty_files(9), LIMITS)
    with pytest.raises(InvalidInput, match="lacks"):  # 8 pass the count; the files are missing
        read_archive(zip_of_empty_files(8), LIMITS)


def test_a_zip_whose_end_record_understates_its_directory_is_refused_by_its_size() -> None:
    data = bytearray(zip_of_empty_files(400))
    end = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", data, end + 8, 2, 2)  # "2 members", over a directory of 400
    with pytest.raises(InvalidInput, match=r"directory is .* bytes, more than 8 files need"):
        read_archive(bytes(data), LIMITS)


def test_a_zip64_end_record_is_read_too() -> None:
    """Such a record (written past 65,535 members or 4 GiB) holds the real counts; the classic
    end record then says 0xFFFF. Built here around a small zip."""
    data = zip_of_empty_files(9)
    end = data.rfind(b"PK\x05\x06")
    fields = list(struct.unpack_from("<4s4H2LH", data, end))
    directory_size, directory_at = fields[5], fields[6]
    record = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, 9, 9,
                         directory_size, directory_at)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, end, 1)
    fields[3] = fields[4] = 0xFFFF
    zip64 = data[:end] + record + locator + struct.pack("<4s4H2LH", *fields)
    with pytest.raises(InvalidInput, match="holds 9 files"):
        read_archive(zip64, LIMITS)
