"""``scanner check-config`` lines for fees and API keys: rates and where they come from, and
where each key is read from. Never a key's value (credentials.Secret cannot show one)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scanner.config import Settings


def describe_fees(s: Settings) -> list[str]:
    f = s.fees
    lines = [f"fees: mode={f.mode} timeout_s={f.timeout_s:g} allow_withdraw_keys={str(f.allow_withdraw_keys).lower()}"]
    for name, vf in f.venues.items():
        line = (f"fees {name}: taker={vf.taker} maker={vf.maker} ({vf.source}) buy fee in {vf.fee_currency}")
        for sym, (t, m) in sorted(vf.symbols.items()):
            line += f"; {sym} taker={t} maker={m}"
        creds = f.credentials.get(name)
        line += "; " + (creds.describe() if creds is not None else "api key: not set")
        lines.append(line)
    return lines
