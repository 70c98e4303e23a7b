"""
The CS224N handout's attention experiments on the command line (src/run.py --mask_after_softmax,
--position_embedding sinusoidal, --shared_qk): each trains, saves and evaluates; the params
remember it; and a switch that does not apply to a variant is one clear error.

A params file fixes the switches it was made with: evaluate and finetune need not repeat them.
run.main(argv) is called in this process: one torch import for every run.
"""
import os

import pytest

import run
from utils import UserError
from make_synthetic_corpus import make_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--n_layer", "2", "--n_head", "2", "--n_embd", "16", "--block_size", "64", "--dropout", "0",
        "--pretrain_epochs", "1", "--no_tensorboard", "--device", "cpu", "--plain"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(str(tmp_path_factory.mktemp("switches")), n_people=20, seed=0)


@pytest.mark.parametrize("variant,flags", [("vanilla", ["--mask_after_softmax"]),
                                           ("vanilla", ["--position_embedding", "sinusoidal"]),
                                           ("rope", ["--shared_qk"])])
def test_switch_trains_saves_and_evaluates(tmp_path, corpus, capsys, variant, flags):
    params, predictions = tmp_path / "p.params", tmp_path / "dev.predictions"
    run.main(["pretrain", variant, corpus["wiki"], "--writing_params_path", str(params), *TINY, *flags])
    out = capsys.readouterr().out
    assert f"experiments: {flags[0][2:]}" in out  # the model line names the switch that is on
    evaluate = ["evaluate", variant, corpus["wiki"], "--reading_params_path", str(params),
                "--eval_corpus_path", corpus["dev"], "--outputs_path", str(predictions), *TINY]
    run.main(evaluate + flags)  # repeating the switch is allowed
    assert "Correct: " in capsys.readouterr().out
    # the params remember the switch: evaluating without it rebuilds the same model
    run.main(evaluate)
    out = capsys.readouterr().out
    assert f"experiments: {flags[0][2:]}" in out and "Correct: " in out
    # and a switch the file was not made with is refused, naming it
    plain = tmp_path / "plain.params"
    run.main(["pretrain", variant, corpus["wiki"], "--writing_params_path", str(plain), *TINY])
    with pytest.raises(UserError) as info:
        run.main([*evaluate[:4], str(plain), *evaluate[5:], *flags])
    message = str(info.value)
    assert flags[0][2:] in message and "plain.params" in message and "\n" not in message


@pytest.mark.parametrize("variant,flags,words", [
    ("rope", ["--position_embedding", "sinusoidal"], ["rope", "position_embedding"]),
    ("synthesizer", ["--shared_qk"], ["synthesizer", "shared_qk"]),
    # sizes no model can have: one line each, not an AssertionError's traceback from deep inside the model
    ("perceiver", ["--n_layer", "1"], ["perceiver", "n_layer >= 2"]),
    ("rope", ["--n_embd", "24", "--n_head", "8"], ["RoPE", "even", "not 3"]),
    ("vanilla", ["--n_embd", "100", "--n_head", "8"], ["n_embd 100", "n_head 8", "divisible"]),
])
def test_switch_refused_where_it_does_not_apply(tmp_path, corpus, capsys, variant, flags, words):
    params = tmp_path / "p.params"
    with pytest.raises(UserError) as info:
        run.main(["pretrain", variant, corpus["wiki"], "--writing_params_path", str(params), *TINY, *flags])
    for word in words:
        assert word in str(info.value)
    assert "\n" not in str(info.value) and not params.exists()
    assert "took" not in capsys.readouterr().out


def test_default_model_line_is_unchanged(corpus, capsys):
    args = run.parse_args(["pretrain", "vanilla", corpus["wiki"], *TINY])
    assert (args.mask_after_softmax, args.position_embedding, args.shared_qk) == (None, None, None)  # not given
    run.build_model(args, run.setup_speed(args), [chr(65 + i) for i in range(30)])
    assert (args.mask_after_softmax, args.position_embedding, args.shared_qk) == (False, "learned", False)
    line = [l for l in capsys.readouterr().out.splitlines() if l.startswith("model: ")][0]
    # tok_emb 30*16 + pos_emb 64*16 + 2 blocks of 3,280 + ln_f 32 + head 16*30, and nothing appended
    assert line == "model: vanilla, 8,576 parameters, vocabulary 30, block size 64"


def test_params_file_fixes_the_sizes(tmp_path, corpus, capsys):
    """evaluate and finetune take the model's sizes from the params file they read; a size given again is
    checked against it."""
    params, predictions = tmp_path / "p.params", tmp_path / "dev.predictions"
    run.main(["pretrain", "perceiver", corpus["wiki"], "--writing_params_path", str(params), "--bottleneck_dim", "8",
              *TINY])
    capsys.readouterr()
    bare = ["--device", "cpu", "--plain", "--no_tensorboard"]
    evaluate = ["evaluate", "perceiver", corpus["wiki"], "--reading_params_path", str(params),
                "--eval_corpus_path", corpus["dev"], "--outputs_path", str(predictions), *bare]
    run.main(evaluate)
    out = capsys.readouterr().out
    assert "model: perceiver, " in out and "block size 64" in out and "Correct: " in out
    run.main(["finetune", "perceiver", corpus["wiki"], "--reading_params_path", str(params), "--finetune_corpus_path",
              corpus["train"], "--writing_params_path", str(tmp_path / "f.params"), "--finetune_epochs", "1", *bare])
    assert "block size 64" in capsys.readouterr().out
    for flag, value in (("--n_layer", "3"), ("--bottleneck_dim", "16"), ("--block_size", "128")):
        with pytest.raises(UserError) as info:
            run.main(evaluate + [flag, value])
        assert flag[2:] in str(info.value) and value in str(info.value)
    run.main(evaluate + ["--n_layer", "2", "--bottleneck_dim", "8"])  # the file's own values are fine


@pytest.mark.parametrize("flags,words", [
    (["--batch_size", "0"], ["--batch_size", "at least 1"]),
    (["--finetune_epochs", "0"], ["--finetune_epochs", "at least 1"]),  # 0 would have meant the default
    (["--save_every_minutes", "-2"], ["--save_every_minutes"]),
    (["--pretrain_lr", "0"], ["learning rates", "positive"]),
])
def test_bad_numbers_are_argparse_errors(capsys, flags, words):
    with pytest.raises(SystemExit) as info:
        run.parse_args(["pretrain", "vanilla", "wiki.txt", *flags])
    assert info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "error:" in last and all(word in last for word in words), last


@pytest.mark.parametrize("flags,words", [
    (["--n_head", "0"], ["n_head 0", "positive"]),
    (["--n_layer", "0"], ["n_layer 0", "positive"]),
    (["--block_size", "-5"], ["block_size -5"]),
    (["--dropout", "1.5"], ["dropout", "1.5"]),
])
def test_impossible_models_are_one_line_errors(tmp_path, corpus, flags, words):
    params = tmp_path / "p.params"
    with pytest.raises(UserError) as info:
        run.main(["pretrain", "vanilla", corpus["wiki"], "--writing_params_path", str(params), *TINY, *flags])
    assert all(word in str(info.value) for word in words) and not params.exists()
