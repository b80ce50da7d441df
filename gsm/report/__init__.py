"""The reporting side: pure functions from loaded runs to tables (nothing here launches training).

* :mod:`gsm.report.stats`: per-seed summaries, paired t-tests, Table VI's correlation;
* :mod:`gsm.report.cells`: what the paper tables share (cells, p-values, conditions, notes);
* :mod:`gsm.report.builders`: one builder per paper table (Tables I-VI);
* :mod:`gsm.report.as_written`: the as-released / as-written table of Tables II-IV;
* :mod:`gsm.report.demo`: the ``make demo`` table;
* :mod:`gsm.report.render`: Markdown, CSV and LaTeX writers;
* :mod:`gsm.report.sweep`: the table of a folder of runs (``gsm-tables sweep``);
* :mod:`gsm.report.running`: a ``--no-run`` table's rows that are training now.

The orchestration (grid → launch what is missing → report) is ``gsm.reproduce``.
"""

from gsm.report.as_written import AS_WRITTEN_TABLES, as_written_table
from gsm.report.builders import BUILDERS, build_table, table_figures
from gsm.report.demo import demo_table
from gsm.report.render import TableOutput

__all__ = ["AS_WRITTEN_TABLES", "BUILDERS", "TableOutput", "as_written_table", "build_table", "demo_table",
           "table_figures"]
