"""The figures of docs/results.md, drawn from a sweep's stored results.

    python scripts/study_figure.py params SWEEP_ID [SWEEP_ID ...] --db study.db --out docs/img/x.png
    python scripts/study_figure.py multiplier SWEEP_ID --db study.db --out docs/img/y.png
    python scripts/study_figure.py curves SWEEP_ID --db study.db --out docs/img/w.png
    python scripts/study_figure.py curve metrics.jsonl --out docs/img/z.png
    python scripts/study_figure.py compare SWEEP_A SWEEP_B --db study.db --suffix=-allocated
    python scripts/study_figure.py spectra SWEEP_ID --db study.db --tags a-isoparams,b-isoparams

``params``: mean accuracy (+/- sample std over seeds) against the adapter's parameter count, one
point per tag, coloured by regime (LoRA, isorank, isoparameters, related, allocated), the LoRA mean
as a dashed line. ``multiplier``: accuracy and MCC against TensLoRA+'s core learning-rate
multiplier. ``curves``: the validation accuracy each succeeded run posted, by step, and each
tag's mean. ``curve``: the validation accuracy and training loss a
``tenslora train --metrics-out`` stream recorded, step by step. ``compare`` (a Markdown table
on stdout, no figure): each row of sweep B whose tag is a tag of sweep A plus ``--suffix``, against
that row of A: means, delta and Welch's p, computed as the service computes them
(``scheduler.results.welch_p_value``), for rows that a single sweep's ``compare_to`` cannot pair.
``spectra`` (Markdown, no figure): what the rank allocator reads for each tag's adapter, its
modes' top-1 energy, normalised entropy and effective rank averaged over the tag's seeds
(``tenslora.core.metric_contract.allocator_input``, as ``tenslora sweep preset allocate`` reads
them).

Results are read the way ``tenslora results`` reads them, through the scheduler port
(``cli.scheduler_port.open_scheduler``): over HTTP with ``--url`` / ``--token``
(TENSLORA_API_URL / TENSLORA_TOKEN), or from the SQLite file ``--db``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from protocol.vocabulary import JobStatus  # noqa: E402
from tenslora.core.metric_contract import EVAL, TRAIN_LOSS  # noqa: E402

if TYPE_CHECKING:
    from protocol.port import SchedulerPort

#: Tag suffix -> (legend label, colour, marker); the suffixes `tenslora sweep preset` writes.
REGIMES: dict[str, tuple[str, str, str]] = {
    "lora": ("LoRA", "black", "*"),
    "isorank": ("isorank", "tab:blue", "o"),
    "isoparams": ("isoparameters", "tab:orange", "s"),
    "allocated": ("allocated ranks", "tab:green", "D"),
    "related": ("related methods", "tab:purple", "^"),
}
MULTIPLIER = re.compile(r"core_lr_x(\d+(?:\.\d+)?)$")


def regime(tag: str) -> str:
    if tag == "lora":
        return "lora"
    for suffix in ("isorank", "isoparams", "allocated"):
        if tag.endswith("-" + suffix):
            return suffix
    return "related"


def fetch_results(port: SchedulerPort, sweep_id: int) -> list[dict[str, Any]]:
    """The sweep's rows grouped by tag, as ``tenslora results SWEEP_ID --group-by tag``."""
    rows: list[dict[str, Any]] = port.sweep_results(sweep_id, ["tag"]).model_dump(mode="json")[
        "rows"
    ]
    return rows


Curve = list[tuple[int, float]]


def fetch_curves(port: SchedulerPort, sweep_id: int, name: str) -> dict[str, list[Curve]]:
    """tag -> one (step, value) curve of metric ``name`` per succeeded run of the sweep."""
    curves: dict[str, list[Curve]] = {}
    for job in port.iter_jobs(sweep_id, JobStatus.succeeded):
        points = port.job_metrics(job.id).points
        curve = sorted((p.step, p.value) for p in points if p.name == name and p.value is not None)
        if curve:
            curves.setdefault(str(job.config.get("tag")), []).append(curve)
    return curves


def mean_std(row: dict[str, Any], metric: str) -> tuple[float, float] | None:
    summary = row["metrics"].get(metric)
    if not summary or summary["mean"] is None:
        return None
    return summary["mean"], summary["std"] or 0.0


