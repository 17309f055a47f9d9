"""What a parser makes of each frame, errors included: the tests that run a venue's frames through its compiled
scanner and through the full decoder compare these lists."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from scanner.book.errors import ParseError
from scanner.model import BookMsg, Control
from scanner.venues.spec import Parser


def parse_outcomes(parser: Parser, frames: Sequence[str | bytes],
                   view: Callable[[list[BookMsg | Control]], object] = list) -> list[object]:
    """``view(parser.parse(frame, 11))`` per frame, or ``("ParseError", message)``."""
    out: list[object] = []
    for raw in frames:
        try:
            out.append(view(parser.parse(raw, 11)))
        except ParseError as exc:
            out.append(("ParseError", str(exc)))
    return out
