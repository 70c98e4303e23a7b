"""tools/demo_report.py: accuracies from the results run.py writes beside each demo's predictions,
recall rates from probe_recall.json, one row per wiki-lines-per-person, table, JSON and PNG."""
import json

import pytest

import demo_report
from utils import UserError, evaluate_places

DEV = ["Where was Ann Bell born?\tParis", "Where was Bo Dahl born?\tRome", "Where was Cy Eck born?\tParis",
       "Where was Di Fox born?\tOslo"]


def fake_demo(directory, bios, nopretrain, pretrained, probe, variant="vanilla", seconds=None):
    directory.mkdir(parents=True)
    dev = directory / "birth_dev.tsv"
    dev.write_text("\n".join(DEV) + "\n")
    (directory / "corpus.json").write_text(json.dumps({"people": 20, "bios_per_person": bios, "seed": 0,
                                                       "generator": "0123"}))  # the generator's manifest
    (directory / "baseline_accuracy.txt").write_text("50.0\n")
    for name, predictions in (("nopretrain", nopretrain), ("pretrain", pretrained)):
        # what run.py evaluate writes beside its predictions
        total, correct = evaluate_places(str(dev), predictions)
        (directory / f"{name}.dev.predictions.json").write_text(
            json.dumps({"variant": variant, "correct": correct, "total": total, "percent": 100.0 * correct / total}))
    if seconds is not None:
        (directory / "seconds.txt").write_text(f"{seconds}\n")
    (directory / "probe_recall.json").write_text(json.dumps(probe))
    return str(directory)


def test_table_json_and_png(tmp_path, capsys):
    one = fake_demo(tmp_path / "bios1", 1, ["Paris"] * 4, ["Paris", "Oslo", "Rome", "Rome"],
                    {"own line": [4, 4], "name at line start": [2, 4], "name after other words": [0, 4],
                     "finetuning question": [0, 4]})
    three = fake_demo(tmp_path / "bios3", 3, ["Oslo"] * 4, ["Paris", "Rome", "Paris", "Oslo"],
                      {"own line": [4, 4], "name at line start": [4, 4], "name after other words": [3, 4],
                       "finetuning question": [0, 4]})
    out = tmp_path / "out"
    demo_report.main([three, one, "--by", "bios_per_person", "--out", str(out)])
    rows = json.loads((out / "augmentation.json").read_text())
    assert [r["bios_per_person"] for r in rows] == [1, 3]  # sorted by lines per person
    assert [r["pretrained"] for r in rows] == [25.0, 100.0]
    assert [r["no_pretraining"] for r in rows] == [50.0, 25.0]
    assert [r["name after other words"] for r in rows] == [0.0, 75.0]
    assert rows[0]["baseline"] == 50.0 and rows[1]["dev_questions"] == 4
    table = (out / "augmentation.md").read_text()
    assert "| 3 | 50.0% | 25.0% | 100.0% | 100.0% | 100.0% | 75.0% | — |" in table
    assert table in capsys.readouterr().out
    assert (out / "augmentation.png").read_bytes().startswith(b"\x89PNG")


def test_a_demo_that_did_not_run_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="has no corpus.json"):
        demo_report.main([str(tmp_path / "empty"), "--out", str(tmp_path / "out")])


def test_variants_keep_their_order_and_wall_time(tmp_path):
    probe = {"own line": [3, 4], "name at line start": [2, 4], "name after other words": [1, 4]}
    demos = [fake_demo(tmp_path / v, 3, ["Oslo"] * 4, ["Paris"] * 4, probe, variant=v, seconds=s)
             for v, s in (("vanilla", 381), ("rope", 420))]
    out = tmp_path / "out"
    demo_report.main([*demos, "--by", "variant", "--out", str(out), "--name", "variants"])
    rows = json.loads((out / "variants.json").read_text())
    assert [(r["variant"], r["seconds"]) for r in rows] == [("vanilla", 381), ("rope", 420)]
    assert "| rope | 50.0% | 25.0% | 50.0% | 75.0% | 50.0% | 25.0% | 420 s |" in (out / "variants.md").read_text()
    assert (out / "variants.png").read_bytes().startswith(b"\x89PNG")
