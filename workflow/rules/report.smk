# report.smk — the paper tables, regenerated from the result files, and the per-table targets.


rule report:
    input:
        profile="results/profile/{table}/%s.json" % PROFILE_NAME,
        evals=lambda w: expand("results/eval/{table}/{entry}/%s/metrics.json" % PROFILE_NAME, table=w.table,
                               entry=evaluated(w.table)),
    output:
        md="reports/{table}.md",
        csv="reports/{table}.csv",
        tex="reports/{table}.tex",
        png="reports/{table}_acc_vs_gflops.png",
        metrics="reports/{table}_metrics.json",
    params:
        exe=UNIFORMER,
        table=lambda w: table_cfg(w.table),
    log:
        LOGS / "report/{table}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    shell:
        "{params.exe} report {wildcards.table} --profile %s --out-dir reports > {log} 2>&1" % PROFILE_NAME


rule reproduce_table_imagenet:
    input:
        expand(rules.report.output, table="imagenet"),


rule reproduce_table_kinetics:
    input:
        expand(rules.report.output, table="kinetics"),


rule reproduce_table_something:
    input:
        expand(rules.report.output, table="something"),


# Every table of the paper reproduced so far; later tables (dense tasks) add themselves here.
rule reproduce_all:
    input:
        rules.reproduce_table_imagenet.input,
        rules.reproduce_table_kinetics.input,
        rules.reproduce_table_something.input,
