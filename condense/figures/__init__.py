"""Figures and tables of the paper, regenerated from stored results: ``python -m condense.figures``.

    >>> from condense.figures import PaperFigureConfig, make_paper_figures      # doctest: +SKIP
    >>> report = make_paper_figures(PaperFigureConfig(results="results", runs="runs", out="figures"))
    >>> print(report.markdown())                                                   # tables + notes

Modules, top-down: :mod:`~condense.figures.paper` (what is drawn from where, the CLI's work),
:mod:`~condense.figures.study` (benchmark table and bar chart of a study directory),
:mod:`~condense.figures.grids` (synthetic images side by side), :mod:`~condense.figures.warmup`
(the warm-up ablation of :mod:`condense.warmup_ablation`) and :mod:`~condense.figures.style`
(colours, fonts, saving; shared with :mod:`dynamics.figures`).
"""

from condense.figures.grids import class_mosaic, synthetic_set_comparison
from condense.figures.paper import FigureReport, PaperFigureConfig, find_input, make_paper_figures
from condense.figures.study import StudyResults, budget_note, read_study, study_chart
from condense.figures.style import METHOD_STYLE, save_figure, use_paper_style
from condense.figures.warmup import ablation_note, warmup_ablation_figure

__all__ = [
    "PaperFigureConfig", "FigureReport", "find_input", "make_paper_figures",
    "StudyResults", "read_study", "budget_note", "study_chart",
    "class_mosaic", "synthetic_set_comparison",
    "ablation_note", "warmup_ablation_figure",
    "METHOD_STYLE", "save_figure", "use_paper_style",
]
