"""The reporting side: pure functions from loaded runs to tables (nothing here launches training).

* :mod:`gsm.report.stats`: per-seed summaries, paired t-tests, Table VI's correlation;
* :mod:`gsm.report.builders`: one builder per paper table, the as-released / as-written table of
  Tables II-IV, and the ``make demo`` table;
* :mod:`gsm.report.render`: Markdown, CSV and LaTeX writers;
* :mod:`gsm.report.sweep`: the table of a folder of runs (``gsm-tables sweep``).

The orchestration (grid → launch what is missing → report) is ``gsm.reproduce``.
"""

from gsm.report.builders import AS_WRITTEN_TABLES, BUILDERS, as_written_table, build_table, demo_table, table_figures
from gsm.report.render import TableOutput

__all__ = ["AS_WRITTEN_TABLES", "BUILDERS", "TableOutput", "as_written_table", "build_table", "demo_table",
           "table_figures"]
