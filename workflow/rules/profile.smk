# profile.smk — model profiling (params, FLOPs, throughput, latency).
# Same command as the `profile_imagenet` stage in dvc.yaml.


rule profile_imagenet:
    input:
        "uniformer/reference/paper_results.csv",
    output:
        md=f"{REPORTS}/models_imagenet.md",
        csv=f"{REPORTS}/models_imagenet.csv",
    params:
        exe=UNIFORMER,
        out_dir=lambda wildcards, output: Path(output.md).parent,
        # Not passed on the command line (the CLI reads params.yaml itself);
        # listed so that editing the active profile re-triggers the rule.
        profile=PROFILE,
        profile_name=PROFILE_NAME,
    log:
        f"{LOGS}/profile_imagenet.log",
    threads: profile_threads()
    resources:
        mem_mb=16000,
        runtime=profile_runtime_min("imagenet"),
    shell:
        "{params.exe} profile --task imagenet --out-dir {params.out_dir} > {log} 2>&1"
