"""Small pieces shared by the command-line modules (the main app, jobs, fine-tuning)."""

from __future__ import annotations

from datetime import UTC, datetime

import typer
from rich.console import Console

__all__ = ["console", "err", "parse_time"]

# Tables stay readable when output is piped (Rich assumes 80 columns without a terminal).
console = Console(width=max(Console().width, 120))
err = Console(stderr=True, soft_wrap=True)  # errors stay one line, whatever the width


def parse_time(value: str | None, option: str = "--as-of") -> datetime | None:
    """An ISO date or time from the command line, as UTC when it names no zone; None stays None."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"not an ISO date/time: {value!r}", param_hint=option) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
