"""What any JSON document the service takes must be, wherever it comes from (a request body, a
file inside an uploaded adapter zip, a value stored before these checks existed).

Every string (keys included) must encode as UTF-8 and hold no NUL, the document nests at most
``max_depth`` levels, and every number fits a float64. Why: a lone surrogate ("\\udc00", valid
JSON) in any free-form field was stored by SQLite and then failed every response that carried
it; Postgres text holds no NUL; a 400-digit integer or ``1e400`` is no number a JSON reader can
hold.

Two ways to check, one answer. Almost every document holds none of the things that can break
these rules (no ``\\u`` escape of a NUL or a surrogate, no 309-digit number, no 3-digit
exponent): those are parsed by ``json.loads`` alone and only their containers are walked, at C
speed per element. A document that does hold one is parsed with hooks on every number and
walked string by string (slow, and exact about where the problem is).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain, compress, islice, repeat
from operator import is_
from typing import Any

from scheduler.errors import InvalidInput, TooLarge

#: Digits beyond which an integer cannot fit a float64 (10**309 > 1.8e308); Python's own limit
#: on int() of a string (4,300 digits) would otherwise raise inside the parser.
_MAX_INT_DIGITS = 310
#: A ``\\u`` escape of NUL or of a UTF-16 surrogate (D800-DFFF); raw UTF-8-encoded surrogates
#: (which ``json.loads`` decodes with ``surrogatepass``) start with ED A0-BF.
_RISKY_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
_RAW_SURROGATE = re.compile(rb"\xed[\xa0-\xbf]")
#: Every byte as 9 (a digit), e (an exponent), + (a sign) or a space: a number too large for a
#: float64 then shows as 309 nines in a row or an exponent of three digits.
_NUMBER_SHAPE = bytes(
    ord("9") if chr(b).isdigit() else ord("e") if chr(b) in "eE" else
    ord("+") if chr(b) in "+-" else ord(" ")
    for b in range(256)
)
_LONG_NUMBER = (b"9" * 309, b"e999", b"e+999")
VALUES_SETTING = "TENSLORA_MAX_JSON_VALUES"
_CONTAINERS = frozenset({dict, list})
_SLICE = 1 << 16


@dataclass(frozen=True)
class Problem:
    loc: tuple[str | int, ...]
    msg: str
    type: str


class JsonRefused(InvalidInput):
    """A document that breaks a rule; ``problem`` says where (``loc``) and what."""

    def __init__(self, problem: Problem, what: str = "the document") -> None:
        where = ".".join(str(part) for part in problem.loc)
        super().__init__(f"{what}{f' at {where}' if where else ''}: {problem.msg}")
        self.problem = problem


def parse_json(data: bytes, max_depth: int, max_values: int, what: str = "the document") -> Any:
    """The document ``data`` holds, or ``JsonRefused`` saying what is wrong and where (``what``
    names the document in the message); ``TooLarge`` before parsing when it may hold more than
    ``max_values`` values."""
    if (values := most_values(data)) > max_values:
        raise TooLarge(f"{what} may hold {values:,} JSON values (counting its commas and "
                       f"brackets); at most {max_values:,} are parsed ({VALUES_SETTING})")
    if not _may_break_a_rule(data):
        try:
            document = json.loads(data)
        except RecursionError:
            raise JsonRefused(_too_deep((), max_depth), what) from None
        except ValueError as exc:
            raise JsonRefused(_not_json(exc), what) from None
        problem = _depth_problem(document, max_depth)
    else:
        document, problem = _parse_exactly(data, max_depth)
    if problem is not None:
        raise JsonRefused(problem, what)
    return document


def most_values(data: bytes) -> int:
    """At most how many values (strings, numbers, arrays, objects...) ``data`` holds: every value
    but the first of a container follows a comma, and the first follows the container's bracket
    (commas and brackets inside strings count too, so this errs high). At C speed, so a body is
    measured before the parser spends anything on it."""
    return data.count(b",") + data.count(b"[") + data.count(b"{") + 1


def find_problem(document: Any, max_depth: int) -> Problem | None:
    """The first thing in a parsed document that the service refuses (depth-first), or None."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(document, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if (reason := _string_problem(value)) is not None:
                return Problem(path, f"text {reason}", "string_invalid")
        elif isinstance(value, _TooLarge):
            return Problem(path, f"the number {_short(value.text)} does not fit a 64-bit float",
                           "number_too_large")
        elif isinstance(value, float) and math.isinf(value) and type(value) is float:
            return Problem(path, "the number does not fit a 64-bit float", "number_too_large")
        elif isinstance(value, int) and not isinstance(value, bool) and not _fits(value):
            return Problem(path, f"the number {_short(str(value))} does not fit a 64-bit float",
                           "number_too_large")
        elif isinstance(value, dict | list):
            if len(path) >= max_depth:
                return _too_deep(path, max_depth)
            for key, child in _children(value):
                if isinstance(key, str) and (reason := _string_problem(key)) is not None:
                    return Problem((*path, key), f"the key {reason}", "string_invalid")
                stack.append((child, (*path, key)))
    return None


