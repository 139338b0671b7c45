"""`study.json`, and the in-sample vs out-of-sample report (report.txt, report.html).

A fold diverges when its test score falls more than `divergence_warn` x |train score| below its
train score, or when a positive train score turns into a test score <= 0: the search fitted the
training window's noise (overfitting), and its parameters should not be trusted as they stand.
The same rule compares the concatenated out-of-sample score with the mean in-sample score.
"""

from __future__ import annotations

import html
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

from .objective import out_of_sample
from .space import OptimizeSpec
from .study import FoldResult

ROWS = ("score", "total_return", "max_drawdown", "sharpe", "sortino", "turnover", "fees", "funding_pnl",
        "liquidations", "fills")
_PASSWORD = re.compile(r"(://[^:/@]+:)[^@]+@")


def masked(url: str) -> str:
    """A storage URL without its password (the report and study.json are shareable)."""
    return _PASSWORD.sub(r"\1***@", url)


def diverges(train_score: float, test_score: float, tolerance: float) -> bool:
    if train_score > 0 and test_score <= 0:
        return True
    return test_score < train_score - tolerance * abs(train_score)


def build(results: list[FoldResult], spec: OptimizeSpec, meta: dict[str, Any]) -> dict[str, Any]:
    """The study.json document."""
    folds, warnings = [], []
    for r in results:
        train_score, test_score = r.train["score"], r.test.metrics["score"]
        flag = diverges(train_score, test_score, spec.divergence_warn)
        if flag:
            warnings.append(f"fold {r.fold.index + 1}: out-of-sample score {test_score:.4g} vs in-sample "
                            f"{train_score:.4g}: the best parameters did not carry over (overfitting?)")
        folds.append({
            "index": r.fold.index + 1,
            "train": r.fold.train.describe(),
            "test": r.fold.test.describe(),
            "trials": r.trials,
            "completed": r.completed,
            "best_params": r.best_params,
            "train_metrics": r.train,
            "test_metrics": r.test.metrics,
            "default_test_metrics": r.default_test.metrics,
            "diverges": flag,
        })
    oos = out_of_sample([r.test for r in results], spec)
    in_sample = {k: _mean([r.train[k] for r in results]) for k in ROWS} if results else {}
    if results and diverges(in_sample["score"], oos["score"], spec.divergence_warn):
        warnings.append(f"all folds: out-of-sample score {oos['score']:.4g} vs mean in-sample "
                        f"{in_sample['score']:.4g}")
    return {**meta, "optimize": spec.describe(), "folds": folds, "in_sample_mean": in_sample, "oos": oos,
            "default_oos": out_of_sample([r.default_test for r in results], spec), "warnings": warnings}


def _mean(values: list[Any]) -> Any:
    """Money fields are decimal strings (as in summary.json) and stay so; ratios are floats."""
    if any(isinstance(v, str) for v in values):
        total = sum((Decimal(v) for v in values), Decimal(0))
        return str((total / len(values)).quantize(Decimal("0.000001")))
    return round(sum(values) / len(values), 6)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str) and value.lstrip("-").replace(".", "", 1).isdigit():
        return f"{float(value):.4g}"  # a money string, shown like the ratios
    return str(value)


def table(doc: dict[str, Any]) -> list[list[str]]:
    """Rows: a metric, then in-sample | out-of-sample per fold, then mean in-sample | concatenated OOS."""
    head = ["metric"]
    for f in doc["folds"]:
        head += [f"fold {f['index']} IS", f"fold {f['index']} OOS"]
    head += ["mean IS", "OOS", "OOS (base config)"]
    rows = [head]
    for key in ROWS:
        row = [key]
        for f in doc["folds"]:
            row += [_cell(f["train_metrics"].get(key, "")), _cell(f["test_metrics"].get(key, ""))]
        row += [_cell(doc["in_sample_mean"].get(key, "")), _cell(doc["oos"].get(key, "")),
                _cell(doc["default_oos"].get(key, ""))]
        rows.append(row)
    return rows


def text(doc: dict[str, Any]) -> str:
    lines = [f"study {doc['study']}: {doc['trials_per_fold']} trials x {len(doc['folds'])} folds, "
             f"objective {doc['optimize']['objective']}, walk {doc['optimize']['walk']}"]
    for f in doc["folds"]:
        lines.append(f"fold {f['index']}: train {f['train']['start']} .. {f['train']['end']}, "
                     f"test {f['test']['start']} .. {f['test']['end']}, best {json.dumps(f['best_params'])}")
    rows = table(doc)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines.append("")
    for r in rows:
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths,
                                                                                               strict=True))))
    lines.append("")
    lines += [f"WARNING: {w}" for w in doc["warnings"]] or ["in-sample and out-of-sample agree within "
                                                            f"{doc['optimize']['divergence_warn']:.0%}"]
    return "\n".join(lines) + "\n"


def html_page(doc: dict[str, Any]) -> str:
    rows = table(doc)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
    warns = "".join(f'<p class="warn">WARNING: {html.escape(w)}</p>' for w in doc["warnings"])
    folds = "".join(f"<li>fold {f['index']}: train {f['train']['start']} .. {f['train']['end']}, test "
                    f"{f['test']['start']} .. {f['test']['end']}<br><code>"
                    f"{html.escape(json.dumps(f['best_params']))}</code></li>" for f in doc["folds"])
    return ("<!doctype html><meta charset=utf-8><title>perpbot optimize</title><style>"
            "body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:right}"
            "td:first-child{text-align:left}tr:nth-child(even){background:#f3f3f3}"
            ".warn{color:#b00;font-weight:bold}</style>"
            f"<h1>Walk-forward study {html.escape(doc['study'])}</h1>"
            f"<p>{doc['trials_per_fold']} trials per fold,"
            f" objective {html.escape(doc['optimize']['objective'])},"
            f" walk {html.escape(doc['optimize']['walk'])}, {doc['workers']} local workers,"
            f" {doc['wall_secs']:.1f} s</p>{warns}<table><tr>{head}</tr>{body}</table><ul>{folds}</ul>")


def write(doc: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "study.json").write_text(json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")
    (out / "report.txt").write_text(text(doc))
    (out / "report.html").write_text(html_page(doc))
