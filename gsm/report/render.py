"""Writers of a table: Markdown, CSV and LaTeX (pandas ``Styler.to_latex`` with booktabs).

Every table has the same parts: a title, a one-sentence caption, a legend line for the three kinds
of empty cell, the table (text columns left-aligned, numeric columns right-aligned), the
conditions of the runs, and notes. The LaTeX file holds one float per table that needs only
``\\usepackage{booktabs,graphicx}`` (named in its first line): a one-column ``table`` where the tabular fits a
column of a two-column paper, a two-column ``table*`` where it does not (:func:`latex_environment`), the tabular
shrunk to the line width where it is wider still (never enlarged); the conditions and notes are comments.

Empty cells have one mark per meaning (:data:`LEGEND`, printed with every table): "—" in a literature row (quoted
by the paper from other work: no run of ours, and nothing where the paper quotes no number), "not run", "n.r."
(the paper reports no number for a row of ours), "n/a" (no p-value) and "not recorded" (a record of an older gsm).

Text is escaped for its format, because parts of it come from run records (class names, revisions,
device names, config values): in Markdown every cell, condition and note goes through :func:`md_text`
(one line; ``\\ | ` * _`` escaped, an HTML ``<`` as ``&lt;``, a leading ``# > + - =`` in a note), so a string as
``"gsoftmax | 0.00 |\\n# heading"`` shows as itself instead of adding a column or a heading; in LaTeX
cells are escaped by pandas (``escape="latex"``) after line breaks become spaces, the caption by
:func:`tex_text`, and conditions and notes are comments on single lines.
"""

from __future__ import annotations

import math
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from gsm.text import table_lines

LITERATURE = "—"  # every cell of a literature row that holds no number the paper quotes (never run here)
NOT_RUN = "not run"  # a row of ours without a run under the profile
NOT_REPORTED = "n.r."  # a row of ours for which the paper prints "-"
NOT_APPLICABLE = "n/a"  # no value of this kind for the row: no p-value (fewer than 2 paired seeds), no μ, σ
NOT_RECORDED = "not recorded"  # the row's runs exist but their records predate the value (schema < 3: no VOC mAP, best epoch)
LEGEND = (f"{LITERATURE}: a literature row, quoted by the paper from other work and never run here (its only numbers "
          f"are those the paper quotes); {NOT_RUN}: no run of this row was found under the profile; {NOT_REPORTED}: "
          f"not reported by the paper; {NOT_APPLICABLE}: not applicable (e.g. a p-value without two seeds both rows "
          f"have); {NOT_RECORDED}: the row's runs were recorded by an older gsm that did not store this value (rerun "
          f"with trainer.force=true to fill it).")
LATEX_PACKAGES = ("booktabs", "graphicx")
# Widths, in pt, of a two-column paper (IEEEtran, the paper's class, at 10 pt): a column and the text block.
COLUMN_WIDTH_PT, TEXT_WIDTH_PT = 252.0, 516.0
CHAR_PT, TABCOLSEP_PT = 5.0, 6.0  # an average character at 10 pt; the padding either side of a column
HEADER_LINE = 14  # characters per line of a LaTeX column header (longer headers wrap at spaces: \shortstack)


def rounded(v: float | None, decimals: int) -> float:
    """``v`` rounded as a table displays it with ``decimals`` decimals (NaN for none): the CSV holds the number
    the reader sees, not float32 noise such as 89.99999761581421 for 90.00."""
    return math.nan if v is None or not math.isfinite(v) else round(float(v), decimals)

# Unicode the tables use, as LaTeX (after escaping): pdflatex needs no extra package for these.
_TEX_SYMBOLS = {"μ": r"$\mu$", "σ": r"$\sigma$", "ρ": r"$\rho$", "±": r"$\pm$", "⁺": r"$^{+}$", "—": "---",
                "–": "--", "·": r"$\cdot$", "≥": r"$\geq$", "×": r"$\times$", "‖": r"$\|$", "−": "-", "λ": r"$\lambda$"}


def seeds_text(seeds: list[int]) -> str:
    """``n = 1 (seed 0)``, ``n = 3 (seeds 0, 1, 2)``; ``not run`` for none."""
    if not seeds:
        return NOT_RUN
    s = sorted(seeds)
    return f"n = {len(s)} (seed{'s' if len(s) > 1 else ''} {', '.join(str(x) for x in s)})"


