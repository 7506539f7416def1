"""The workflow itself, run by Snakemake in a fresh copy of the project (no shared state)."""

import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

from conftest import snakemake, write_extracted

pytestmark = pytest.mark.workflow


def test_lint_is_clean(project):
    result = snakemake(project, "--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition!" in result.stderr


def test_figure_target_plans_just_what_it_needs(project):
    """The README's single-figure command, planned from a clean copy: the figure's own chain and
    nothing else (the default run builds the same jobs for real)."""
    result = snakemake(project, "results/figures/asr_vs_reasoning.pdf", "-n", "--quiet", "rules")
    assert result.returncode == 0, result.stderr
    planned = dict(re.findall(r"^(\w+)\s+(\d+)$", result.stdout + result.stderr, flags=re.M))
    for needed in ("generate", "judge", "asr", "capability", "correlation", "render"):
        assert needed in planned, (needed, planned)
    for unneeded in ("paper", "export_mir", "all"):
        assert unneeded not in planned, (unneeded, planned)


def test_sample_manifest_target_from_a_clean_copy(project):
    result = snakemake(project, "results/data/sample/manifest.json")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((project / "results/data/sample/manifest.json").read_text())
    assert manifest["counts"]["total"] == 108
    assert manifest["count_check"]["status"] == "ok"
    assert "prepared 108 instance(s)" in (project / "logs/data/prepare_sample.log").read_text()
    again = snakemake(project, "results/data/sample/manifest.json")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_unknown_config_key_stops_the_run_by_name(project):
    result = snakemake(project, "-n", "--config", "dataset={'nmae': 'mir'}")
    assert result.returncode != 0
    assert "unknown config key 'dataset.nmae'" in result.stdout + result.stderr


def test_unreachable_hub_fails_at_once_without_leaking_the_token(project):
    secret = "hf_workflowTestSecret123"
    env = {**os.environ, "HF_TOKEN": secret, "HF_ENDPOINT": "http://127.0.0.1:9",
           "HF_HOME": str(project / "hf-home")}
    result = snakemake(project, "--config", "dataset={'name': 'mir'}", env=env)
    assert result.returncode != 0
    log = (project / "logs/data/download_dataset.log").read_text()
    assert "cannot be reached" in log
    assert "dataset.name: sample" in log and "dataset.local_path" in log
    everything = result.stdout + result.stderr + "".join(
        p.read_text(errors="replace") for p in project.rglob("*.log")
    )
    assert secret not in everything
    assert not (project / "results/raw/mir").exists()


def test_local_copy_in_the_authors_layout_is_prepared(project, tmp_path, tiny_records):
    local = write_extracted(tiny_records, tmp_path / "MIR-extracted")
    config = {"dataset": {"name": "mir", "local_path": str(local),
                          "check_published_counts": False}}
    (project / "local.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(project, "--configfile", "local.yaml")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((project / "results/data/mir/manifest.json").read_text())
    assert manifest["source"]["kind"] == "extracted"
    assert manifest["count_check"]["status"] == "mismatch"
    assert "count differs" in (project / "logs/data/prepare_mir.log").read_text()


def test_bad_local_copy_fails_and_leaves_no_declared_output(project, tmp_path, tiny_records):
    tiny_records[3]["images"][0] = {"bytes": b"", "path": None}
    local = write_extracted(tiny_records, tmp_path / "bad")
    config = {"dataset": {"name": "mir", "local_path": str(local),
                          "check_published_counts": False}}
    (project / "bad.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(project, "--configfile", "bad.yaml")
    assert result.returncode != 0
    assert "is empty (0 bytes)" in (project / "logs/data/prepare_mir.log").read_text()
    assert not (project / "results/data/mir").exists() or not any(
        (project / "results/data/mir").iterdir()
    )


def without_token():
    return {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}


def test_study_config_dry_run_plans_every_shard(project):
    result = snakemake(project, "-n", "--configfile", "config/study.yaml", env=without_token())
    assert result.returncode == 0, result.stderr
    table = result.stdout + result.stderr
    study = yaml.safe_load((project / "config/study.yaml").read_text())
    # an entropy pass, one per shard, for each model entropy.models names (whatever engine
    # generated its answers; API models have none)
    local = sum(study["models"][name]["shards"] for name in study["entropy"]["models"])
    runs = sum(m["shards"] * len(m.get("conditions", ["multi_image"]))
               for m in study["models"].values())
    assert re.search(rf"^generate\s+{runs}$", table, flags=re.M)
    assert re.search(rf"^entropy\s+{local}$", table, flags=re.M)
    for rule in ("download_dataset", "capability", "render", "paper"):
        assert re.search(rf"^{rule}\s+1$", table, flags=re.M), rule


def test_default_run_generates_judges_and_tabulates_every_zoo_model(default_run):
    project = default_run
    config = yaml.safe_load((project / "config.yaml").read_text())
    controls = [m for m in config["models"].values() if len(m["conditions"]) == 4]
    assert len(controls) == 2, "two zoo models run the paper's three controls"
    for name, model in config["models"].items():
        for condition in model["conditions"]:
            lines = []
            for k in range(model["shards"]):
                shard = (project / "results/generations" / name / condition
                         / f"{k:03d}-of-{model['shards']:03d}")
                lines += shard.with_suffix(".jsonl").read_text().splitlines()
                meta = json.loads(shard.with_suffix(".meta.json").read_text())
                assert meta["model_name"] == name and meta["condition"] == condition
                assert meta["weights"]["zoo"] == model["weights"]["zoo"]
            records = [json.loads(x) for x in lines]
            assert len(records) == 108 and len({r["uid"] for r in records}) == 108
            assert all(r["status"] == "ok" and r["condition"] == condition for r in records)
            given = {r["images_given"] for r in records}
            expected = {"multi_image": {2, 3, 4}, "single_image": {1}}.get(condition, {0})
            assert given == expected, (condition, given)
            if condition == "multi_image":
                assert all(r["image_tokens"] > 0 for r in records)
                captured = [r["entropy"] is not None for r in records]
                assert all(captured) if model.get("entropy_capture") else not any(captured)
    paired = (project / "results/asr/tiny-harmbench/conditions_paired.csv").read_text()
    assert paired.count(",ALL,") == 3 * len(controls)
    audit = (project / "results/analysis/judge_vs_people.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in audit[1:]] == ["refusal", "tiny-harmbench"]
    for judge in config["judges"]:
        rows = (project / f"results/asr/{judge}/asr.csv").read_text().splitlines()
        per_model = [r.split(",") for r in rows if r.startswith("model,")]
        assert {r[1] for r in per_model} == set(config["models"])
        assert all(int(r[4]) + int(r[5]) + int(r[6]) == 108 for r in per_model)
    agreement = (project / "results/asr/judge_agreement.csv").read_text().splitlines()
    multi_image = 108 * len(config["models"])  # the judges are compared on the benchmark's answers
    assert agreement[1].startswith(f"refusal,tiny-harmbench,{multi_image},")
    assert (project / "results/mir_export/tiny-harmbench/statics_check.json").exists()
    entropy = (project / "results/analysis/tiny-harmbench/entropy_comparison.csv").read_text()
    assert entropy.count("zoo-") == len(config["models"])


def test_paper_quotes_the_generated_numbers(default_run):
    """The compiled PDF's text holds every number of numbers.tex (nothing typed by hand)."""
    numbers = (default_run / "results/tables/numbers.tex").read_text()
    values = re.findall(r"\\newcommand\{\\\w+\}\{(.*)\}$", numbers, flags=re.M)
    text = subprocess.run(["pdftotext", "-layout", str(default_run / "results/paper/main.pdf"),
                           "-"], capture_output=True, text=True, check=True).stdout
    numeric = [v.replace("\\%", "%").replace("{,}", ",") for v in values
               if re.fullmatch(r"[0-9.,]+(\\%)?", v)]
    text = " ".join(text.split())
    assert len(numeric) > 10 and [v for v in numeric if v not in text] == []


def test_exported_results_come_back_through_mir_import(default_run, tmp_path):
    """Export in the authors' layout, import as a new model and judge: same ASR. Runs in a copy
    of the default run, so only the imported model's jobs run."""
    project = tmp_path / "project"
    shutil.copytree(default_run, project, symlinks=True)
    config = yaml.safe_load((project / "config.yaml").read_text())
    exported = next(iter(config["models"]))
    export = project / "results/mir_export/refusal"
    assert snakemake(project, "results/mir_export/refusal").returncode == 0
    assert (export / "infer" / exported).is_dir(), "every model is exported"
    config["models"]["reimported"] = {
        "backend": "mir_import",
        "mir_import": {"infer_dir": str(export / "infer"), "model_dir": exported},
    }
    config["judges"]["mir-refusal"] = {"kind": "mir_import",
                                       "mir_import": {"harmbench_dir": str(export / "harmbench")}}
    # keys in their order: a reordered registry entry is a changed param, which would retrain
    # the zoo and redo every job after it
    (project / "roundtrip.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    targets = ["results/asr/mir-refusal/asr.csv", "results/asr/refusal/asr.csv"]
    result = snakemake(project, *targets, "--configfile", "roundtrip.yaml")
    assert result.returncode == 0, result.stderr

    def rates(judge, model):
        rows = (project / f"results/asr/{judge}/asr.csv").read_text().splitlines()
        return [r.split(",", 2)[2] for r in rows if f",{model}," in r]

    assert rates("mir-refusal", "reimported") == rates("refusal", exported)
    assert rates("refusal", "reimported") == rates("refusal", exported)


def test_study_lints_without_a_token_and_a_real_run_stops_at_once_saying_where_to_get_one(project):
    lint = snakemake(project, "--lint", "--configfile", "config/study.yaml", env=without_token())
    assert lint.returncode == 0, lint.stdout + lint.stderr
    result = snakemake(project, "--configfile", "config/study.yaml", env=without_token())
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert "HF_TOKEN is not set" in message
    assert "https://huggingface.co/settings/tokens" in message and "export HF_TOKEN=" in message
    assert not (project / "results").exists(), "no job may start without the token"
