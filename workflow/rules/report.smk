# report.smk — the paper tables, regenerated from the result files, and one target per table.


def table_results(table):
    """The result files a table is built from: its profile and the eval metrics of every evaluated entry."""
    return ["results/profile/%s/%s.json" % (table, SETTINGS)] + expand(
        "results/eval/{table}/{entry}/%s/metrics.json" % SETTINGS, table=table, entry=evaluated(table))


rule report:
    input:
        lambda w: table_results(w.table),
        code("tables", "tasks"),
    output:
        md="reports/{table}.md",
        csv="reports/{table}.csv",
        tex="reports/{table}.tex",
        png="reports/{table}_acc_vs_gflops.png",
        metrics="reports/{table}_metrics.json",
    params:
        cmd=lambda w: shell_cmd("report", w.table, w.table),
        table=lambda w: config["tables"][w.table][SETTINGS],  # listed so that a change re-builds the table
    log:
        LOGS / "report/{table}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    shell:
        "{params.cmd} > {log} 2>&1"


# reproduce_table_<table> for every registered table; the table's result files are inputs too, so that a clone
# whose committed reports look newer than their inputs still runs the pipeline.
for _table in TABLE_NAMES:

    rule:
        name:
            f"reproduce_table_{_table}"
        input:
            expand(rules.report.output, table=_table),
            table_results(_table),


rule reproduce_all:
    input:
        [f"reports/{t}.md" for t in TABLE_NAMES] + [f for t in TABLE_NAMES for f in table_results(t)],
