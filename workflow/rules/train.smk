# train.smk — train from scratch with the active profile's recipe (mode `train`).
# Killed runs resume from last.pth (`--resume` continues only when a checkpoint is there).


rule train_imagenet:
    input:
        data=rules.check_imagenet.output,
    output:
        metrics="results/train/imagenet/{model}/%s/metrics.json" % PROFILE_NAME,
        checkpoint="results/train/imagenet/{model}/%s/last.pth" % PROFILE_NAME,
    params:
        launch=lambda w, resources: launcher(resources.gpu),
        out=lambda w, output: Path(output.metrics).parent,
        root=lambda w: data_cfg("imagenet")["root"],
        recipe=lambda w: train_cfg("imagenet"),  # listed so that a recipe change re-runs training
    log:
        LOGS / "train/imagenet_{model}.log",
    threads: threads_all()
    resources:
        mem_mb=16000,
        runtime=lambda w: 30 if PROFILE_NAME == "smoke" else 4 * 24 * 60,
        gpu=lambda w: 0 if PROFILE_NAME == "smoke" else 8,
    shell:
        "{params.launch} train imagenet --model {wildcards.model} --profile %s --data-root {params.root}"
        " --out {params.out} --resume --no-progress > {log} 2>&1" % PROFILE_NAME
