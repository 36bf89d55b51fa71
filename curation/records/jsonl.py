"""Reading JSON Lines that people made: line by line, so one bad line costs that line and nothing else.

:func:`read_lines` splits a file's bytes on newlines (CRLF and a byte-order mark are fine); :func:`decode_line`
and :func:`loads_strict` turn one line into a value or raise ValueError with a message that names the column or
the key: bytes that are not UTF-8, JSON errors, the ``NaN``/``Infinity`` that Python's json accepts and JSON does
not, integers too large for a 64-bit column, and escaped lone surrogates (which SQLite's UTF-8 cannot store).
:func:`shorten`, :func:`cut_quoted` and :func:`cap_message` keep messages short when a value is long.

Example::

    for number, raw in read_lines(path):
        record = loads_strict(decode_line(raw))   # ValueError("'seconds': Infinity is not a finite number ...")
"""

from __future__ import annotations

import json
import math
import re
import threading
from pathlib import Path
from typing import Any

from curation.errors import CliptuneError

BOM = b"\xef\xbb\xbf"
SHOWN_CHARS = 80  # of a value quoted in a message
MAX_MESSAGE_CHARS = 600
_INT64 = 2**63
_QUOTED = re.compile(r"'(?:[^'\\\n]|\\.){N,}'|\"(?:[^\"\\\n]|\\.){N,}\"".replace("N", str(SHOWN_CHARS + 1)))
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def read_lines(path: Path) -> list[tuple[int, bytes]]:
    """(line number, bytes without the line end) for every line that is not blank."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CliptuneError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CliptuneError(f"{path} is a folder; give the JSONL file") from None
    except OSError as exc:
        raise CliptuneError(f"{path}: cannot read it ({exc.strerror})") from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise CliptuneError(f"{path}: UTF-16 or UTF-32 text; save the file as UTF-8 JSONL")
    lines = []
    # Split on \n only: \r, \x85 and U+2028 may sit inside a JSON string; str.splitlines would cut there.
    for number, raw in enumerate(data.split(b"\n"), start=1):
        raw = raw.removesuffix(b"\r").removeprefix(BOM)  # a BOM also starts each file of a `cat a b`
        if raw.strip():
            lines.append((number, raw))
    return lines


def decode_line(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        column = len(raw[: exc.start].decode("utf-8")) + 1  # in characters, as an editor counts
        raise ValueError(f"not UTF-8 (byte 0x{raw[exc.start]:02x} at column {column}); "
                         "save the file as UTF-8") from None


class _Refused:
    """Stands in for a number the parser met and the store must not keep, until the key is known."""

    def __init__(self, text: str, reason: str):
        self.text, self.reason = text, reason
        _seen.refused.append(self)


def _parse_float(token: str) -> Any:
    value = float(token)
    return value if math.isfinite(value) else _Refused(token, "is not a finite number (too large for a float)")


def _parse_int(token: str) -> Any:
    # The length test keeps int() clear of Python's 4,300-digit limit on a hostile line.
    if len(token) > 20 or not -_INT64 <= int(token) < _INT64:
        return _Refused(token, "is too large (integers are limited to 64 bits)")
    return int(token)


# One decoder for all lines (json.loads with hooks would build one per call, doubling its cost).
_DECODER = json.JSONDecoder(parse_float=_parse_float, parse_int=_parse_int,
                            parse_constant=lambda token: _Refused(token, "is not a finite number"))
_seen = threading.local()  # the _Refused made while decoding the current line of this thread


def loads_strict(text: str) -> Any:
    """``json.loads``, refusing NaN, ±Infinity, out-of-range floats, integers past 64 bits and lone surrogates."""
    _seen.refused = refused = []
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise ValueError("not valid JSON for this import (nested too deeply)") from None
    if refused:
        where, item = _find(value, lambda v: isinstance(v, _Refused))
        token = item.text if len(item.text) <= SHOWN_CHARS else shorten(item.text)
        raise ValueError(f"{where}: {token} {item.reason}; give a plain number or leave the key out")
    if _SURROGATE_ESCAPE.search(text):
        found = _find(value, lambda v: isinstance(v, str) and not _encodes(v), keys=True)
        if found is not None:
            raise ValueError(f"{found[0]}: an escaped lone surrogate (\\ud800-\\udfff) is not text; "
                             "write the character itself or a valid surrogate pair")
    return value


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _find(value: Any, match: Any, *, keys: bool = False) -> Any:
    """(where, item) of the first item ``match`` accepts, where like 'fields.persons' or 'tags[2]'; else None."""
    stack: list[tuple[str, Any]] = [("", value)]  # no recursion: a deep value must not overflow the stack
    while stack:
        where, item = stack.pop()
        if match(item):
            return (f"'{where}'" if where else "the line"), item
        if isinstance(item, dict):
            for key, child in reversed(item.items()):
                label = key if len(key) <= SHOWN_CHARS else shorten(key)
                if keys and match(key):
                    return (f"a key in '{where}'" if where else "a key"), key
                stack.append((f"{where}.{label}" if where else label, child))
        elif isinstance(item, list):
            stack.extend((f"{where}[{index}]", child) for index, child in reversed(list(enumerate(item))))
    return None


def shorten(value: Any, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)``, cut to ``limit`` characters with an ellipsis and the full length when longer."""
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        quoted = repr(value[:limit])
        return f"{quoted[:-1]}…{quoted[-1]} ({len(value):,} characters)"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


def cut_quoted(message: str) -> str:
    """Cut long quoted values inside a message written elsewhere (the rubric's messages quote the value)."""
    if len(message) <= SHOWN_CHARS:
        return message
    return _QUOTED.sub(lambda m: f"{m.group()[: SHOWN_CHARS + 1]}…{m.group()[0]} "
                                 f"({len(m.group()) - 2:,} characters)", message)


def cap_message(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """The last guard: a message longer than ``limit`` keeps its start and its end."""
    if len(message) <= limit:
        return message
    tail = 100
    marker = f" … [{len(message):,} characters in all] … "
    return f"{message[: limit - tail - len(marker)]}{marker}{message[-tail:]}"
