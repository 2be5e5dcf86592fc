# train.smk — train from scratch (or from the recipe's init checkpoint) with the active settings' recipe
# (mode `train`). The declared output is metrics.json alone: last.pth, rewritten after every epoch, is no
# output, so Snakemake never deletes it before re-running the job, and a killed run resumes from it (a
# changed recipe or training code starts afresh; `uniformer train --resume` checks and says which).


rule train:
    input:
        data=lambda w: check_file(dataset_of("train", w.table, w.item)),
        code=TRAINING_CODE,
    output:
        metrics="results/train/{table}/{item}/%s/metrics.json" % SETTINGS,
    params:
        cmd=lambda w: shell_cmd("train", w.table, w.item),
        # listed so that a recipe change re-runs training
        recipe=lambda w: config["train"][dataset_of("train", w.table, w.item)][SETTINGS],
    log:
        LOGS / "train/{table}_{item}.log",
    threads: threads_all()
    resources:
        mem_mb=16000,
        runtime=lambda w: 30 if SETTINGS == "smoke" else 4 * 24 * 60,
        gpu=lambda w: gpus("train", w.table),
    shell:
        "{params.cmd} > {log} 2>&1"
