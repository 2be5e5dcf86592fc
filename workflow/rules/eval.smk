# eval.smk — evaluate each entry the active profile measures: our trained model (mode `train`) or an
# official checkpoint the user downloaded (mode `checkpoints`); video entries with all published views.


rule eval:
    input:
        data=lambda w: check_file(evaluated(w.table)[w.entry][2]),
        checkpoint=lambda w: evaluated(w.table)[w.entry][1],
    output:
        metrics="results/eval/{table}/{entry}/%s/metrics.json" % PROFILE_NAME,
    params:
        exe=UNIFORMER,
        model=lambda w: evaluated(w.table)[w.entry][0],
        dataset=lambda w: evaluated(w.table)[w.entry][2],
        out=lambda w, output: Path(output.metrics).parent,
        root=lambda w: data_cfg(evaluated(w.table)[w.entry][2])["root"],
        settings=lambda w: config["eval"][evaluated(w.table)[w.entry][2]][PROFILE_NAME],
    log:
        LOGS / "eval/{table}_{entry}.log",
    threads: threads_all()
    resources:
        mem_mb=8000,
        runtime=lambda w: 10 if PROFILE_NAME == "smoke" else 12 * 60,
        gpu=lambda w: 0 if PROFILE_NAME == "smoke" else 1,
    shell:
        "{params.exe} eval {params.dataset} --model {params.model} --checkpoint {input.checkpoint} --profile %s"
        " --data-root {params.root} --out {params.out} --no-progress > {log} 2>&1" % PROFILE_NAME
