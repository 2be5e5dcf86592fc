# report.smk — collects the per-step reports into reports/index.md.
# Later issues add train/eval reports to REPORT_FILES.

REPORT_FILES = [
    rules.profile_imagenet.output.md,
]


rule report_index:
    input:
        REPORT_FILES,
    output:
        f"{REPORTS}/index.md",
    run:
        lines = [f"# uniformer-bench reports (profile: {PROFILE_NAME})", ""]
        lines += [f"- [{Path(p).stem}]({Path(p).name})" for p in input]
        Path(output[0]).write_text("\n".join(lines) + "\n")


# Everything `make reproduce` / `snakemake` (rule all) produces.
rule reproduce_all:
    input:
        rules.report_index.output,
        rules.profile_imagenet.output,
