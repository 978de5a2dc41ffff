"""The report: a sweep's runs read into frames (``reader``), statistics on them (``stats``, ``gap``,
``answer``, ``claims``), then text and pictures (``wording``, ``render``, ``plots``, ``html_report``);
``make`` ties them together for ``glovesweep report``; a search's report is ``search_report`` (``search_stats``,
``search_plots``). Three rooms, one direction."""

from sweeps import lazy

_HOMES = {"make_report": "make", "parse_cell": "make", "Report": "make", "read_runs": "reader",
          "SweepFrame": "reader", "SearchReport": "search_report", "compute_answer": "answer", "judge_claims": "claims"}
__all__ = sorted(_HOMES)
__getattr__ = lazy.public_names(__name__, _HOMES)
