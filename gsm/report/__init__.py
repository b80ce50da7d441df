"""The reporting side: pure functions from loaded runs to tables (nothing here launches training).

* :mod:`gsm.report.stats`: per-seed summaries, paired t-tests, Table VI's correlation;
* :mod:`gsm.report.builders`: one builder per paper table (and the ``make demo`` table);
* :mod:`gsm.report.render`: Markdown, CSV and LaTeX writers;
* :mod:`gsm.report.sweep`: the table of a folder of runs (``gsm-tables sweep``).

The orchestration (grid → launch what is missing → report) is ``gsm.reproduce``.
"""

from gsm.report.builders import BUILDERS, build_table, demo_table, table_figures
from gsm.report.render import TableOutput

__all__ = ["BUILDERS", "TableOutput", "build_table", "demo_table", "table_figures"]
