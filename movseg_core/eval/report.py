"""Evaluation report: ``metrics.json``, ``report.md`` and PNG plots in one folder.

Files: ``metrics.json`` (miou, per_class_iou, pixel_acc, fwiou, frames_scored, frames_sent,
latency_ms, confusion matrix, ..., and ``panoptic`` -- PQ / SQ / RQ, mask AP -- only when frames with
ground-truth instances were scored), ``report.md`` (human-readable summary linking the plots),
``per_class_iou.png``, ``confusion_matrix.png`` (rows = ground truth, row-normalised, first column
= "unknown" predictions) and ``overlays/<frame>.png`` (prediction | ground truth | RGB).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from movseg_core.eval.scoring import EvalAccumulator, Sample

log = logging.getLogger(__name__)


def _palette(n: int) -> np.ndarray:
    import imgviz

    pal = imgviz.label_colormap().copy()  # 256x3 uint8, the VOC palette
    if n > len(pal):
        raise ValueError(f"at most {len(pal)} classes can be coloured, got {n}")
    pal[0] = 0
    return pal


def _fmt(x: float | None, pct: bool = True) -> str:
    if x is None:
        return "n/a"
    return f"{100 * x:.1f}" if pct else f"{x:.1f}"


def plot_per_class_iou(metrics: dict[str, Any], path: Path) -> None:
    """Save a horizontal bar chart of ``metrics['per_class_iou']`` (%, mIoU as a dashed line) to ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(metrics["per_class_iou"])
    vals = [metrics["per_class_iou"][n] for n in names]
    fig, ax = plt.subplots(figsize=(7, 0.22 * len(names) + 1.5))
    y = np.arange(len(names))
    ax.barh(y, [100 * v if v is not None else 0 for v in vals], color="tab:blue")
    for yi, v in zip(y, vals):
        if v is None:
            ax.text(0.5, yi, "not present", va="center", fontsize=7, color="grey")
    ax.set_yticks(y, names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("IoU (%)")
    miou = metrics["miou"]
    ax.set_title(f"per-class IoU, mIoU {_fmt(miou)}% over {metrics['frames_scored']} frames", fontsize=9)
    if miou is not None:
        ax.axvline(100 * miou, color="tab:red", lw=1, ls="--")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_confusion(metrics: dict[str, Any], path: Path) -> None:
    """Save the row-normalised confusion matrix of ``metrics`` (gt classes 1..C-1 as rows) to ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(metrics["confusion_matrix"], dtype=np.float64)[1:]  # rows: gt classes 1..C-1
    rows = cm.sum(1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    names = metrics["class_names"]
    fig, ax = plt.subplots(figsize=(11, 10))
    im = ax.imshow(norm, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(np.arange(len(names) + 1), ["unknown", *names], rotation=90, fontsize=6)
    ax.set_yticks(np.arange(len(names)), names, fontsize=6)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    ax.set_title("confusion matrix (row-normalised: fraction of each class's pixels)", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.03)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_overlay(sample: Sample, class_names: Sequence[str], path: Path) -> None:
    """prediction | ground truth | RGB, with a legend of the classes in either map."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    pal = _palette(len(class_names) + 1)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    for ax, img, title in zip(axes, (pal[sample.pred], pal[sample.gt], sample.rgb),
                              ("prediction", "ground truth (black = unlabelled)", "RGB")):
        ax.imshow(img)
        ax.set_title(f"{sample.name}: {title}", fontsize=9)
        ax.axis("off")
    ids = sorted((set(np.unique(sample.pred).tolist()) | set(np.unique(sample.gt).tolist())) - {0})
    handles = [Patch(color=pal[i] / 255.0, label=class_names[i - 1]) for i in ids[:24]]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(8, len(handles)), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _markdown(metrics: dict[str, Any], title: str, info: dict[str, str], warnings: Sequence[str],
              overlays: Sequence[str]) -> str:
    lat, inf = metrics["latency_ms"], metrics["inference_ms"]
    lines = [f"# {title}", ""]
    for w in warnings:
        lines += [f"> **Warning:** {w}", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    lines += ["", "| metric | value |", "| --- | --- |",
              f"| mIoU | {_fmt(metrics['miou'])} % |",
              f"| pixel accuracy | {_fmt(metrics['pixel_acc'])} % |",
              f"| frequency-weighted IoU | {_fmt(metrics['fwiou'])} % |",
              f"| boundary F1 (2 px, mean over frames) | {_fmt(metrics['boundary_f1'])} % |",
              f"| labelled pixels predicted 'unknown' | {_fmt(metrics['unknown_fraction'])} % |",
              f"| frames scored / sent | {metrics['frames_scored']} / {metrics['frames_sent']} |",
              f"| classes present in ground truth | {metrics['classes_present']} of {len(metrics['class_names'])} |"]
    if lat["n"]:
        lines.append(f"| latency p50 / p90 / p99 / max | {_fmt(lat['p50'], False)} / {_fmt(lat['p90'], False)} / "
                     f"{_fmt(lat['p99'], False)} / {_fmt(lat['max'], False)} ms (n={lat['n']}) |")
    if inf["n"]:
        lines.append(f"| segmenter time p50 / p90 | {_fmt(inf['p50'], False)} / {_fmt(inf['p90'], False)} ms |")
    lines += ["", "mIoU, pixel accuracy and frequency-weighted IoU come from one confusion matrix summed over all "
              "scored frames; unlabelled ground-truth pixels (id 0) are ignored, as in the NYUv2 literature; "
              "a pixel predicted 'unknown' counts as a miss. Classes absent from both ground truth and "
              "prediction are left out of the mean.", ""]
    if metrics["unscored"]:
        lines += ["## Frames not scored", ""] + [f"- {k}: {v}" for k, v in metrics["unscored"].items()] + [""]
    if "panoptic" in metrics:
        lines += _panoptic_markdown(metrics["panoptic"])
    lines += ["## Per-class IoU", "", "![per-class IoU](per_class_iou.png)", "",
              "| id | class | IoU % | share of labelled pixels % |", "| --- | --- | --- | --- |"]
    cm = np.asarray(metrics["confusion_matrix"])
    total = max(1, int(cm[1:].sum()))
    for i, n in enumerate(metrics["class_names"], start=1):
        lines.append(f"| {i} | {n} | {_fmt(metrics['per_class_iou'][n])} | {100 * cm[i].sum() / total:.2f} |")
    lines += ["", "## Confusion matrix", "", "![confusion matrix](confusion_matrix.png)", ""]
    if overlays:
        lines += ["## Examples (prediction | ground truth | RGB)", ""] + [f"![{o}]({o})" for o in overlays] + [""]
    return "\n".join(lines)


def _panoptic_markdown(p: dict[str, Any]) -> list[str]:
    """The report's panoptic section (``metrics['panoptic']`` of :meth:`EvalAccumulator.panoptic_metrics`)."""
    lines = [f"## Panoptic quality ({len(p['frames'])} frames with ground-truth instances)", "",
             "| segments | PQ % | SQ % | RQ % |", "| --- | --- | --- | --- |"]
    for label, suffix in (("all", ""), ("things", "_things"), ("stuff", "_stuff")):
        lines.append(f"| {label} | {_fmt(p['pq' + suffix])} | {_fmt(p['sq' + suffix])} | {_fmt(p['rq' + suffix])} |")
    lines += ["", f"Mask AP (0.50:0.95) {_fmt(p['ap'])} %, AP50 {_fmt(p['ap50'])} %.", "",
              "PQ / SQ / RQ (Kirillov et al. 2019): a predicted and a true segment of one class match at IoU > 0.5; "
              "sums over all frames, then the mean over classes. Stuff classes (one segment per class, in ground "
              f"truth and prediction): {', '.join(p['stuff_classes']) or 'none'} (the segmenter's "
              "objects.stuff_queries); every other class is things. Unlabelled ground-truth pixels are void. "
              "Mask AP: COCO style, scores = the objects' classifier confidence.", "",
              "| class | PQ % | SQ % | RQ % | TP | FP | FN | AP % |", "|" + " --- |" * 8]
    for n, c in p["per_class"].items():
        lines.append(f"| {n} | {_fmt(c['pq'])} | {_fmt(c['sq'])} | {_fmt(c['rq'])} | {c['tp']} | {c['fp']} | {c['fn']} "
                     f"| {_fmt(c['ap'])} |")
    return lines + [""]


def write_report(acc: EvalAccumulator, out_dir: str | Path, *, title: str = "MOVSeg evaluation",
                 info: dict[str, str] | None = None, warnings: Sequence[str] = ()) -> dict[str, Any]:
    """Write metrics.json, report.md and the plots into ``out_dir``; returns the metrics.

    Raises ValueError (and writes nothing) when no frame was scored.
    """
    metrics = acc.metrics()  # raises before anything is written
    metrics["info"] = dict(info or {})
    metrics["warnings"] = list(warnings)
    out = Path(out_dir)
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    plot_per_class_iou(metrics, out / "per_class_iou.png")
    plot_confusion(metrics, out / "confusion_matrix.png")
    overlays = []
    for s in acc.samples:
        rel = f"overlays/{s.name}.png"
        plot_overlay(s, acc.class_names, out / rel)
        overlays.append(rel)
    (out / "report.md").write_text(_markdown(metrics, title, metrics["info"], warnings, overlays))
    log.info("report written to %s", out / "report.md")
    return metrics
