# eval.smk — evaluate each entry the active settings measure: our trained model (mode `train`; it waits for the
# training run's metrics.json) or an official checkpoint the user downloaded (mode `checkpoints`); video entries
# with all published views.


rule eval:
    input:
        data=lambda w: check_file(dataset_of("eval", w.table, w.entry)),
        checkpoint=lambda w: W.eval_input(arg_of("eval", w.table, w.entry, "--checkpoint")),
        code=TRAINING_CODE,
    output:
        metrics="results/eval/{table}/{entry}/%s/metrics.json" % SETTINGS,
    params:
        cmd=lambda w: shell_cmd("eval", w.table, w.entry),
        # listed so that a change of the evaluation settings re-runs it
        settings=lambda w: config["eval"][dataset_of("eval", w.table, w.entry)][SETTINGS],
    log:
        LOGS / "eval/{table}_{entry}.log",
    threads: threads_all()
    resources:
        mem_mb=8000,
        runtime=lambda w: 10 if SETTINGS == "smoke" else 12 * 60,
        gpu=lambda w: gpus("eval", w.table),
    shell:
        "{params.cmd} > {log} 2>&1"
