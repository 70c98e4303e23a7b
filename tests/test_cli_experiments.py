"""
The experiment switches of CS224N §2.2 on the command line (src/run.py --mask_after_softmax,
--position_embedding sinusoidal, --shared_qk): each trains, saves and evaluates; the params
remember it; and a switch that does not apply to a variant is one clear error.

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
    run.main(evaluate + flags)
    assert "Correct: " in capsys.readouterr().out
    # the params remember the switch: evaluating without it is refused, naming it
    with pytest.raises(UserError) as info:
        run.main(evaluate)
    message = str(info.value)
    assert flags[0][2:] in message and "p.params" in message and "\n" not in message


@pytest.mark.parametrize("variant,flags,words", [
    ("rope", ["--position_embedding", "sinusoidal"], ["rope", "position_embedding"]),
    ("synthesizer", ["--shared_qk"], ["synthesizer", "shared_qk"]),
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
    assert (args.mask_after_softmax, args.position_embedding, args.shared_qk) == (False, "learned", False)
    run.build_model(args, run.setup_speed(args), 30)
    line = [l for l in capsys.readouterr().out.splitlines() if l.startswith("model: ")][0]
    # tok_emb 30*16 + pos_emb 64*16 + 2 blocks of 3,280 + ln_f 32 + head 16*30, and nothing appended
    assert line == "model: vanilla, 8,576 parameters, vocabulary 30, block size 64"
