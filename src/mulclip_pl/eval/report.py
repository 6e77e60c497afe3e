"""Evaluation results as JSON and as a Markdown table that pastes next to the papers' tables."""

from __future__ import annotations

import json
from pathlib import Path

RETRIEVAL_COLUMNS = ("i2t_R@1", "i2t_R@5", "i2t_R@10", "t2i_R@1", "t2i_R@5", "t2i_R@10")


def markdown_table(results: dict[str, dict[str, float]], model_label: str) -> str:
    """One row per (model, data set); metric columns in a fixed order, blanks where n/a."""
    metrics = [c for c in RETRIEVAL_COLUMNS if any(c in r for r in results.values())]
    metrics += sorted({k for r in results.values() for k in r} - set(metrics))
    lines = ["| model | data set | " + " | ".join(metrics) + " |", "|---|---|" + "---:|" * len(metrics)]
    for name, values in results.items():
        cells = [f"{values[m]:.2f}" if m in values else "" for m in metrics]
        lines.append(f"| {model_label} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_results(results: dict[str, dict[str, float]], out_dir: str | Path, model_label: str) -> tuple[Path, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "results.json", out / "results.md"
    json_path.write_text(json.dumps({"model": model_label, "results": results}, indent=2))
    md_path.write_text(markdown_table(results, model_label))
    return json_path, md_path