def params_figure(rows: list[dict[str, Any]], metric: str, out: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(9, 5.5))
    seen: set[str] = set()
    for row in rows:
        tag = str(row["group"]["tag"])
        point, params = mean_std(row, metric), mean_std(row, "adapter_params")
        if point is None or params is None:
            continue
        kind = regime(tag)
        label, colour, marker = REGIMES[kind]
        ax.errorbar(params[0], point[0], yerr=point[1], fmt=marker, color=colour, capsize=3,
                    markersize=11 if kind == "lora" else 7,
                    label=None if kind in seen else label)
        seen.add(kind)
        if kind == "lora":
            ax.axhline(point[0], color="black", linestyle="--", linewidth=0.8)
        name = tag.rsplit("-", 1)[0] if kind in ("isorank", "isoparams", "allocated") else tag
        ax.annotate(name, (params[0], point[0]), textcoords="offset points", xytext=(5, 4),
                    fontsize=7, color=colour)
    ax.set_xscale("log")
    ax.set_xlabel("adapter parameters (log scale)")
    ax.set_ylabel(f"{metric} (mean +/- std over seeds)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    save(fig, out)


def multiplier_figure(rows: list[dict[str, Any]], out: Path, title: str) -> None:
    by_multiplier: dict[float, dict[str, Any]] = {}
    for row in rows:
        found = MULTIPLIER.search(str(row["group"]["tag"]))
        if found:
            by_multiplier[float(found.group(1))] = row
    multipliers = sorted(by_multiplier)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for name, colour in (("accuracy", "tab:blue"), ("mcc", "tab:red")):
        points = [(m, mean_std(by_multiplier[m], name)) for m in multipliers]
        kept = [(m, p) for m, p in points if p is not None]
        ax.errorbar([m for m, _ in kept], [p[0] for _, p in kept], yerr=[p[1] for _, p in kept],
                    fmt="o-", color=colour, capsize=3, label=name)
    ax.set_xscale("log", base=2)
    ax.set_xticks(multipliers, [f"x{m:g}" for m in multipliers])
    ax.set_xlabel("core learning-rate multiplier")
    ax.set_ylabel("mean +/- std over seeds")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, out)