def paper_text(v: float | None, decimals: int) -> str:
    return NOT_REPORTED if v is None else f"{v:.{decimals}f}"


@dataclass
class TableOutput:
    name: str
    title: str
    caption: str  # one sentence
    display: pd.DataFrame  # paper layout, formatted strings (md and tex)
    data: pd.DataFrame  # tidy numbers (csv)
    conditions: list[str] = field(default_factory=list)  # profile, runs, revisions, epochs, devices
    notes: list[str] = field(default_factory=list)
    text_columns: tuple[str, ...] = ("Method", "seeds")  # left-aligned; every other column is numeric (right-aligned)
    extra: list[tuple[str, pd.DataFrame]] = field(default_factory=list)  # further sections (md and tex)

    def _aligns(self, df: pd.DataFrame) -> list[str]:
        return ["l" if c in self.text_columns else "r" for c in df.columns]

    def markdown(self) -> str:
        lines = [f"# {md_text(self.title)}", "", md_text(self.caption), "", f"*Legend:* {md_text(LEGEND)}", "",
                 md_table(self.display, self._aligns(self.display)), ""]
        for heading, df in self.extra:
            lines += [f"## {md_text(heading)}", "", md_table(df, self._aligns(df)), ""]
        if self.conditions:
            lines += ["Conditions: " + md_text(" ".join(self.conditions)), ""]
        if self.notes:
            lines += ["Notes:", ""] + [f"- {md_text(n, block=True)}" for n in self.notes]
        return "\n".join(lines).rstrip() + "\n"

    def latex(self) -> str:
        """One float per section (booktabs; ``table`` or ``table*`` by width, :func:`latex_environment`); caption
        one sentence; conditions and notes as comments."""
        out = [f"% {self.title}. Needs \\usepackage{{{','.join(LATEX_PACKAGES)}}}."]
        out += _comment("Legend: " + LEGEND)
        if self.conditions:
            out += _comment("Conditions: " + " ".join(self.conditions))
        out += [c for n in self.notes for c in _comment("Note: " + n)] + [""]
        for i, (heading, df) in enumerate([(None, self.display), *self.extra]):
            caption = self.caption if heading is None else f"{self.caption.rstrip('.')}: {heading}."
            out.append(styler_latex(df, self._aligns(df), caption, f"tab:{self.name}" + (f"-{i}" if i else "")))
        return "\n".join(out)

    def write(self, out_dir: Path) -> list[Path]:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = [out_dir / f"{self.name}.md", out_dir / f"{self.name}.csv", out_dir / f"{self.name}.tex"]
        paths[0].write_text(self.markdown())
        self.data.to_csv(paths[1], index=False)
        paths[2].write_text(self.latex())
        return paths


def _comment(text: str, width: int = 110) -> list[str]:
    return ["% " + line for line in textwrap.wrap(text, width)]


_MD_ESCAPES = {c: "\\" + c for c in "\\|`*"}
_HTML_START = re.compile(r"<(?=[A-Za-z/!?])")  # where raw HTML (a tag, a comment) would begin
_EMPHASIS_UNDERSCORE = re.compile(r"(?<!\w)_|_(?!\w)")  # "_" at a word's edge opens or closes emphasis
_ENTITY = re.compile(r"&(?=#?\w+;)")  # "&lt;" in the text itself would render as "<"


def md_text(v: Any, block: bool = False) -> str:
    """Text as one line of Markdown that renders as itself: line breaks become spaces; backslash, ``|`` (a
    cell boundary), backticks (code spans), ``*`` and ``_`` at a word's edge (emphasis) are backslash-escaped;
    a ``<`` that would open HTML is written ``&lt;``, an ``&`` that would start an entity ``&amp;``. ``block``:
    the text starts a line or a list item, so a leading ``#``, ``>``, ``+``, ``-`` or ``=`` (a heading, a quote,
    a list, an underline) is escaped too; in a table cell they are plain characters."""
    text = "".join(_MD_ESCAPES.get(ch, ch) for ch in " ".join(str(v).splitlines()))
    text = _HTML_START.sub("&lt;", _ENTITY.sub("&amp;", _EMPHASIS_UNDERSCORE.sub(r"\\_", text)))
    return "\\" + text if block and text[:1] in ("#", ">", "+", "-", "=") else text


