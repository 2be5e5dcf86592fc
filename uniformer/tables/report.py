"""Paper-style tables: one row per published entry, each number as published / measured / Δ, with a verdict.

Inputs are the result files of the CLI stages (see ``spec.py``); published numbers come only from the
entry's paper_results.csv row. Outputs: ``reports/<table>.md`` (renders on GitHub), ``.csv``, ``.tex`` and
``reports/<table>_acc_vs_gflops.png``.
"""
import csv
import io
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..profiling.report import delta_pct, verdict as flops_verdict
from .spec import TableSpec

# accuracy comparable with the paper (params.yaml data.<dataset>.paper.source)
REAL_DATA_SOURCES = ("imagenet-val", "imagenet", "kinetics400", "kinetics600", "ssv1", "ssv2")


def _num(v) -> Optional[float]:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def load_results(spec: TableSpec, profile: str, root: Path) -> Dict:
    """Profile rows (by entry), eval metrics (by entry) and the machine record of ``profile``'s result files."""
    out = {"profile": {}, "eval": {}, "machine": None}
    pj = spec.profile_json(profile, root)
    if pj.is_file():
        data = json.loads(pj.read_text())
        out["profile"] = {r["entry"]: r for r in data["rows"]}
        out["machine"] = data.get("machine")
    for e in spec.entries():
        m = spec.eval_dir(e.name, profile, root) / "metrics.json"
        if m.is_file():
            out["eval"][e.name] = json.loads(m.read_text())
    return out


def build_table(spec: TableSpec, results: Dict, tol: Dict) -> (List[Dict], List[str]):
    """Rows of the table and its numbered notes (published figures that the measurement contradicts).

    Video rows compare GFLOPs per view (one clip, one crop) and the total over the published test views
    (measured: per view x views); the paper publishes no video parameter counts."""
    rows, notes = [], []
    for e in spec.entries():
        prof = results["profile"].get(e.name)
        ev = results["eval"].get(e.name)
        pub_params, pub_acc = _num(e.row["params_m"]), _num(e.row[spec.accuracy])
        pub_gflops = _num(e.row["gflops_per_view"] if spec.video else e.row["gflops"])
        params = prof["params_m"] if prof else None
        gflops = prof["gflops"] if prof else None
        acc = ev[spec.accuracy] if ev else None
        source = ev.get("data_source", "unknown") if ev else None
        comparable = source in REAL_DATA_SOURCES
        video = _video_fields(e, gflops, ev, comparable) if spec.video else {}
        checks, problems = [], []
        if prof:
            note = (e.row.get("notes") or "").strip()
            n = notes.index(note) + 1 if note in notes else len(notes) + 1
            text, cite = flops_verdict(delta_pct(params, pub_params), delta_pct(gflops, pub_gflops), note,
                                       tol["flops_pct"], n, total_delta=video.get("gflops_total_delta_pct"),
                                       params_published=not spec.video)
            if cite and note not in notes:
                notes.append(note)
            checks += (["GFLOPs per view", "total"] if spec.video else ["params", "GFLOPs"])
            if text != "ok":
                problems.append(text)
        acc_delta = acc - pub_acc if acc is not None and pub_acc is not None else None
        if acc is not None and comparable:
            checks.append(spec.accuracy)
            if abs(acc_delta) > tol[spec.accuracy]:
                problems.append(f"{spec.accuracy} off by {acc_delta:+.2f}")
        if not checks:
            status = "not measured"
        elif problems:
            status = "; ".join(problems)
        else:
            status = "within tolerance (" + ", ".join(checks) + ")"
        fp32 = prof or {}
        rows.append({
            "entry": e.name, "model": e.label, "resolution": e.img_size,
            "token_labeling": e.row.get("token_labeling") == "yes",
            "params_m_published": pub_params, "params_m": params, "params_m_delta_pct": delta_pct(params, pub_params),
            "gflops_published": pub_gflops, "gflops": gflops, "gflops_delta_pct": delta_pct(gflops, pub_gflops),
            f"{spec.accuracy}_published": pub_acc, spec.accuracy: acc,
            f"{spec.accuracy}_delta": acc_delta if comparable else None,
            "img_per_s": fp32.get("fp32_img_s"), "gemm_frac": fp32.get("fp32_gemm_frac"),
            "data_source": (source if not ev or ev.get("img_size") in (None, e.img_size)
                            else f"{source} ({ev['img_size']} px)") if source else "–",
            **video,
            "verdict": status,
        })
    return rows, notes