def curves_figure(curves: dict[str, list[Curve]], name: str, out: Path, title: str) -> None:
    """Each run thin, the mean over a tag's runs at each step bold, in the tag's colour."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for index, tag in enumerate(sorted(curves)):
        colour = plt.get_cmap("tab10" if len(curves) <= 10 else "tab20")(index % 20)
        by_step: dict[int, list[float]] = {}
        for curve in curves[tag]:
            ax.plot([s for s, _ in curve], [v for _, v in curve], color=colour, alpha=0.3,
                    linewidth=0.8)
            for step, value in curve:
                by_step.setdefault(step, []).append(value)
        steps = sorted(by_step)
        ax.plot(steps, [sum(by_step[s]) / len(by_step[s]) for s in steps], "o-", color=colour,
                linewidth=2, label=f"{tag} (mean of {len(curves[tag])})")
    ax.set_xlabel("step")
    ax.set_ylabel(f"{name}: each run, and the mean")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    save(fig, out)


def curve_figure(stream: Path, out: Path, title: str) -> None:
    series: dict[str, list[tuple[int, float]]] = {}
    for line in stream.read_text().splitlines():
        if line.strip():
            point = json.loads(line)
            if point["value"] is not None:
                series.setdefault(point["name"], []).append((point["step"], point["value"]))
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    accuracy = sorted(series.get(f"{EVAL}/accuracy", []))
    ax.plot([s for s, _ in accuracy], [v for _, v in accuracy], "o-", color="tab:blue",
            label="validation accuracy")
    ax.set_xlabel("step")
    ax.set_ylabel("validation accuracy")
    loss_axis = ax.twinx()
    loss = sorted(series.get(TRAIN_LOSS, []))
    loss_axis.plot([s for s, _ in loss], [v for _, v in loss], color="tab:gray", alpha=0.6,
                   label="training loss")
    loss_axis.set_ylabel("training loss")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    handles = ax.get_legend_handles_labels()[0] + loss_axis.get_legend_handles_labels()[0]
    ax.legend(handles=handles, fontsize=8, loc="lower right")
    save(fig, out)


def compare_table(rows_a: list[dict[str, Any]], rows_b: list[dict[str, Any]], suffix: str,
                  metrics: list[str]) -> str:
    """Markdown: each row of B tagged ``<tag><suffix>`` against A's ``<tag>`` row."""
    from scheduler.results import welch_p_value

    by_tag = {row["group"]["tag"]: row for row in rows_a}
    header = ["row of B", "n", "row of A", "n"]
    for metric in metrics:
        header += [f"{metric} (B)", f"{metric} (A)", "Δ", "p"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in sorted(rows_b, key=lambda r: r["group"]["tag"]):
        tag = row["group"]["tag"]
        source = by_tag.get(tag.removesuffix(suffix)) if tag.endswith(suffix) else None
        if source is None:
            continue
        cells = [tag, str(row["n"]), source["group"]["tag"], str(source["n"])]
        for metric in metrics:
            b, a = row["metrics"].get(metric), source["metrics"].get(metric)
            if not b or not a or b["mean"] is None or a["mean"] is None:
                cells += ["-", "-", "-", "-"]
                continue
            p = welch_p_value(b["mean"], b["std"] or 0.0, b["n"],
                              a["mean"], a["std"] or 0.0, a["n"])
            cells += [f"{b['mean']:.4f} ± {b['std'] or 0.0:.4f}",
                      f"{a['mean']:.4f} ± {a['std'] or 0.0:.4f}",
                      f"{b['mean'] - a['mean']:+.4f}",
                      "n/a" if p is None else f"{p:.2g}" + ("\\*" if p < 0.05 else "")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def spectra_table(runs: list[dict[str, Any]], tags: list[str] | None) -> str:
    """Markdown: per tag and mode, the allocator's input averaged over the tag's seeds."""
    from tenslora.core.adapter_config import AdapterConfig
    from tenslora.core.metric_contract import allocator_input

    by_tag: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_tag.setdefault(str(run["config"].get("tag")), []).append(run)
    lines = ["| row | seeds | mode | rank | top-1 energy | normalised entropy | effective rank |",
             "|---|--:|---|--:|--:|--:|--:|"]
    for tag in tags or sorted(by_tag):
        group = by_tag.get(tag)
        if not group or (group[0]["config"].get("adapter") or {}).get("method") == "lora":
            continue
        ranks = AdapterConfig.from_dict(group[0]["config"]["adapter"]).mode_ranks()
        spectra = allocator_input([run["spectra_metrics"] for run in group], ranks)
        for mode, stats in spectra.items():
            lines.append(f"| {tag} | {len(group)} | {mode} | {stats['rank']} | "
                         f"{stats['top1_energy']:.3f} | {stats['entropy_norm']:.3f} | "
                         f"{stats['effective_rank']:.2f} |")
    return "\n".join(lines)


def save(fig: Any, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "figure", choices=("params", "multiplier", "curves", "curve", "compare", "spectra"))
    parser.add_argument("source", nargs="+", help="sweep ids, or the metrics .jsonl for curve")
    parser.add_argument("--out", type=Path, help="PNG to write (all but compare, spectra)")
    parser.add_argument("--suffix", default="-allocated",
                        help="compare: the tag suffix of B's rows (A's tag + suffix)")
    parser.add_argument("--metrics", default="accuracy,mcc", help="compare: result metrics")
    parser.add_argument("--metric", default=None,
                        help="the y axis: params' result metric (accuracy), curves' streamed "
                        f"metric ({EVAL}/accuracy)")
    parser.add_argument("--title", default="")
    parser.add_argument("--tags", default=None,
                        help="curves, spectra: only these tags (comma-separated; default every "
                        "tag)")
    parser.add_argument("--db", type=Path, help="SQLite file of the sweeps (instead of --url)")
    parser.add_argument("--url", default=os.environ.get("TENSLORA_API_URL"))
    parser.add_argument("--token", default=os.environ.get("TENSLORA_TOKEN"))
    args = parser.parse_args()
    if args.figure not in ("compare", "spectra") and args.out is None:
        parser.error(f"{args.figure} needs --out")
    if args.figure == "curve":
        curve_figure(Path(args.source[0]), args.out, args.title)
        return
    if args.figure == "compare" and len(args.source) != 2:
        parser.error("compare takes two sweep ids: A (the source rows) and B")
    url = None if args.db else args.url
    database_url = f"sqlite:///{args.db.resolve()}" if args.db else None
    from cli.scheduler_port import open_scheduler

    with open_scheduler(url, args.token, database_url=database_url) as port:
        figure(args, port)


def figure(args: argparse.Namespace, port: SchedulerPort) -> None:
    """The figure or table ``args`` ask for, from the sweeps ``port`` reads."""
    if args.figure == "spectra":
        from cli.allocate_source import fetch_finished_runs

        runs = fetch_finished_runs(port, int(args.source[0]))
        print(spectra_table(runs, args.tags.split(",") if args.tags else None))
        return
    if args.figure == "curves":
        name = args.metric or f"{EVAL}/accuracy"
        curves = fetch_curves(port, int(args.source[0]), name)
        if args.tags:
            wanted = set(args.tags.split(","))
            curves = {tag: runs for tag, runs in curves.items() if tag in wanted}
        curves_figure(curves, name, args.out, args.title)
        return
    if args.figure == "compare":
        rows_a, rows_b = (fetch_results(port, int(sweep)) for sweep in args.source)
        print(compare_table(rows_a, rows_b, args.suffix, args.metrics.split(",")))
        return
    rows = [row for sweep in args.source for row in fetch_results(port, int(sweep))]
    if args.figure == "params":
        params_figure(rows, args.metric or "accuracy", args.out, args.title)
    else:
        multiplier_figure(rows, args.out, args.title)


if __name__ == "__main__":
    main()
