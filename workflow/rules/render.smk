"""Stage 8, render: figures, LaTeX tables, the numbers the text quotes, and the compiled paper."""


rule render:
    input:
        unpack(render_inputs),
    output:
        **{
            name: report(path, caption=f"../report/{name}.rst", category="Figures")
            for name, path in FIGURES.items()
        },
        **TABLES,
    log:
        "logs/render/render.log",
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        judge=lambda w: primary_judge(),
        primary=lambda w: primary_capability(),
        excluded=config["analysis"]["exclude_models"],
        no_entropy=lambda w: without_entropy(config["models"], entropy_models()),
        planted_rho=lambda w: zoo_planted_rho(),
    script:
        "../scripts/render.py"


rule paper:
    input:
        tex="paper/main.tex",
        bib="paper/refs.bib",
        figures=list(FIGURES.values()),
        tables=list(TABLES.values()),
    output:
        pdf=report("results/paper/main.pdf", caption="../report/paper.rst", category="Paper"),
    log:
        "logs/render/paper.log",
    conda:
        "../../envs/paper.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/paper.py"
