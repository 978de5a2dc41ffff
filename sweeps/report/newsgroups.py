"""What a report says only of the 20 Newsgroups study: the blog's question, the published numbers, GloVe and the
strip modes. It appears where the runs carry the study's own measure (``leakage``, which the Keras trainer and the
TF-IDF baselines log); a report on another trainer's runs asks its question in that trainer's metric instead.
"""

from __future__ import annotations

import pandas as pd

from sweeps.report import claims as claims_module
from sweeps.report import objective as objective_module
from sweeps.report import reader
from sweeps.report import stats
from sweeps.tracking import names


def is_newsgroups(runs: pd.DataFrame) -> bool:
    """Whether the runs are the 20 Newsgroups study's: they record its ``leakage`` measure."""
    return bool(runs[names.LEAKAGE].notna().any())


def glove_text(runs_frame: pd.DataFrame) -> str:
    """The GloVe sizes the network runs used, against the publications' 100d."""
    network = runs_frame[~reader.reference_rows(runs_frame)]
    sizes = sorted({int(value) for value in network["glove_dim"].dropna()}) if "glove_dim" in network else []
    used = " and ".join(f"{size}d" for size in sizes) or "an unrecorded size"
    published = claims_module.PUBLISHED_GLOVE_DIM
    if sizes == [published]:
        return f"This sweep uses GloVe 6B {used}, as the publications did."
    return (f"This sweep uses GloVe 6B {used}; the publications used {published}d, so a measured cell is the same "
            f"setup with smaller word vectors, not a replica.")


def preamble_markdown(swept: reader.SweepFrame) -> list[str]:
    """The question, every published number with its source, the GloVe size, and what the terms mean; for runs of
    another trainer, the question in its objective's words."""
    if not is_newsgroups(swept.runs):
        metric = swept.objective
        bounds = objective_module.range_text(metric)
        kinds = ", ".join(sorted(set(swept.runs.loc[~reader.reference_rows(swept.runs), "trainer"].dropna())))
        return ["## The question", "",
                f"Trainer {kinds or 'unknown'}, objective {metric.name} ({objective_module.label(metric)}; "
                f"{objective_module.higher(metric)} is better{'; range ' + bounds if bounds else ''}). Which factor "
                f"explains the gap between the blog's cell (the published setting) and the user's cell?"]
    lines = ["## The question", "",
             "The Keras blog's GloVe + Conv1D example on 20 Newsgroups reports 95% validation accuracy after 2 "
             "epochs; people running it get about 40% after 2 and 55-75% after 10. Which difference between the "
             "blog's setup and theirs explains the gap?", "", "Published numbers (validation accuracy):", ""]
    for item in claims_module.PUBLISHED:
        values = ", ".join(f"{'about ' if item.approximate else ''}{value:.2f} @{count}"
                           for count, value in sorted(item.values.items()))
        lines.append(f"- {item.source}: {values} ({item.setup}; GloVe {claims_module.PUBLISHED_GLOVE_DIM}d).")
    lines += ["", glove_text(swept.runs), "", "Terms:", ""]
    strips = [value for value in stats.level_order("strip", swept.runs["strip"].dropna())] \
        if "strip" in swept.runs else []
    lines += [f"- strip={value}: {claims_module.STRIP_MEANINGS.get(value, 'see trainer/data.py')}" for value in strips]
    lines += [f"- {claims_module.LEAKAGE_MEANING}.", "- dataset=19997: the original 19,997-post archive (full Usenet "
              "headers, 80/20 split); dataset=bydate: scikit-learn's train/test version (no Newsgroups: header)."]
    return lines
