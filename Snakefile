# Snakefile — the uniformer-bench workflow (one workflow for image, video and
# dense tasks; only the model-profiling step exists so far).
#
#   .venv/bin/snakemake -n                     # dry run: show the DAG
#   .venv/bin/snakemake --cores all            # run with the active profile (params.yaml: profile_name)
#   .venv/bin/snakemake --cores all --config profile_name=paper
#   .venv/bin/snakemake --executor slurm --jobs 8 --config profile_name=paper   # on a cluster
#
# Parameters live in params.yaml (shared with dvc.yaml); rules in workflow/rules/.

configfile: "params.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/profile.smk"
include: "workflow/rules/report.smk"


# Default target: everything the active profile reproduces.
rule all:
    default_target: True
    input:
        rules.reproduce_all.input,
