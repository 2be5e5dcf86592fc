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

from ..io import atomic_path
from ..profiling.report import delta_pct, verdict as flops_verdict
from ..tasks import Column, TableSpec, get_dataset


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

    The table's task says which published GFLOPs figure one measured forward pass is compared with (video:
    per view, plus the total over the published test views) and adds its own fields (``Task.report_fields``)."""
    task, acc_key = spec.task, spec.accuracy
    real = spec.real_sources()
    rows, notes = [], []
    for e in spec.entries():
        prof = results["profile"].get(e.name)
        ev = results["eval"].get(e.name)
        pub_params, pub_acc = _num(e.row.get("params_m")), _num(e.row.get(acc_key))
        pub_gflops = _num(e.row.get(task.gflops_column))
        params = prof["params_m"] if prof else None
        gflops = prof["gflops"] if prof else None
        acc = task.table_metric(spec, ev) if ev else None
        source = ev.get("data_source", "unknown") if ev else None
        comparable = source in real
        extra = task.report_fields(spec, e, prof, ev, comparable)
        checks, problems = [], []
        if prof:
            note = task.errata.get(e.name) or (e.row.get("notes") or "").strip()
            n = notes.index(note) + 1 if note in notes else len(notes) + 1
            text, cite = flops_verdict(delta_pct(params, pub_params), delta_pct(gflops, pub_gflops), note,
                                       tol["flops_pct"], n, total_delta=extra.get("gflops_total_delta_pct"),
                                       params_published=task.params_published)
            if cite and note not in notes:
                notes.append(note)
            checks += list(task.flops_checks)
            if text != "ok":
                problems.append(text)
        acc_delta = acc - pub_acc if acc is not None and pub_acc is not None else None
        if acc is not None and comparable:
            checks.append(acc_key)
            if abs(acc_delta) > tol[acc_key]:
                problems.append(f"{acc_key} off by {acc_delta:+.2f}")
        if not checks:
            status = "not measured"
        elif problems:
            status = "; ".join(problems)
        else:
            status = "within tolerance (" + ", ".join(checks) + ")"
        fp32 = prof or {}
        label = e.label
        if ev and ev.get("model_kwargs"):  # not the published network (e.g. fewer blocks in a smoke run)
            label += " [" + ", ".join(f"{k}={v}" for k, v in ev["model_kwargs"].items()) + "]"
        if ev and ev.get("token_labels"):  # a TL model of ours: trained on token-label maps or without them
            label += f" [token labels: {ev['token_labels']}]"
        rows.append({
            "entry": e.name, "model": label, "resolution": e.img_size,
            "token_labeling": e.row.get("token_labeling") == "yes",
            "params_m_published": pub_params, "params_m": params, "params_m_delta_pct": delta_pct(params, pub_params),
            "gflops_published": pub_gflops, "gflops": gflops, "gflops_delta_pct": delta_pct(gflops, pub_gflops),
            f"{acc_key}_published": pub_acc, acc_key: acc,
            f"{acc_key}_delta": acc_delta if comparable else None,
            "img_per_s": fp32.get("fp32_img_s"), "gemm_frac": fp32.get("fp32_gemm_frac"),
            "data_source": (source if not ev or ev.get("img_size") in (None, e.img_size)
                            else f"{source} ({ev['img_size']} px)") if source else "–",
            **extra,
            "verdict": status,
        })
        if ev and not comparable:  # what a synthetic accuracy is worth: its class count, chance level and size
            k = int(ev.get("classes_in_val") or ev.get("num_classes") or 0)
            chance = task.chance_level(k) if k else None
            if k:
                rows[-1]["data_source"] += (f"; {k} {task.output_noun}" + ("" if chance is None else f", chance {chance:.1f}%")
                                            + f", n={ev.get('samples')}")
            if 0 < k <= 5 and "top5" in rows[-1]:  # top-5 of at most 5 classes is 100% by construction
                rows[-1]["top5"] = None
    return rows, notes


def _fmt(v, fmt="{:.2f}") -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return fmt.format(v) if isinstance(v, float) else str(v)


def _headers(col: Column) -> List[str]:
    return [f"{col.header} pub.", col.measured, "Δ"] if col.compare else [col.header]


def _cells(col: Column, r: Dict) -> List[str]:
    if col.cell is not None:
        return [col.cell(r)]
    if not col.compare:
        return [_fmt(r[col.key], col.fmt)]
    pct = col.compare == "pct"
    d = r[f"{col.key}_delta_pct"] if pct else r[f"{col.key}_delta"]
    return [_fmt(r[f"{col.key}_published"], col.fmt), _fmt(r[col.key], col.fmt),
            "–" if d is None else (f"{d:+.1f}%" if pct else f"{d:+.2f}")]


def _columns(spec: TableSpec) -> List[str]:
    return [h for c in spec.task.report_columns(spec) for h in _headers(c)]


def _row_cells(spec: TableSpec, r: Dict) -> List[str]:
    return [cell for c in spec.task.report_columns(spec) for cell in _cells(c, r)]


def render_markdown(spec: TableSpec, rows: Sequence[Dict], notes: Sequence[str], header: Dict[str, str],
                    tol: Dict) -> str:
    cols = _columns(spec)
    lines = [f"# {spec.title}: published vs measured", ""]
    lines += [f"- **{k}:** {v}" for k, v in header.items()]
    lines += ["", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in _row_cells(spec, r)) + " |")
    sources = " / ".join(get_dataset(d).real_sources[0] for d in spec.datasets if get_dataset(d).real_sources)
    lines += ["", f"Tolerances: params and GFLOPs within {tol['flops_pct']}% of the published figure; "
                  f"{spec.accuracy_label} within {tol[spec.accuracy]} points, compared only when measured on the "
                  f"real validation set (data source `{sources}`){spec.task.report_caveat}. Accuracy on "
                  "synthetic data (`synthetic (…)`) proves the pipeline works end to end; it is not comparable "
                  "with the paper, so it has no Δ.",
              spec.task.report_legend]
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
    columns = spec.task.report_columns(spec)
    cols = _columns(spec)
    align = "".join(c.align * len(_headers(c)) for c in columns)
    lines = [r"\begin{tabular}{" + align + "}", r"\toprule",
             " & ".join(_tex_escape(c) for c in cols) + r" \\", r"\midrule"]
    for r in rows:
        lines.append(" & ".join(_tex_escape(c) for c in _row_cells(spec, r)) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def plot_accuracy_vs_gflops(spec: TableSpec, rows: Sequence[Dict], path: Path) -> None:
    """Like the paper's Figure 1: published points, and our measured GFLOPs (and accuracy where comparable)."""
    import matplotlib  # lazy: only the figure needs it (`uniformer check` reads the results too)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acc = spec.accuracy
    g = spec.task.plot_gflops
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
    if pub or meas:  # a table nobody profiled yet has no GFLOPs to put on a log axis
        ax.set_xscale("log")
    ax.set_xlabel(spec.task.plot_xlabel)
    ax.set_ylabel(spec.accuracy_label)
    ax.set_title(f"{spec.title}: accuracy vs GFLOPs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
