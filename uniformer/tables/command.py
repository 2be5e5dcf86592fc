"""``uniformer report <table>`` (tables and figure) and ``uniformer check`` (the CI regression gate)."""
import argparse
import datetime
import json
import sys
from pathlib import Path

from .. import io
from ..config import active_profile, add_settings_argument, load_params, section
from ..provenance import stale_reason
from .gate import compare, current_snapshot, format_table
from .report import build_table, load_results, plot_accuracy_vs_gflops, render_csv, render_latex, render_markdown
from .spec import RESULTS, TABLES, get_table


def _table_cfg(table: str, profile: str):
    return section(load_params(), "tables", profile, table)


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("table", choices=sorted(TABLES))
    add_settings_argument(p)
    p.add_argument("--results", type=Path, default=RESULTS, help="results root (default results/)")
    p.add_argument("--out-dir", type=Path, default=Path("reports"), help="where the tables go (default reports/)")


def run_report(args) -> int:
    spec = get_table(args.table)
    profile = active_profile(load_params(), args.profile)
    cfg = _table_cfg(args.table, profile)
    results = load_results(spec, profile, args.results)
    rows, notes = build_table(spec, results, cfg["tolerance"])
    machine = results["machine"] or {}
    gemm = machine.get("gemm", {}).get("fp32", {}).get("gflops_per_s")
    header = {
        "Profile": f"`{profile}` (mode `{cfg['mode']}`)",
        "Machine": f"{machine.get('cpu', 'not profiled')}, torch {machine.get('torch', '?')}"
                   + (f", fp32 GEMM rate {gemm:.4g} GFLOP/s" if gemm else ""),
        "Sources": f"published: paper_results.csv (primary rows); measured: {args.results}/{{profile,eval}}/"
                   f"{spec.name}/…",
        "Generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    stem = spec.report_stem(args.out_dir)
    io.write_text(stem.with_suffix(".md"), render_markdown(spec, rows, notes, header, cfg["tolerance"]))
    io.write_text(stem.with_suffix(".csv"), render_csv(rows))
    io.write_text(stem.with_suffix(".tex"), render_latex(spec, rows))
    plot_accuracy_vs_gflops(spec, rows, stem.parent / f"{spec.name}_acc_vs_gflops.png")
    # flat summary for `dvc metrics show / diff`
    io.write_json(stem.parent / f"{spec.name}_metrics.json", {
        r["entry"]: {k: r[k] for k in (spec.accuracy, "img_per_s", "gemm_frac", "gflops", "params_m")
                     + spec.task.summary_keys if r[k] is not None}
        for r in rows if r["verdict"] != "not measured"})
    measured = sum(r["verdict"] != "not measured" for r in rows)
    print(f"{stem}.md: {len(rows)} published entries, {measured} measured", file=sys.stderr)
    return 0


def add_check_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("table", nargs="?", default="imagenet", choices=sorted(TABLES))
    p.add_argument("--settings", "--profile", dest="profile", default="smoke",
                   help="whose results to gate (default smoke; --profile is the old name)")
    p.add_argument("--baseline", type=Path, help="baseline JSON (default reports/baselines/<table>_<profile>.json)")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--update-baseline", action="store_true", help="write the current results as the new baseline")


def stale_results(spec, settings: str, root: Path, params) -> dict:
    """{result file: why} for the table's eval and profile results this checkout would not have written."""
    stale = {}
    for entry in (e.name for e in spec.entries()):
        path = spec.eval_dir(entry, settings, root) / "metrics.json"
        if path.is_file():
            m = json.loads(path.read_text())
            why = stale_reason(m.get("provenance"), "eval", params, settings, m.get("dataset"))
            if why:
                stale[str(path)] = why
    path = spec.profile_json(settings, root)
    if path.is_file():
        why = stale_reason(json.loads(path.read_text()).get("provenance"), "profile", params, settings)
        if why:
            stale[str(path)] = why
    return stale


def run_check(args) -> int:
    spec = get_table(args.table)
    path = args.baseline or spec.baseline(args.profile)
    params = load_params()
    tol = section(params, "tables", args.profile, args.table)["gate"]
    current = current_snapshot(spec, args.profile, args.results)
    if not current["accuracy"] and not current["efficiency"]:
        print(f"error: no {args.profile} results for {spec.name} under {args.results}; run the pipeline first "
              f"(snakemake --cores all reproduce_table_{spec.name})", file=sys.stderr)
        return 2
    stale = stale_results(spec, args.profile, args.results, params)
    if args.update_baseline:
        if stale:
            print(f"error: refusing to make a baseline of stale results: {stale}", file=sys.stderr)
            return 1
        io.write_json(path, {"table": spec.name, "profile": args.profile, **current})
        print(f"baseline written: {path}")
        return 0
    if not path.is_file():
        print(f"error: {path}: no baseline; create it deliberately with --update-baseline", file=sys.stderr)
        return 2
    ok, rows = compare(current, json.loads(path.read_text()), tol, stale)
    print(format_table(rows))
    bound = (f"one-sided binomial bound at alpha {tol['alpha']} around the baseline and above chance"
             if "alpha" in tol else f"baseline - {tol['metric_drop']} points, floor {tol['floor']}")
    print(f"\nregression gate {'passed' if ok else 'FAILED'} (accuracy: {bound}; throughput/GEMM-rate drop ≤ "
          f"{100 * tol['efficiency_drop']:.0f}% per entry beyond the others' median shift, median shift ≤ "
          f"{100 * tol['machine_drop']:.0f}%; results made by this checkout's code and params)")
    return 0 if ok else 1
