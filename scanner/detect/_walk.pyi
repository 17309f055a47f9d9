"""Type stub for the compiled depth walk (scanner/detect/_walk.c); see scanner.detect.spread.walk."""

from collections.abc import Sequence
from decimal import Decimal
from types import NotImplementedType

def walk_quote(asks: Sequence[Sequence[str]], bids: Sequence[Sequence[str]], up: str, down: str, thr: str,
               cap: str | None) -> tuple[Decimal, Decimal, Decimal, int, int] | NotImplementedType | None: ...
