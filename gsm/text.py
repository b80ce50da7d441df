"""How gsm writes values into its messages: file content on one line, durations as h:mm:ss. No torch."""

from __future__ import annotations


def one_line(text: str, limit: int = 300) -> str:
    """``text`` on one line (line breaks as spaces), at most ``limit`` characters: for warnings quoting file content."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def hms(seconds: float) -> str:
    """``seconds`` as ``h:mm:ss`` (negative counts as 0)."""
    seconds = int(round(max(0.0, seconds)))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
