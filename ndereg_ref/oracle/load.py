"""Reading a trace: :func:`load_trace` parses a file, a JSON string or bytes and validates it.

Every failure of the parse — a truncated or corrupted file, bytes that are not UTF-8, nesting or a size
beyond the format's own, an integer too long for Python — becomes a :class:`TraceFormatError` naming the
JSON path where it happened (reconstructed from the text by :func:`_json_path_at`); the content is then
validated by :func:`ndereg_ref.oracle.schema.validate_trace`.
"""

from __future__ import annotations

import json
import os
import re

from .schema import Trace, TraceFormatError, validate_trace

__all__ = ["load_trace"]

# Limits that no trace of a real solve comes near, so that a corrupted file fails with a named field instead
# of exhausting memory: the largest golden trace is < 1 MiB.
MAX_TRACE_BYTES = 1 << 30
# The deepest legitimate nesting: top object > steps > step > array object > data list.
MAX_JSON_DEPTH = 5


def _json_path_parts(text: str, pos: int) -> list:
    """The stack of containers open at character ``pos``: items ["obj", key or None] or ["arr", index]."""
    stack: list = []
    i, n = 0, min(pos, len(text))
    expecting_key = False
    while i < n:
        ch = text[i]
        if ch == '"':
            j = i + 1
            while j < len(text) and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            if stack and stack[-1][0] == "obj" and expecting_key:
                stack[-1][1] = text[i + 1 : j]
                expecting_key = False
            i = j + 1
            continue
        if ch == "{":
            stack.append(["obj", None])
            expecting_key = True
        elif ch == "[":
            stack.append(["arr", 0])
        elif ch in "}]":
            if stack:
                stack.pop()
        elif ch == ",":
            if stack and stack[-1][0] == "arr":
                stack[-1][1] += 1
            else:
                expecting_key = True
        i += 1
    return stack


def _format_path(stack) -> str:
    parts = ""
    for kind, k in stack:
        if kind == "obj" and k is not None:
            parts += ("." if parts else "") + k
        elif kind == "arr":
            parts += f"[{k}]"
    return parts or "(top level)"


def _json_path_at(text: str, pos: int) -> str:
    """The JSON path of the value being read at character ``pos`` (for truncated/malformed files)."""
    return _format_path(_json_path_parts(text, pos))


def _too_deep_at(text: str, limit: int) -> int:
    """Position of the first bracket (outside strings) that opens nesting level ``limit`` + 1, or −1."""
    depth, i, n = 0, 0, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return i
        elif ch in "]}":
            depth -= 1
        i += 1
    return -1


def _parse_json(text: str, source: str):
    """``json.loads`` with every failure as a :class:`TraceFormatError` naming the JSON path."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = _json_path_at(text, exc.pos)
        what = "file ends" if exc.pos >= len(text.rstrip()) else "invalid JSON"
        raise TraceFormatError(
            where,
            f"{what} at line {exc.lineno}, column {exc.colno} ({exc.msg}); truncated or corrupted trace",
            source,
        ) from None
    except RecursionError:
        # The C scanner recurses once per level; name the value whose nesting exceeds the format's own.
        pos = _too_deep_at(text, MAX_JSON_DEPTH)
        stack = _json_path_parts(text, pos) if pos >= 0 else []
        raise TraceFormatError(
            _format_path(stack[:MAX_JSON_DEPTH]),
            f"JSON nested too deeply to parse (a trace nests at most {MAX_JSON_DEPTH} levels)",
            source,
        ) from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits (sys.set_int_max_str_digits)
        m = re.search(r"[0-9]{4301,}", text)
        where = _json_path_at(text, m.start()) if m else "(top level)"
        raise TraceFormatError(where, f"unreadable JSON value ({exc})", source) from None


def load_trace(path_or_text) -> Trace:
    """Read and validate a trace: a path, a JSON string (starting with ``{``) or UTF-8 bytes.

    Raises :class:`TraceFormatError` naming the field (its JSON path, or ``file`` for the encoding) for a
    malformed, truncated, oversized or inconsistent trace — never another exception for any content.
    A path that cannot be opened raises the ``OSError`` of :func:`open`.
    """
    if isinstance(path_or_text, (bytes, bytearray)):
        source, raw = "<bytes>", bytes(path_or_text)
    elif isinstance(path_or_text, (str, os.PathLike)) and not str(path_or_text).lstrip().startswith("{"):
        source = str(path_or_text)
        with open(path_or_text, "rb") as fh:
            raw = fh.read(MAX_TRACE_BYTES + 1)
    else:
        source, raw = "<string>", None
        text = str(path_or_text)
        if len(text) > MAX_TRACE_BYTES:
            raise TraceFormatError("file", f"longer than the {MAX_TRACE_BYTES}-byte limit", source)
    if raw is not None:
        if len(raw) > MAX_TRACE_BYTES:
            raise TraceFormatError("file", f"larger than the {MAX_TRACE_BYTES}-byte limit", source)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            where = _json_path_at(raw[: exc.start].decode("utf-8", errors="replace"), exc.start)
            raise TraceFormatError(
                "file",
                f"not UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start} ({exc.reason}), "
                f"inside {where}",
                source,
            ) from None
    return validate_trace(_parse_json(text, source), source)
