"""experiments.reproduce: the registry against the published tables, the statistics and tables it writes,
the last-epochs AUPRC protocol, resuming, and the command line."""

import csv
import io
import json
import os
import re

import numpy as np
import pytest

from experiments.reproduce import report, runner, targets
from experiments.reproduce.__main__ import main as reproduce_main
from experiments.reproduce.paper_tables import PaperTable, mean_of
from experiments.reproduce.protocol import Column, Protocol, Run, Target, lower
from experiments.reproduce.reproduce import block_start, reproduce
from latentebm_jax.training.metrics_writer import read_jsonl


def test_mean_of_reads_the_printed_number():
    assert mean_of("0.336 ± 0.008") == pytest.approx(0.336)
    assert mean_of("32.60%") == pytest.approx(32.60)
    assert mean_of("52.08% (↓)") == pytest.approx(52.08)
    assert mean_of("1,234.5") == pytest.approx(1234.5)
    assert mean_of(None) is None and mean_of("–") is None


def test_a_row_with_the_wrong_number_of_cells_is_refused():
    with pytest.raises(ValueError, match="row 'x' has 1 cells for 2 columns"):
        PaperTable("t", "c", ("a", "b"), (("x", ("1",)),))


def test_every_paper_cell_a_target_names_exists_and_every_published_table_has_a_target():
    covered = set()
    for t in targets.TARGETS.values():
        covered.add((t.paper, t.name))
        for scale in ("cpu", "paper"):
            p = t.protocol(scale)
            if p is None:
                continue
            labels = {p.label_of(r) for r in p.runs}
            assert set(p.paper_rows) <= labels, (t.key, scale)
            for (run_label, col_label), (row, col) in p.paper_cells.items():
                assert run_label in labels and col_label in {c.label for c in p.columns}, (t.key, scale)
                assert t.published.cell(row, col) is not None, (t.key, row, col)
            for row in p.paper_rows.values():
                for c in p.columns:
                    if c.paper_column is not None:
                        t.published.cell(row, c.paper_column)  # raises KeyError if absent
            for name, _ in p.figures:
                p.run_named(name)
        if t.cpu is None and t.paper_scale is None:
            assert t.why_not, t.key
    for paper, module in targets._PUBLISHED.items():
        for item in (*module.TABLES, *module.FIGURES):
            if item.name.startswith("table"):
                assert (paper, item.name) in covered, f"{paper} {item.name} has no target"


def test_every_cpu_run_builds_a_valid_config():
    for t in targets.TARGETS.values():
        if t.cpu is None:
            continue
        runs = runner.ordered_runs(t.cpu)
        dirs = {r.name: f"/nonexistent/{r.name}" for r in runs}
        for run in runs:
            config = runner.build_config(run, 2, dirs, {}, {})
            assert config.seed == 2
            for key, value in run.overrides.items():
                group, leaf = key.rsplit(".", 1)
                got = config
                for part in group.split("."):
                    got = got[part]
                assert got[leaf] == value, (t.key, run.name, key)


def _fake_target() -> Target:
    table = PaperTable("table9", "c", ("FID",), (("Base", ("50.0",)), ("Ours", ("40.0 ± 1.0",))), ours="Ours")
    protocol = Protocol(
        runs=(Run("a", "ours", "configs/digits.py:lebm"), Run("b", "base", "configs/digits.py:lebm")),
        columns=(
            Column("fd", "fd", "FID", True),
            Column("probe z_2", "probe_accuracy[1]", None, False, scale=100),
        ),
        paper_rows={"ours": "Ours", "base": "Base"},
        claims=(lower("ours", "base", "fd"), lower("base", "ours", "fd")),
    )
    return Target("lebm", "table9", "a test table", table, cpu=protocol)


