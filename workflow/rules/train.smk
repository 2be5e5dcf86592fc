# train.smk — train from scratch (or from the recipe's init checkpoint) with the active profile's recipe
# (mode `train`). Killed runs resume from last.pth (`--resume` continues only when a checkpoint is there).


rule train:
    input:
        data=lambda w: check_file(trained(w.table)[w.item]),
    output:
        metrics="results/train/{table}/{item}/%s/metrics.json" % PROFILE_NAME,
        checkpoint="results/train/{table}/{item}/%s/last.pth" % PROFILE_NAME,
    params:
        launch=lambda w, resources: launcher(resources.gpu),
        dataset=lambda w: trained(w.table)[w.item],
        out=lambda w, output: Path(output.metrics).parent,
        root=lambda w: data_cfg(trained(w.table)[w.item])["root"],
        recipe=lambda w: train_cfg(trained(w.table)[w.item]),  # listed so that a recipe change re-runs training
    log:
        LOGS / "train/{table}_{item}.log",
    threads: threads_all()
    resources:
        mem_mb=16000,
        runtime=lambda w: 30 if PROFILE_NAME == "smoke" else 4 * 24 * 60,
        gpu=lambda w: 0 if PROFILE_NAME == "smoke" else 8,
    shell:
        "{params.launch} train {params.dataset} --model {wildcards.item} --profile %s --data-root {params.root}"
        " --out {params.out} --resume --no-progress > {log} 2>&1" % PROFILE_NAME
