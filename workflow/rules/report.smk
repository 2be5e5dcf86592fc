# report.smk — the paper tables, regenerated from the result files, and the per-table targets.


def table_results(table):
    """The result files a table is built from: its profile and the eval metrics of every evaluated entry."""
    return ["results/profile/%s/%s.json" % (table, PROFILE_NAME)] + expand(
        "results/eval/{table}/{entry}/%s/metrics.json" % PROFILE_NAME, table=table, entry=evaluated(table))


rule report:
    input:
        lambda w: table_results(w.table),
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
        table_results("imagenet"),  # so that a clone whose committed reports look newer still runs the pipeline


rule reproduce_table_kinetics:
    input:
        expand(rules.report.output, table="kinetics"),
        table_results("kinetics"),  # so that a clone whose committed reports look newer still runs the pipeline


rule reproduce_table_something:
    input:
        expand(rules.report.output, table="something"),
        table_results("something"),  # so that a clone whose committed reports look newer still runs the pipeline


# Every table of the paper reproduced so far; later tables (dense tasks) add themselves here.
rule reproduce_all:
    input:
        rules.reproduce_table_imagenet.input,
        rules.reproduce_table_kinetics.input,
        rules.reproduce_table_something.input,
