"""Fuzz `perpbot decode` (bot/decode.py) with recordings made of mutated real frames.

Property: decode_file returns (events, one error per malformed message) for any file, in any
of its three layouts (one object, a list, JSON lines), whatever the bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fuzz.known import is_known
from fuzz.mutate import DYDX_FIXTURES, fuzz_settings, load_json_dir, mutated_bytes
from hypothesis import given
from hypothesis import strategies as st
from support.shared import needs_shared

from bot.decode import decode_file

FRAMES = list(load_json_dir(DYDX_FIXTURES / "ws").values())


@st.composite
def recordings(draw: st.DrawFn) -> bytes:
    frames = draw(st.lists(mutated_bytes(FRAMES), min_size=1, max_size=5))
    layout = draw(st.sampled_from(["lines", "list", "object", "raw"]))
    if layout == "lines":
        return b"\n".join(frames)
    if layout == "list":
        return b"[" + b",".join(frames) + b"]"
    if layout == "object":
        return frames[0]
    return draw(st.binary(max_size=300))


@needs_shared
@fuzz_settings(60)
@given(content=recordings())
def test_decode_file_reports_errors_per_message(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "recording.jsonl"
    path.write_bytes(content)
    try:
        events, errors = decode_file(path, "dydx")
    except Exception as exc:
        if not is_known(exc):
            raise
        return
    assert all(isinstance(e, dict) and "event" in e for e in events)
    assert all(isinstance(e, str) and e.startswith("message ") for e in errors)
    json.dumps(events)  # what the CLI prints


@needs_shared
def test_a_line_of_bad_bytes_is_one_error_among_good_messages(tmp_path: Path) -> None:
    good = json.dumps(load_json_dir(DYDX_FIXTURES / "ws")["v4_trades.json"]).encode()
    path = tmp_path / "recording.jsonl"
    path.write_bytes(good + b"\n" + b"\xff\xfe not json\n" + good + b"\n")
    events, errors = decode_file(path, "dydx")
    assert [e.split(":")[0] for e in errors] == ["message 2"]
    assert len(events) == 2 * len(json.loads(good)["contents"]["trades"])


def test_a_document_too_deep_to_read_is_malformed_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_bytes(b"[" * 100_000 + b"]" * 100_000)
    events, errors = decode_file(path, "dydx")
    assert events == [] and len(errors) == 1


def test_other_venues_are_refused() -> None:
    with pytest.raises(ValueError, match="binance"):
        decode_file(Path("unused"), "binance")
