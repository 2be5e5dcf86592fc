# data.smk — the data set of each table: synthetic (smoke) or the user's real copy, always validated.


rule synth_imagenet:
    output:
        manifest="data/synthetic/imagenet/manifest.json",
    params:
        exe=UNIFORMER,
        out=lambda w, output: Path(output.manifest).parent,
        synth=lambda w: config["data"]["imagenet"]["smoke"]["synth"],
    log:
        LOGS / "data/synth_imagenet.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "{params.exe} data synth imagenet --out {params.out} --classes {params.synth[classes]}"
        " --train-per-class {params.synth[train_per_class]} --val-per-class {params.synth[val_per_class]}"
        " --size {params.synth[size]} --seed {params.synth[seed]} > {log} 2>&1"


def imagenet_data_input(wildcards):
    """The smoke profile's synthetic set is generated; a real data set is only checked."""
    root = Path(data_cfg("imagenet")["root"])
    if "synth" in data_cfg("imagenet"):
        return [str(root / "manifest.json")]
    return []


rule check_imagenet:
    input:
        imagenet_data_input,
    output:
        f"results/data/imagenet/{PROFILE_NAME}.check.txt",
    params:
        exe=UNIFORMER,
        root=lambda w: data_cfg("imagenet")["root"],
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
    shell:
        "{params.exe} data check imagenet --root {params.root} > {output}.tmp && mv {output}.tmp {output}"