def _md_cell(v: Any) -> str:
    return md_text(v)


def md_table(df: pd.DataFrame, aligns: list[str] | None = None) -> str:
    """A GitHub Markdown table; ``aligns`` per column ``l`` / ``r`` (numeric columns right-aligned)."""
    cols = list(df.columns)
    rows = [[_md_cell(r[c]) for c in cols] for _, r in df.iterrows()]
    return "\n".join(table_lines([_md_cell(c) for c in cols], rows, aligns))


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
                "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "*": r"\textasteriskcentered{}"}


def _one_line(v: Any) -> Any:
    return " ".join(v.splitlines()) if isinstance(v, str) else v


def tex_text(s: str) -> str:
    """Plain text as LaTeX: special characters escaped, the tables' Unicode as LaTeX symbols."""
    s = " ".join(s.replace("**", "").replace("`", "").splitlines())  # Markdown emphasis and code spans; one line
    return _tex_symbols("".join(_TEX_ESCAPES.get(ch, ch) for ch in s))


def _tex_symbols(s: str) -> str:
    for a, b in _TEX_SYMBOLS.items():
        s = s.replace(a, b)
    return s


def tabular_width_pt(df: pd.DataFrame) -> float:
    """An estimate of the tabular's natural width in pt: each column as wide as its longest cell or header."""
    width = 0.0
    for c in df.columns:
        longest = max([*(len(line) for line in _header_lines(str(c))), *(len(str(v)) for v in df[c])])
        width += longest * CHAR_PT + 2 * TABCOLSEP_PT
    return width


def latex_environment(df: pd.DataFrame) -> str:
    """``table`` where the tabular fits one column of a two-column paper, else ``table*`` (both columns)."""
    return "table" if tabular_width_pt(df) <= COLUMN_WIDTH_PT else "table*"


def _header_lines(text: str) -> list[str]:
    return textwrap.wrap(text, HEADER_LINE, break_long_words=False, break_on_hyphens=False) or [text]


def _wrap_header(line: str, aligns: list[str]) -> str:
    """The tabular's header row with each long header (already LaTeX) on lines of HEADER_LINE characters, stacked
    and aligned as its column, so that a header is no wider than its column needs."""
    cells = line.rstrip().removesuffix("\\\\").rstrip().split(" & ")
    if len(cells) != len(aligns):  # a header with its own " & " (not escaped): leave the row as pandas wrote it
        return line
    out = []
    for cell, a in zip(cells, aligns):
        parts = _header_lines(cell)
        out.append(cell if len(parts) == 1 else "\\shortstack[" + a + "]{" + "\\\\".join(parts) + "}")
    return " & ".join(out) + " \\\\"


SHRINK_TO_LINE = r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%"


def styler_latex(df: pd.DataFrame, aligns: list[str], caption: str, label: str) -> str:
    """One float through pandas' Styler (booktabs rules), cells and headers LaTeX-escaped: ``table`` or ``table*``
    (:func:`latex_environment`), the tabular in a ``\\resizebox`` that shrinks it to the line width where it is
    wider (graphicx; a narrower tabular keeps its size)."""
    df = df.rename(columns=_one_line).apply(lambda col: col.map(_one_line))  # a blank line would end the tabular
    sty = df.style.hide(axis="index").format(escape="latex").format_index(escape="latex", axis=1)
    body = sty.to_latex(hrules=True, column_format="".join(aligns), position="t", position_float="centering",
                        caption=tex_text(caption), label=label)
    body = body.replace("*", "\\textasteriskcentered{}")  # *WRN: a literal asterisk in text mode
    lines = body.split("\n")
    head = lines.index("\\toprule") + 1  # the header row follows the top rule
    lines[head] = _wrap_header(lines[head], aligns)
    body = "\n".join(lines)
    body = body.replace("\\begin{tabular}", SHRINK_TO_LINE + "\n\\begin{tabular}", 1)
    body = body.replace("\\end{tabular}", "\\end{tabular}%\n}", 1)
    env = latex_environment(df)
    if env != "table":
        body = body.replace("\\begin{table}", f"\\begin{{{env}}}", 1).replace("\\end{table}", f"\\end{{{env}}}", 1)
    return _tex_symbols(body)
