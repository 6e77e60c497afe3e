import json

from mulclip_pl.cli import main
from mulclip_pl.eval.report import comparison_table, summary_table


def test_runs_with_one_label_are_averaged_with_their_sample_std():
    runs = [("full", {"s": {"i2t_R@1": 40.0, "hard_negative_acc": 70.0}}),
            ("global", {"s": {"i2t_R@1": 10.0}}),
            ("full", {"s": {"i2t_R@1": 50.0, "hard_negative_acc": 72.0}})]
    lines = summary_table(runs).splitlines()
    assert lines[0] == "| model | data set | runs | i2t_R@1 | hard_negative_acc |"
    assert lines[2] == "| full | s | 2 | 45.0 ± 7.1 | 71.0 ± 1.4 |"  # std of (40, 50) = 7.07, of (70, 72) = 1.41
    assert lines[3] == "| global | s | 1 | 10.0 |  |"


def test_report_subcommand_merges_results_files(tmp_path, capsys):
    for i, value in enumerate((30.0, 34.0)):
        (tmp_path / "runs" / f"seed{i}").mkdir(parents=True)
        (tmp_path / "runs" / f"seed{i}" / "results.json").write_text(
            json.dumps({"model": "m", "results": {"d": {"t2i_R@1": value}}}))
    main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "t.md")])
    assert "| m | d | 2 | 32.0 ± 2.8 |" in (tmp_path / "t.md").read_text()


def test_columns_layout_puts_each_label_side_by_side_per_set_and_metric(tmp_path, capsys):
    runs = [("full", {"s": {"i2t_R@1": 40.0}, "s_binding": {"hard_negative_acc": 49.0}}),
            ("global", {"s": {"i2t_R@1": 10.0}, "s_binding": {"hard_negative_acc": 51.0}}),
            ("full", {"s": {"i2t_R@1": 50.0}, "s_binding": {"hard_negative_acc": 50.0}})]
    assert comparison_table(runs).splitlines() == [
        "| data set | metric | full (n = 2) | global (n = 1) |",
        "|---|---|---:|---:|",
        "| s | i2t_R@1 | 45.0 ± 7.1 | 10.0 |",
        "| s_binding | hard_negative_acc | 49.5 ± 0.7 | 51.0 |",
    ]
    for label, results in runs[:2]:
        (tmp_path / label).mkdir()
        (tmp_path / label / "results.json").write_text(json.dumps({"model": label, "results": results}))
    main(["report", str(tmp_path), "--layout", "columns"])
    assert "| s_binding | hard_negative_acc | 49.0 | 51.0 |" in capsys.readouterr().out