def _video_fields(e, gflops_per_view: Optional[float], ev: Optional[Dict], comparable: bool) -> Dict:
    """Per-view x views totals, top-5, the clip protocol and class order of a video row."""
    views = e.views
    pub_total = _num(e.row["gflops"])
    total = gflops_per_view * views if gflops_per_view is not None else None
    top5_pub, top5 = _num(e.row.get("top5")), (ev or {}).get("top5")
    clip = (ev or {}).get("num_frames")
    return {
        "dataset": e.row["task"], "frames": e.num_frames,
        "stride": int(e.row["sampling_stride"]) if e.row.get("sampling_stride") else None,
        "views": views, "views_desc": f"{e.row['temporal_clips']}×{e.row['spatial_crops']}",
        "gflops_total_published": pub_total, "gflops_total": total,
        "gflops_total_delta_pct": delta_pct(total, pub_total),
        "top5_published": top5_pub, "top5": top5,
        "top5_delta": top5 - top5_pub if (top5 is not None and top5_pub is not None and comparable) else None,
        "class_index": (ev or {}).get("class_index") or "–",
        "eval_protocol": (f"{clip} frames, {ev.get('views')} views, {ev.get('crop_size')} px" if ev and clip
                          else "–"),
    }


def _fmt(v, spec="{:.2f}") -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return spec.format(v) if isinstance(v, float) else str(v)


def _triple(r: Dict, key: str, pct: bool, spec="{:.2f}") -> List[str]:
    d = r[f"{key}_delta_pct"] if pct else r[f"{key}_delta"]
    return [_fmt(r[f"{key}_published"], spec), _fmt(r[key], spec),
            "–" if d is None else (f"{d:+.1f}%" if pct else f"{d:+.2f}")]


COLUMNS = ["Model", "Res.", "TL", "Params (M) pub.", "meas.", "Δ", "GFLOPs pub.", "meas.", "Δ",
           "{acc} pub.", "meas.", "Δ", "img/s (fp32)", "of GEMM rate", "Accuracy data", "Verdict"]


def _cells(r: Dict, acc: str) -> List[str]:
    return ([r["model"], str(r["resolution"]), _fmt(r["token_labeling"])] + _triple(r, "params_m", True)
            + _triple(r, "gflops", True) + _triple(r, acc, False)
            + [_fmt(r["img_per_s"], "{:.3g}"), "–" if r["gemm_frac"] is None else f"{100 * r['gemm_frac']:.0f}%",
               r["data_source"], r["verdict"]])


VIDEO_COLUMNS = ["Model", "Data", "Frames", "Res.", "Views (clips×crops)", "Params (M) pub.", "meas.", "Δ",
                 "GFLOPs/view pub.", "meas.", "Δ", "GFLOPs total pub.", "meas. (×views)", "Δ", "Top-1 (%) pub.",
                 "meas.", "Δ", "Top-5 (%) pub.", "meas.", "Δ", "clips/s (fp32)", "of GEMM rate", "Accuracy data",
                 "Class order", "Verdict"]
DATA_ABBREV = {"kinetics400": "K400", "kinetics600": "K600", "ssv1": "SSV1", "ssv2": "SSV2"}


def _video_cells(r: Dict) -> List[str]:
    frames = f"{r['frames']}×{r['stride']}" if r["stride"] else f"{r['frames']} (segments)"
    return ([r["model"], DATA_ABBREV.get(r["dataset"], r["dataset"]), frames, str(r["resolution"]), r["views_desc"]]
            + _triple(r, "params_m", True) + _triple(r, "gflops", True) + _triple(r, "gflops_total", True)
            + _triple(r, "top1", False) + _triple(r, "top5", False)
            + [_fmt(r["img_per_s"], "{:.3g}"), "–" if r["gemm_frac"] is None else f"{100 * r['gemm_frac']:.0f}%",
               r["data_source"], r["class_index"], r["verdict"]])


def _columns(spec: TableSpec) -> List[str]:
    return VIDEO_COLUMNS if spec.video else [c.format(acc=spec.accuracy_label) for c in COLUMNS]


def _row_cells(spec: TableSpec, r: Dict) -> List[str]:
    return _video_cells(r) if spec.video else _cells(r, spec.accuracy)


