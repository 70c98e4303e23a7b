"""Smoke tests of tools/bench.py: each measurement, on the fast and the plain
path, prints one JSON object with what, variant, device, path and a positive figure. Tiny
settings, run in this process (bench.main), so they check behaviour, not speed."""
import json
import os

import pytest

import bench
from make_synthetic_corpus import make_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_MODEL = ["--n_layer", "1", "--n_head", "2", "--n_embd", "16", "--block_size", "64", "--device", "cpu",
              "--threads", "1"]
FIGURE = {"train": "tokens_per_s", "data": "examples_per_s", "eval": "questions_per_s"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(str(tmp_path_factory.mktemp("bench")), n_people=40, seed=0)


def measure(capsys, what, plain, *args):
    bench.main([what, *TINY_MODEL, *args] + (["--plain"] if plain else []))
    lines = [line for line in capsys.readouterr().out.split("\n") if line.strip()]
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize("plain", [False, True], ids=["fast", "plain"])
@pytest.mark.parametrize("what", ["data", "train", "eval"])
def test_bench_prints_one_json_object_per_measurement(capsys, corpus, what, plain):
    args = {"data": ["--steps", "2", "--warmup", "1", "--batch_size", "8"],
            "train": ["--steps", "1", "--warmup", "1", "--batch_size", "8"],
            "eval": ["--questions", "3", "--warmup", "1", "--dev", corpus["dev"]]}[what]
    results = measure(capsys, what, plain, "--corpus", corpus["wiki"], "--repeat", "2", *args)
    assert len(results) == 2  # --repeat 2: two measurements, two lines
    for result in results:
        assert result["what"] == what and result["variant"] == "vanilla" and result["device"] == "cpu"
        assert result["path"] == ("plain" if plain else "fast")
        assert result[FIGURE[what]] > 0
        assert 10 < result["peak_rss_mib"] < 100_000  # torch alone takes some hundreds of MiB
    if what == "eval":
        assert results[0]["questions"] == 3


def test_bench_train_takes_the_variant(capsys, corpus):
    result, = measure(capsys, "train", False, "--corpus", corpus["wiki"], "--variant", "perceiver",
                      "--n_layer", "2", "--bottleneck_dim", "8", "--steps", "1", "--warmup", "0", "--batch_size", "4")
    assert result["variant"] == "perceiver" and result["tokens_per_s"] > 0


@pytest.mark.parametrize("what", ["data", "train"])
def test_bench_refuses_a_corpus_smaller_than_a_batch(capsys, corpus, what):
    """A clear error, not an endless wait for a batch that never comes."""
    with pytest.raises(bench.UserError, match="fewer documents"):
        measure(capsys, what, False, "--corpus", corpus["wiki"], "--steps", "1", "--warmup", "0",
                "--batch_size", "100000")


def test_bf16_and_fp32_are_refused_together(capsys):
    with pytest.raises(SystemExit) as exit:
        bench.parse_args(["train", "--bf16", "--fp32"])
    assert exit.value.code == 2 and "--bf16" in capsys.readouterr().err


def test_pairs_alternate_fast_and_plain_and_end_with_their_ratios(capsys, corpus):
    """--pairs --repeat 2: fast, plain, fast, plain, then a summary built from exactly those four lines."""
    *pairs, total = measure(capsys, "train", False, "--corpus", corpus["wiki"], "--pairs", "--repeat", "2",
                            "--steps", "1", "--warmup", "0", "--batch_size", "4")
    assert [r["path"] for r in pairs] == ["fast", "plain", "fast", "plain"]
    assert [r["fused_attention"] for r in pairs] == [True, False, True, False]
    assert pairs[0]["data"] != pairs[1]["data"]  # the plain path's per-example loader, not the batched one
    assert total["summary"] and total["figure"] == "tokens_per_s" and total["cpu"] == pairs[0]["cpu"] != ""
    assert total["fast"] == [pairs[0]["tokens_per_s"], pairs[2]["tokens_per_s"]]
    assert total["plain"] == [pairs[1]["tokens_per_s"], pairs[3]["tokens_per_s"]]
    assert total["pair_ratios"] == pytest.approx([f / p for f, p in zip(total["fast"], total["plain"])])
    assert total["ratio_of_means"] == pytest.approx(sum(total["fast"]) / sum(total["plain"]))


def test_pairs_refuse_plain(capsys):
    with pytest.raises(SystemExit) as exit:
        bench.parse_args(["eval", "--pairs", "--plain"])
    assert exit.value.code == 2 and "--pairs" in capsys.readouterr().err
