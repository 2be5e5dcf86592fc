# profile.smk — params, FLOPs (video: per view, and x views), latency and throughput of every published entry.


rule profile:
    input:
        "uniformer/reference/paper_results.csv",
        code("models", "profiling", "tasks"),
    output:
        json="results/profile/{table}/%s.json" % SETTINGS,
        md="reports/models_{table}.md",
        csv="reports/models_{table}.csv",
    params:
        cmd=lambda w: shell_cmd("profile", w.table, w.table),
        settings=lambda w: config["profiling"][SETTINGS],  # listed so that a change re-runs profiling
    log:
        LOGS / "profile/{table}.log",
    threads: threads_all()
    resources:
        mem_mb=16000,
        runtime=lambda w: 15 if SETTINGS == "smoke" else 12 * 60,
        gpu=lambda w: gpus("profile", w.table),
    shell:
        "{params.cmd} > {log} 2>&1"
