"""The reproduction report: the paper's numbers, our numbers, tables and figures.

* :mod:`nvr.report.paper` - the paper's tables, typed in.
* :mod:`nvr.report.results` - :func:`collect`: every finished result of a run (never recomputed).
* :mod:`nvr.report.tables` - our numbers beside the paper's.
* :mod:`nvr.report.commentary` - the sentences, every number read from the results.
* :mod:`nvr.report.figures` - figures, saved as PNG and shown in the page.
* :mod:`nvr.provenance` - the "how to reproduce" box (every notebook shows it).

Method labels come from :func:`nvr.mining.methods.describe` (a method's settings, never its name).
"""

from .commentary import determinism_note, headline, method_commentary, setting, teacher_commentary
from .figures import (plot_false_negatives, plot_methods, plot_mining_sweep, plot_score_distributions, plot_sweeps,
                      plot_training_curves)
from ..provenance import reproduce_box
from .results import Results, collect
from .tables import (defence_table, ensemble_table, false_negative_table, jaccard_table, method_table, mining_sweep_table, paper_tables, rank_agreement, stage_table,
                     sweep_points, sweep_table, teacher_table)

__all__ = ["determinism_note", "headline", "method_commentary", "setting", "teacher_commentary",
           "plot_false_negatives", "plot_methods", "plot_mining_sweep", "plot_score_distributions", "plot_sweeps", "plot_training_curves",
           "reproduce_box", "Results", "collect", "defence_table", "ensemble_table", "false_negative_table", "jaccard_table",
           "method_table", "mining_sweep_table", "paper_tables", "rank_agreement", "stage_table", "sweep_points", "sweep_table", "teacher_table"]
