# profile.smk — params, FLOPs (video: per view, and x views), latency and throughput of every published entry.


rule profile:
    input:
        "uniformer/reference/paper_results.csv",
    output:
        json="results/profile/{table}/%s.json" % PROFILE_NAME,
        md="reports/models_{table}.md",
        csv="reports/models_{table}.csv",
    params:
        exe=UNIFORMER,
        out_dir=lambda w, output: Path(output.md).parent,
        models=lambda w: " ".join(table_cfg(w.table)["profile_models"]),
        settings=lambda w: config["profile"][PROFILE_NAME],  # listed so that a change re-runs profiling
    log:
        LOGS / "profile/{table}.log",
    threads: threads_all()
    resources:
        mem_mb=16000,
        runtime=lambda w: 15 if PROFILE_NAME == "smoke" else 12 * 60,
    shell:
        "{params.exe} profile --task {wildcards.table} --profile %s --out-dir {params.out_dir} --json {output.json}"
        " $([ -n '{params.models}' ] && echo --models {params.models}) --no-progress > {log} 2>&1" % PROFILE_NAME
