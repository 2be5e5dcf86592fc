# eval.smk — evaluate each entry the active profile measures: our trained model (mode `train`) or an
# official checkpoint the user downloaded (mode `checkpoints`).


rule eval_imagenet:
    input:
        data=rules.check_imagenet.output,
        checkpoint=lambda w: evaluated("imagenet")[w.entry][1],
    output:
        metrics="results/eval/imagenet/{entry}/%s/metrics.json" % PROFILE_NAME,
    params:
        exe=UNIFORMER,
        model=lambda w: evaluated("imagenet")[w.entry][0],
        out=lambda w, output: Path(output.metrics).parent,
        root=lambda w: data_cfg("imagenet")["root"],
    log:
        LOGS / "eval/imagenet_{entry}.log",
    threads: threads_all()
    resources:
        mem_mb=8000,
        runtime=lambda w: 10 if PROFILE_NAME == "smoke" else 120,
        gpu=lambda w: 0 if PROFILE_NAME == "smoke" else 1,
    shell:
        "{params.exe} eval imagenet --model {params.model} --checkpoint {input.checkpoint} --profile %s"
        " --data-root {params.root} --out {params.out} --no-progress > {log} 2>&1" % PROFILE_NAME