def _may_break_a_rule(data: bytes) -> bool:
    """False when no string or number of ``data`` can break a rule (only depth is left)."""
    if json.detect_encoding(data) != "utf-8":
        return True
    if b"\\u" in data and _RISKY_ESCAPE.search(data):
        return True
    if b"\xed" in data and _RAW_SURROGATE.search(data):
        return True
    shape = data.translate(_NUMBER_SHAPE)
    return any(marker in shape for marker in _LONG_NUMBER)


def _depth_problem(document: Any, max_depth: int) -> Problem | None:
    """``find_problem``'s depth rule, level by level: the containers one level deeper are picked
    out of all children of a level by iterators at C speed, so the Python work is per level and
    slice of 65,536 children, not per element."""
    level = [document] if type(document) in _CONTAINERS else []
    for depth in range(max_depth + 1):
        if not level:
            return None
        if depth == max_depth:
            return _too_deep(_path_to_depth(document, max_depth), max_depth)
        kinds = list(map(type, level))
        children = chain(
            chain.from_iterable(compress(level, map(is_, kinds, repeat(list)))),
            chain.from_iterable(map(dict.values, compress(level, map(is_, kinds, repeat(dict))))),
        )
        level = []
        # In slices, so a thread doing this lets the event loop have the GIL between them.
        while piece := list(islice(children, _SLICE)):
            level.extend(compress(piece, map(_CONTAINERS.__contains__, map(type, piece))))
    return None


def _path_to_depth(document: Any, max_depth: int) -> tuple[str | int, ...]:
    """The path of a container ``max_depth`` levels down (one is known to exist)."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(document, ())]
    while stack:
        value, path = stack.pop()
        if len(path) >= max_depth:
            return path
        stack.extend((child, (*path, key)) for key, child in _children(value)
                     if type(child) in _CONTAINERS)
    return ()


class _TooLarge:
    """A number the parser met that does not fit a float64; reported with its path."""

    def __init__(self, text: str) -> None:
        self.text = text


def _parse_int(text: str) -> int | _TooLarge:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        return _TooLarge(text)
    value = int(text)
    return value if _fits(value) else _TooLarge(text)


def _parse_float(text: str) -> float | _TooLarge:
    value = float(text)
    return value if not math.isinf(value) else _TooLarge(text)


class _Constant(float):
    """``NaN`` / ``Infinity`` as written (JSON extensions that are accepted: a loss can be NaN),
    told apart by the walk from a number that overflowed to infinity."""


def _parse_exactly(data: bytes, max_depth: int) -> tuple[Any, Problem | None]:
    constants: list[float] = []

    def constant(text: str) -> float:
        constants.append(_Constant(text))
        return constants[-1]

    try:
        document = json.loads(data, parse_int=_parse_int, parse_float=_parse_float,
                              parse_constant=constant)
    except RecursionError:
        return None, _too_deep((), max_depth)
    except ValueError as exc:  # not UTF-8, or not JSON
        return None, _not_json(exc)
    problem = find_problem(document, max_depth)
    if problem is None and constants:
        document = _plain_constants(document)
    return document, problem


def _plain_constants(document: Any) -> Any:
    """The document with ``_Constant`` markers back as plain floats (what ``json.loads`` gives)."""
    if isinstance(document, _Constant):
        return float(document)
    if isinstance(document, dict):
        return {key: _plain_constants(value) for key, value in document.items()}
    if isinstance(document, list):
        return [_plain_constants(value) for value in document]
    return document


def _fits(value: int) -> bool:
    try:
        float(value)
    except OverflowError:
        return False
    return True


def _too_deep(path: tuple[str | int, ...], max_depth: int) -> Problem:
    return Problem(path, f"the document nests deeper than {max_depth} levels", "too_deep")


def _not_json(exc: ValueError) -> Problem:
    return Problem((), f"not valid JSON: {str(exc)[:200]}", "json_invalid")


def _string_problem(text: str) -> str | None:
    if "\x00" in text:
        return "must not contain a NUL character"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "must be valid Unicode (it holds a lone UTF-16 surrogate)"
    return None


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _children(value: Any) -> Iterator[tuple[str | int, Any]]:
    if isinstance(value, dict):
        return iter(value.items())
    if isinstance(value, list):
        return enumerate(value)
    return iter(())
