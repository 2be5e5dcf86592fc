# report.smk — the paper tables, regenerated from the result files, and the per-table targets.


rule report_imagenet:
    input:
        profile=rules.profile_imagenet.output.json,
        evals=lambda w: expand("results/eval/imagenet/{entry}/%s/metrics.json" % PROFILE_NAME,
                               entry=evaluated("imagenet")),
    output:
        md="reports/imagenet.md",
        csv="reports/imagenet.csv",
        tex="reports/imagenet.tex",
        png="reports/imagenet_acc_vs_gflops.png",
        metrics="reports/imagenet_metrics.json",
    params:
        exe=UNIFORMER,
        table=lambda w: table_cfg("imagenet"),
    log:
        LOGS / "report/imagenet.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    shell:
        "{params.exe} report imagenet --profile %s --out-dir reports > {log} 2>&1" % PROFILE_NAME


rule reproduce_table_imagenet:
    input:
        rules.report_imagenet.output,


# Every table of the paper reproduced so far; later tables (video, dense) add themselves here.
rule reproduce_all:
    input:
        rules.reproduce_table_imagenet.input,
