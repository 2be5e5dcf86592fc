# data.smk — the data sets of each table: synthetic (smoke) or the user's real copy, always validated.

SYNTH_ROOTS = {data_cfg(d)["root"]: d for t in TABLE_NAMES for d in get_table(t).datasets
               if "synth" in data_cfg(d)}


rule synth_data:
    output:
        manifest="{root}/manifest.json",
    wildcard_constraints:
        root="|".join(SYNTH_ROOTS) or "no-synthetic-set",
    params:
        cmd=lambda w: shell_cmd("data", table_of_dataset(SYNTH_ROOTS[w.root]), SYNTH_ROOTS[w.root], 0),
        synth=lambda w: data_cfg(SYNTH_ROOTS[w.root])["synth"],  # listed so that a change re-writes the set
    log:
        LOGS / "data/synth_{root}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "{params.cmd} > {log} 2>&1"


def synth_input(wildcards):
    """The smoke settings' synthetic set is generated; a real data set is only checked."""
    cfg = data_cfg(wildcards.dataset)
    return [str(Path(cfg["root"]) / "manifest.json")] if "synth" in cfg else []


rule check_data:
    input:
        synth_input,
    output:
        "results/data/{dataset}/%s.check.txt" % SETTINGS,
    params:
        cmd=lambda w: shell_cmd("data", table_of_dataset(w.dataset), w.dataset),
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
    shell:
        "{params.cmd} > {output}.tmp && mv {output}.tmp {output}"