def render_markdown(spec: TableSpec, rows: Sequence[Dict], notes: Sequence[str], header: Dict[str, str],
                    tol: Dict) -> str:
    cols = _columns(spec)
    lines = [f"# {spec.title}: published vs measured", ""]
    lines += [f"- **{k}:** {v}" for k, v in header.items()]
    lines += ["", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in _row_cells(spec, r)) + " |")
    lines += ["", f"Tolerances: params and GFLOPs within {tol['flops_pct']}% of the published figure; "
                  f"{spec.accuracy_label} within {tol[spec.accuracy]} points, compared only when measured on the "
                  f"real validation set (data source `{' / '.join(spec.datasets) if spec.video else REAL_DATA_SOURCES[0]}`)"
                  f"{'; the paper publishes no parameter counts for its video models' if spec.video else ''}. Accuracy on `synthetic-smoke` data proves the "
                  "pipeline works end to end; it is not comparable with the paper, so it has no Δ.",
              ("Params / GFLOPs: parameter count and fvcore multiply-adds (the paper's FLOPs) of one view (one clip "
               "of the entry's frames at its resolution); the paper publishes the total over its test views "
               "(temporal clips × spatial crops), so the measured total is per view × views. clips/s: fp32 "
               "inference throughput of one view on this machine, and the achieved 2·FLOPs·clips/s as a fraction of "
               "the fp32 GEMM rate measured in the same run. Class order: the class-index file the evaluation used "
               "(the published checkpoints' order is not alphabetical)." if spec.video else
               "Params / GFLOPs: parameter count and fvcore multiply-adds (the paper's FLOPs) for one image at the "
               "entry's resolution; img/s: fp32 inference throughput on this machine, and the achieved "
               "2·FLOPs·img/s as a fraction of the fp32 GEMM rate measured in the same run.")]
    for i, n in enumerate(notes, 1):
        lines.append(f"\n**Note {i}.** {n}")
    return "\n".join(lines) + "\n"


def render_csv(rows: Sequence[Dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def _tex_escape(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                 ("†", r"$^\dagger$"), ("Δ", r"$\Delta$"), ("–", "--"), ("·", r"$\cdot$"), ("×", r"$\times$"),
                 ("≠", r"$\neq$")):
        s = s.replace(a, b)
    return s


def render_latex(spec: TableSpec, rows: Sequence[Dict]) -> str:
    cols = _columns(spec)
    tail = 3 if spec.video else 2
    lines = [r"\begin{tabular}{l" + "r" * (len(cols) - 1 - tail) + "l" * tail + "}", r"\toprule",
             " & ".join(_tex_escape(c) for c in cols) + r" \\", r"\midrule"]
    for r in rows:
        lines.append(" & ".join(_tex_escape(c) for c in _row_cells(spec, r)) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def plot_accuracy_vs_gflops(spec: TableSpec, rows: Sequence[Dict], path: Path) -> None:
    """Like the paper's Figure 1: published points, and our measured GFLOPs (and accuracy where comparable)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acc = spec.accuracy
    g = "gflops_total" if spec.video else "gflops"  # video: over all test views, as the paper plots it
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    pub = [(r[f"{g}_published"], r[f"{acc}_published"], r) for r in rows
           if r[f"{g}_published"] is not None and r[f"{acc}_published"] is not None]
    ax.scatter([p[0] for p in pub], [p[1] for p in pub], marker="o", color="tab:blue", label="published")
    for x, y, r in pub:
        ax.annotate(r["model"].replace(" +TL", "+TL"), (x, y), fontsize=5, xytext=(2, 2), textcoords="offset points")
    meas = [(r[g], r[acc] if r[f"{acc}_delta"] is not None else r[f"{acc}_published"], r) for r in rows
            if r[g] is not None and r[f"{acc}_published"] is not None]
    ax.scatter([m[0] for m in meas], [m[1] for m in meas], marker="x", color="tab:red",
               label="measured GFLOPs (measured accuracy where on real val data)")
    published_at = {r["entry"]: (x, y) for x, y, r in pub}
    for xm, ym, rm in meas:
        xp, yp = published_at.get(rm["entry"], (xm, ym))
        if abs(xm - xp) / xp > 0.1:  # a published figure the measurement contradicts
            ax.annotate("", xy=(xm, ym), xytext=(xp, yp), arrowprops=dict(arrowstyle="->", color="tab:red", lw=0.8))
    ax.set_xscale("log")
    ax.set_xlabel("GFLOPs over all test views (multiply-adds, log scale)" if spec.video
                  else "GFLOPs (multiply-adds, log scale)")
    ax.set_ylabel(spec.accuracy_label)
    ax.set_title(f"{spec.title}: accuracy vs GFLOPs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    from ..io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
