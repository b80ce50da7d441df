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


def table_lines(header: list[str], rows: list[list[str]], aligns: list[str] | None = None, *,
                style: str = "markdown") -> list[str]:
    """gsm's one table renderer, for cells already turned into text. ``aligns``: ``l`` / ``r`` per column.
    ``markdown``: a GitHub Markdown table (the paper tables, the demo, the sweep, the estimate, the profile);
    ``text``: columns padded to their width for a terminal (``gsm-tables status``), the last one unpadded."""
    aligns = list(aligns or ["l"] * len(header))
    if style == "markdown":
        return ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if a == "r" else "---" for a in aligns) + "|",
                *("| " + " | ".join(r) + " |" for r in rows)]
    if style != "text":
        raise ValueError(f"style={style!r}: markdown or text")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(r: list[str]) -> str:
        cells = [c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(r[:-1], widths, aligns)]
        return "  ".join([*cells, r[-1]])

    return [line(list(header)), *(line(list(r)) for r in rows)]