def test_results_are_mean_and_sample_std_over_seeds_with_the_paper_beside_them():
    t = _fake_target()
    fd = {"a": [10.0, 12.0, 17.0], "b": [20.0, 21.0, 25.0]}
    summaries = {
        (name, seed + 1): {"fd": fd[name][seed], "probe_accuracy": [0.1, 0.5 + seed / 10]}
        for name in fd
        for seed in range(3)
    }
    results = report.Results(t, t.cpu, summaries)
    mean, std = report.mean_std(fd["a"])
    assert mean == pytest.approx(np.mean(fd["a"])) and std == pytest.approx(np.std(fd["a"], ddof=1))
    text = report.markdown(results, "cmd")
    assert f"| ours | {mean:.1f} ± {std:.1f} | 40.0 ± 1.0 | 60.0 ± 10.0 |" in text
    assert "| base | 22.0 ± 2.6 | 50.0 | 60.0 ± 10.0 |" in text
    assert "ours: lower fd than base: **holds**" in text
    assert "base: lower fd than ours: **does not hold**" in text
    rows = list(csv.DictReader(io.StringIO(report.csv_text(results))))
    first = rows[0]
    assert (first["run"], first["column"], first["n"], first["paper_value"]) == (
        "ours",
        "fd",
        "3",
        "40.0 ± 1.0",
    )
    assert [float(v) for v in first["values"].split()] == fd["a"]
    # a key missing from a summary leaves the cell empty and is reported
    del summaries["b", 2]["fd"]
    results = report.Results(t, t.cpu, summaries)
    assert results.missing == ["b seed 2: fd"] and len(results.values["base", "fd"]) == 2


def _tiny_run(name: str, label: str, **overrides) -> Run:
    tiny = {
        "lebm.latent_dim": 4,
        "lebm.ngf": 8,
        "lebm.ebm_hidden": 16,
        "sampler.prior_steps": 5,
        "sampler.posterior_steps": 5,
        "train.num_steps": 24,  # 2 epochs of 12 steps (batch 100)
        "train.log_every": 6,
        "train.ckpt_every": 12,
        "train.eval_every": 0,
        "train.eval_last_epochs": 2,
        "eval.interval_metrics": ("anomaly",),
        "eval.metrics": ("reconstruction", "anomaly"),
        "eval.max_test_examples": 120,
        "eval.batch_size": 60,
    }
    return Run(name, label, "configs/digits.py:lebm", {**tiny, **overrides})


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
    """A two-seed target on a tiny generator with a Gaussian prior, reproduced into a README block."""
    protocol = Protocol(
        runs=(_tiny_run("gauss", "Gaussian prior", **{"lebm.ebm_hidden": 0}),),
        columns=(Column("AUPRC", "auprc_last_2_epochs", None, False), Column("MSE", "recon_mse", None, True)),
        figures=(("gauss", "reconstructions.png"),),
        seeds=2,
    )
    target = Target("lebm", "tiny", "a tiny protocol", None, cpu=protocol)
    workdir = str(tmp_path_factory.mktemp("reproduce"))
    readme = os.path.join(workdir, "README.md")
    with open(readme, "w") as f:
        f.write(f"# title\n\n{block_start(target, 'cpu')}\nold\n<!-- /reproduce -->\n\nafter\n")
    trained = []

    def train(config, directory):
        from latentebm_jax.training import loop

        trained.append(directory)
        return loop.train(config, directory)

    results = reproduce(target, workdir=workdir, readme=readme, train=train, say=lambda _: None)
    return target, workdir, readme, results, trained


@pytest.mark.slow  # two tiny training runs: ~15 s
def test_auprc_is_averaged_over_the_last_epochs_as_the_papers_protocol(reproduced):
    _, workdir, _, results, _ = reproduced
    directory = os.path.join(workdir, "lebm", "cpu", "gauss", "seed1")
    with open(os.path.join(directory, "summary.json")) as f:
        summary = json.load(f)
    # interval evaluations at the end of epochs 1 and 2 (steps 12 and 24), and nowhere else
    at = {
        r["step"]: r["eval/auprc"]
        for r in read_jsonl(os.path.join(directory, "metrics.jsonl"))
        if "eval/auprc" in r
    }
    assert sorted(at) == [12, 24]
    assert summary["auprc_last_2_epochs_values"] == pytest.approx([at[12], at[24]])
    assert summary["auprc_last_2_epochs"] == pytest.approx((at[12] + at[24]) / 2)
    assert summary["auprc"] == pytest.approx(at[24])  # the final evaluation is the last epoch's
    assert results.values["Gaussian prior", "AUPRC"][0] == pytest.approx(summary["auprc_last_2_epochs"])


