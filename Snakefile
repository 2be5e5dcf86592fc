# Snakefile — the uniformer-bench workflow: one target per paper table.
#
#   .venv/bin/snakemake -n reproduce_table_imagenet          # dry run: the DAG
#   .venv/bin/snakemake --cores all reproduce_table_imagenet # smoke profile: synthetic data, CPU, minutes
#   .venv/bin/snakemake --cores all reproduce_all --config settings=paper
#   .venv/bin/snakemake --workflow-profile workflow/profiles/slurm reproduce_all --config settings=paper
#
# Every knob lives in params.yaml (shared with dvc.yaml); rules only call the `uniformer` CLI.

configfile: "params.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/eval.smk"
include: "workflow/rules/profile.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        rules.reproduce_all.input,
