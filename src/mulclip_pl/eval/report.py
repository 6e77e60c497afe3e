"""Evaluation results as JSON and as Markdown tables that paste next to the papers' tables.

``mulclip-pl test`` writes one ``results.json`` per run; ``mulclip-pl report DIR`` merges all under
a folder into one table, averaging the runs that share a label (seeds) as mean ± sample std.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Literal

RETRIEVAL_COLUMNS = ("i2t_R@1", "i2t_R@5", "i2t_R@10", "t2i_R@1", "t2i_R@5", "t2i_R@10")
Results = dict[str, dict[str, float]]  # data set -> metric -> value


def _columns(rows: list[dict[str, object]]) -> list[str]:
    metrics = [c for c in RETRIEVAL_COLUMNS if any(c in r for r in rows)]
    return metrics + sorted({k for r in rows for k in r} - set(metrics))


def markdown_table(results: Results, model_label: str) -> str:
    """One row per (model, data set); metric columns in a fixed order, blanks where n/a."""
    metrics = _columns(list(results.values()))
    lines = ["| model | data set | " + " | ".join(metrics) + " |", "|---|---|" + "---:|" * len(metrics)]
    for name, values in results.items():
        cells = [f"{values[m]:.2f}" if m in values else "" for m in metrics]
        lines.append(f"| {model_label} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_results(results: Results, out_dir: str | Path, model_label: str) -> tuple[Path, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "results.json", out / "results.md"
    json_path.write_text(json.dumps({"model": model_label, "results": results}, indent=2))
    md_path.write_text(markdown_table(results, model_label))
    return json_path, md_path


def _groups(runs: list[tuple[str, Results]]) -> dict[tuple[str, str], list[dict[str, float]]]:
    """(label, data set) -> the metric dicts of the runs sharing that label, in first-seen order."""
    groups: dict[tuple[str, str], list[dict[str, float]]] = {}
    for label, results in runs:
        for name, values in results.items():
            groups.setdefault((label, name), []).append(values)
    return groups


def _cell(column: list[float]) -> str:
    """Mean, and ± sample std when there are several runs (e.g. seeds)."""
    spread = f" ± {statistics.stdev(column):.1f}" if len(column) > 1 else ""
    return f"{statistics.mean(column):.1f}{spread}" if column else ""


def summary_table(runs: list[tuple[str, Results]]) -> str:
    """One row per (label, data set) over the runs that share the label: mean, and ± sample std
    when there are several (e.g. seeds). Rows keep the order in which labels first appear."""
    groups = _groups(runs)
    metrics = _columns([v for values in groups.values() for v in values])
    lines = ["| model | data set | runs | " + " | ".join(metrics) + " |", "|---|---|---:|" + "---:|" * len(metrics)]
    for (label, name), values in groups.items():
        cells = [_cell([v[m] for v in values if m in v]) for m in metrics]
        lines.append(f"| {label} | {name} | {len(values)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def comparison_table(runs: list[tuple[str, Results]]) -> str:
    """The same figures side by side: one column per label (its run count in the header), one row
    per (data set, metric) that any label has; for ablations scored on many sets or kinds."""
    groups = _groups(runs)
    labels = list(dict.fromkeys(label for label, _ in groups))
    names = list(dict.fromkeys(name for _, name in groups))
    header = [f"{label} (n = {max(len(v) for (l, _), v in groups.items() if l == label)})" for label in labels]
    lines = ["| data set | metric | " + " | ".join(header) + " |", "|---|---|" + "---:|" * len(labels)]
    for name in names:
        for metric in _columns([v for (_, n), values in groups.items() if n == name for v in values]):
            cells = [_cell([v[metric] for v in groups.get((label, name), []) if metric in v]) for label in labels]
            lines.append(f"| {name} | {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def report(root: str, out: str | None = None, layout: Literal["rows", "columns"] = "rows") -> str:
    """Merge every ``results.json`` under ``root`` (from ``mulclip-pl test`` / ``validate``) into one
    Markdown table; runs with the same label (``--run_name``) are averaged.

    Args:
        root: folder searched recursively for results.json files (rows follow their sorted paths).
        out: also write the table to this file.
        layout: 'rows' (a row per model and data set, a column per metric) or 'columns' (a column
            per model, a row per data set and metric: ablations side by side).
    """
    files = sorted(Path(root).rglob("results.json"))
    if not files:
        raise FileNotFoundError(f"no results.json under {root}; run `mulclip-pl test ... --trainer.default_root_dir "
                                f"{root}/NAME` first")
    runs = []
    for file in files:
        saved = json.loads(file.read_text())
        runs.append((saved["model"], saved["results"]))
    table = summary_table(runs) if layout == "rows" else comparison_table(runs)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(table)
    print(table)
    return table