@pytest.mark.slow  # two tiny training runs: ~15 s
def test_reproduce_writes_tables_figures_and_the_readme_block(reproduced):
    _, workdir, readme, results, trained = reproduced
    assert len(trained) == 2 and results.seeds == [1, 2]
    out = os.path.join(workdir, "lebm", "cpu")
    with open(os.path.join(out, "tiny.md")) as f:
        text = f.read()
    values = results.values["Gaussian prior", "MSE"]
    assert len(values) == 2
    mean, std = np.mean(values), np.std(values, ddof=1)
    shown = report._fmt(mean, 3)
    decimals = len(shown.split(".")[1])
    assert f"| {shown} ± {std:.{decimals}f} |" in text.split("| Gaussian prior |")[1]
    assert "`python -m experiments.reproduce lebm tiny` · seeds 1, 2 (mean ± std over 2)" in text
    assert os.path.isfile(os.path.join(out, "tiny_figures", "gauss_reconstructions.png"))
    with open(readme) as f:
        content = f.read()
    assert content.startswith("# title\n") and content.endswith("\n\nafter\n") and "old" not in content
    assert text.strip() in content


@pytest.mark.slow  # two tiny training runs: ~15 s
def test_finished_runs_are_read_back_not_trained_again(reproduced):
    target, workdir, _, first, _ = reproduced
    again = []
    results = reproduce(target, workdir=workdir, train=lambda c, d: again.append(d), say=lambda _: None)
    assert again == []
    assert results.values == first.values


def test_command_line_lists_targets_and_names_a_wrong_one(capsys, tmp_path):
    assert reproduce_main(["--list"]) == 0
    listing = capsys.readouterr().out
    for paper in ("lebm", "iccv", "icml", "bidvl"):
        assert f"{paper}: " in listing
    assert "table4" in listing and "needs" in listing
    assert reproduce_main(["lebm", "table7"]) == 2
    err = capsys.readouterr().err
    assert "lebm has no target 'table7'" in err and "table1" in err
    assert reproduce_main(["iccv", "table6"]) == 2
    assert "no cpu-scale protocol" in capsys.readouterr().err
    assert reproduce_main(["lebm", "table1", "--set", "lebm.ebm_hiden=3", f"--workdir={tmp_path}"]) == 2
    assert "did you mean 'lebm.ebm_hidden'" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []  # every config is checked before anything runs


def test_readme_result_blocks_name_real_targets_and_the_command_that_wrote_them():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "README.md")) as f:
        readme = f.read()
    blocks = re.findall(r"<!-- reproduce (\w+) (\w+) (\w+) -->\n(.*?)<!-- /reproduce -->", readme, re.S)
    for paper, name, scale, body in blocks:
        target = targets.TARGETS[f"{paper} {name}"]
        assert target.protocol(scale) is not None
        assert body.startswith(f"**{paper} {name}** — {target.what}"), (paper, name)
        assert f"`python -m experiments.reproduce {paper} {name}" in body, (paper, name)


def test_status_counts_finished_runs_and_checks_claims_without_training(tmp_path):
    """``--status`` reads finished runs only: fabricated LEBM Table 1 runs (seed 1 of 3) decide its claim;
    a target with no runs says so; a run whose config differs is not counted."""
    from experiments.reproduce.reproduce import status
    from latentebm_jax.training.workdir import config_json

    target = targets.TARGETS["lebm table1"]
    protocol = target.protocol("cpu")
    dirs = {r.name: runner.run_dir(str(tmp_path), "lebm", "cpu", r, 1) for r in protocol.runs}
    for run, fd in zip(protocol.runs, (20.0, 30.0)):  # LEBM's fd below SRI's
        config = runner.build_config(run, 1, dirs, {}, {})
        os.makedirs(dirs[run.name])
        with open(os.path.join(dirs[run.name], "config.json"), "w") as f:
            json.dump(config_json(config), f)
        with open(os.path.join(dirs[run.name], "summary.json"), "w") as f:
            json.dump({"train_steps": 3000, "fd": fd}, f)
    text = status([target, targets.TARGETS["iccv table5"]], workdir=str(tmp_path))
    assert (
        "| lebm table1 |" in text
        and "| 2 of 6 | LEBM: lower fd than Gaussian prior (SRI): **holds** |" in text
    )
    assert "| 0 of 3 | not run |" in text
    with open(os.path.join(dirs["sri"], "config.json")) as f:
        stale = json.load(f)
    stale["lebm"]["latent_dim"] = 7  # another model: not this run
    with open(os.path.join(dirs["sri"], "config.json"), "w") as f:
        json.dump(stale, f)
    assert "| 1 of 6 | LEBM: lower fd than Gaussian prior (SRI): **not measured** |" in status(
        [target], workdir=str(tmp_path)
    )
