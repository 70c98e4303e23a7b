"""
Command line of the assignment: pretrain | finetune | evaluate a variant.

    python src/run.py pretrain vanilla wiki.txt --writing_params_path vanilla.pretrain.params
    python src/run.py finetune vanilla wiki.txt --reading_params_path vanilla.pretrain.params \
        --writing_params_path vanilla.finetune.params --finetune_corpus_path birth_places_train.tsv
    python src/run.py evaluate vanilla wiki.txt --reading_params_path vanilla.finetune.params \
        --eval_corpus_path birth_dev.tsv --outputs_path vanilla.pretrain.dev.predictions

The defaults are the recipe (course.py); the options after --device are this project's. XCS224N Fall
2025's form works too: --function=pretrain --variant=rope --pretrain_corpus_path=wiki.txt [--compile] ...
Under `torchrun --nproc_per_node N src/run.py ...` training is data-parallel (distributed.py).
"""
import argparse
import json
import os
import signal
import sys
import time

import distributed
import speed
from course import COURSES, RECIPE
from dataset import CharCorruptionDataset, NameDataset, build_vocab
from decoding import encode_question, predict_places
from model import EXPERIMENTS, GPT, POSITION_EMBEDDINGS, VARIANTS, GPTConfig, config_for_variant
from params import describe_model, load_model, save_params
from checkpoint import Interrupted
from trainer import Trainer, TrainerConfig
from utils import (UserError, atomic_write_text, check_output_dir, count_correct, read_qa, read_text, resolve_device,
                   set_seed)

# the options that describe the model, with their defaults
MODEL_OPTIONS = {"block_size": RECIPE.block_size, "bottleneck_dim": RECIPE.bottleneck_dim,
                 **{name: getattr(GPTConfig, name) for name in ("n_layer", "n_head", "n_embd", *EXPERIMENTS)}}

# XCS224N Fall 2025's run.py (docopt) names our three positional arguments as options
COURSE_FORM = ("--function", "--variant", "--pretrain_corpus_path")
BACKENDS = ("inductor", "aot_eager", "cudagraphs")


def from_course_form(argv, p):
    """(argv in our form, whether it was the course's): --function=F --variant=V --pretrain_corpus_path=P
    (or --function F ...) become F V P in front of the other arguments."""
    named, rest, args = {}, [], iter(argv)
    for arg in args:
        option, equals, value = arg.partition("=")
        if option in COURSE_FORM:
            named[option] = value if equals else next(args, None)
        else:
            rest.append(arg)
    if not named:
        return rest, False
    missing = [f"{option}=" for option in COURSE_FORM if named.get(option) is None]
    if missing:
        p.error(f"{', '.join(missing)} missing: --function=, --variant= and --pretrain_corpus_path= go together, "
                f"in place of the positional FUNCTION VARIANT PRETRAIN_CORPUS_PATH")
    return [named[option] for option in COURSE_FORM] + rest, True


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="Also accepted, as XCS224N Fall 2025 writes it: --function=FUNCTION "
                                       "--variant=VARIANT --pretrain_corpus_path=PRETRAIN_CORPUS_PATH [options]")
    p.add_argument("function", choices=["pretrain", "finetune", "evaluate"])
    p.add_argument("variant", choices=VARIANTS)
    p.add_argument("pretrain_corpus_path", help="pretraining corpus; its characters are the vocabulary")
    for name in ("reading_params_path", "writing_params_path", "finetune_corpus_path", "eval_corpus_path",
                 "outputs_path"):
        p.add_argument(f"--{name}")
    p.add_argument("--pretrain_lr", type=float, default=RECIPE.pretrain_lr)
    p.add_argument("--finetune_lr", type=float, default=RECIPE.finetune_lr)
    p.add_argument("--bottleneck_dim", type=int, help="the perceiver's latent slots (default 32)")
    p.add_argument("--tb_expt_name", default="run", help="TensorBoard run name under expt/")
    p.add_argument("--course", choices=list(COURSES), default="cs224n", help="the recipe of this course "
                   "(src/course.py): xcs224n truncates to 3/4 of the block, closes the masked content with a "
                   "third MASK, and pretrains on XCS's unclamped schedule")
    # the project's own options
    p.add_argument("--device", default="auto", help="auto (CUDA, else MPS, else CPU), cpu, cuda, mps")
    p.add_argument("--seed", type=int, default=0)
    # the model's options: a params file being read fixes them
    for name in ("block_size", "n_layer", "n_head", "n_embd"):
        p.add_argument(f"--{name}", type=int, help=f"default {MODEL_OPTIONS[name]}")
    p.add_argument("--dropout", type=float, default=0.1, help="embedding, residual and attention dropout")
    p.add_argument("--pretrain_epochs", type=int, default=RECIPE.pretrain_epochs)
    p.add_argument("--finetune_epochs", type=int, help=f"default {RECIPE.finetune_epochs_from_scratch} from "
                   f"scratch, {RECIPE.finetune_epochs_pretrained} from --reading_params_path")
    p.add_argument("--batch_size", type=int,
                   help=f"default {RECIPE.pretrain_batch_size} pretrain, {RECIPE.finetune_batch_size} finetune")
    p.add_argument("--num_workers", type=int, help="data loader workers (default 4 on CUDA, else 0)")
    p.add_argument("--plain", action="store_true", help="turn every speed feature off: plain attention, fp32, "
                   "one-by-one decoding, per-example span corruption")
    precision = p.add_mutually_exclusive_group()
    precision.add_argument("--fp32", action="store_true",
                           help="train in float32 where bf16 autocast is the default (CUDA with bf16, CPUs with AMX)")
    precision.add_argument("--bf16", action="store_true",
                           help="train under bf16 autocast anywhere (without AMX emulated, several times slower)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False, help="torch.compile the "
                   "model for training (compiling takes a while; falls back to eager with a note where it fails); "
                   "--no-compile, the default, trains it as it is")
    p.add_argument("--backend", choices=BACKENDS, default="inductor", help="torch.compile's backend, with --compile")
    p.add_argument("--no_tensorboard", action="store_true")
    # the handout's attention experiments, off by default; a params file being read fixes them too
    p.add_argument("--mask_after_softmax", action="store_true", default=None, help="zero future attention "
                   "weights after the softmax, without renormalising (leaks the future; plain attention path)")
    p.add_argument("--position_embedding", choices=POSITION_EMBEDDINGS,
                   help="learned (pos_emb parameter) or sinusoidal (fixed); not for rope")
    p.add_argument("--shared_qk", action="store_true", default=None,
                   help="one projection for queries and keys; not for synthesizer")
    p.add_argument("--save_every", type=int, default=10,
                   help="epochs between resumable checkpoints at WRITING_PARAMS_PATH.ckpt (0: never)")
    p.add_argument("--save_every_minutes", type=float, default=5, help="minutes of training between resumable "
                   "checkpoints as well, so that a crash loses at most that (0: never); one is also written on "
                   "Ctrl-C and on SIGTERM")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from WRITING_PARAMS_PATH.ckpt")
    argv, course_form = from_course_form(sys.argv[1:] if argv is None else argv, p)
    args, extra = p.parse_known_args(argv)
    positional = [arg for arg in extra if not arg.startswith("-")]
    if course_form and positional:  # the course's three options, then ours as well
        p.error(f"positional arguments ({' '.join(positional)}) beside --function=, --variant= and "
                f"--pretrain_corpus_path=: give FUNCTION VARIANT PRETRAIN_CORPUS_PATH one way, not both")
    if extra:
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    for name, low in (("batch_size", 1), ("pretrain_epochs", 1), ("finetune_epochs", 1), ("num_workers", 0),
                      ("save_every", 0), ("save_every_minutes", 0)):
        if getattr(args, name) is not None and getattr(args, name) < low:
            p.error(f"--{name} must be at least {low}, not {getattr(args, name)}")
    if args.plain and args.bf16:
        p.error("--bf16 is a fast path; --plain trains in float32")
    if min(args.pretrain_lr, args.finetune_lr) <= 0:
        p.error(f"learning rates must be positive, not {min(args.pretrain_lr, args.finetune_lr)}")
    block = args.block_size or MODEL_OPTIONS["block_size"]
    if args.variant == "perceiver" and args.bottleneck_dim is not None and not 1 <= args.bottleneck_dim <= block:
        p.error(f"--bottleneck_dim must be between 1 and the block size {block}")
    return args


def setup_speed(args):
    """Device and fast paths, decided once (speed.py); under torchrun, after joining the process group."""
    device = distributed.init(resolve_device(args.device))
    setup = speed.resolve(device, plain=args.plain, fp32=args.fp32, bf16=args.bf16,
                          compile=args.compile and args.backend, num_workers=args.num_workers)
    print(setup.describe(), flush=True)
    return setup


def build_model(args, setup, itos):
    """The run's GPT. A params file that finetune or evaluate reads fixes the model (the options given are
    checked against it); otherwise the options make it, MODEL_OPTIONS standing in for those not given.
    args gets the values in use."""
    given = {name: getattr(args, name) for name in MODEL_OPTIONS if getattr(args, name) is not None}
    training = dict(embd_pdrop=args.dropout, resid_pdrop=args.dropout, attn_pdrop=args.dropout,
                    fused_attention=setup.fused_attention)
    try:
        config = config_for_variant(args.variant, len(itos), **{**MODEL_OPTIONS, **given}, **training)
    except ValueError as e:  # sizes or switches that GPTConfig refuses
        raise UserError(str(e)) from None
    if args.function != "pretrain" and args.reading_params_path:
        model = load_model(args.reading_params_path, itos, expect={"variant": args.variant, **given},
                           fallback=config, **training)
    else:
        model = GPT(config)
    c = model.config
    for name in MODEL_OPTIONS:  # a file's values for the rest of the run (bottleneck_dim also names TB runs)
        if name != "bottleneck_dim" or c.perceiver:
            setattr(args, name, getattr(c, name))
    args.bottleneck_dim = args.bottleneck_dim or MODEL_OPTIONS["bottleneck_dim"]
    switches = [name if value is True else f"{name} {value}" for name in EXPERIMENTS
                if (value := getattr(c, name)) != MODEL_OPTIONS[name]]  # e.g. "position_embedding sinusoidal"
    print(f"model: {c.variant}, {sum(p.numel() for p in model.parameters()):,} parameters, vocabulary "
          f"{len(itos)}, block size {c.block_size}" + (f" | experiments: {', '.join(switches)}" if switches else ""),
          flush=True)
    if c.mask_after_softmax and setup.fused_attention:
        print("mask_after_softmax: attention takes the plain path, not the fused one", flush=True)
    return model.to(setup.device)


def require(value, flag, function):
    if value is None:
        raise UserError(f"{function} needs {flag}")
    return value


def run_record(args, setup, model, **figures):
    """What a run did, for tools/report.py and demo_report.py: written as JSON beside its output."""
    return {"function": args.function, "variant": args.variant, "corpus": args.pretrain_corpus_path,
            "options": vars(args), "model": {k: v for k, v in describe_model(model, []).items() if k != "vocab"},
            "parameters": sum(p.numel() for p in model.parameters()), "device": setup.device_name(),
            "dtype": setup.dtype_name(), **figures}


def tensorboard_writer(args):
    if args.no_tensorboard or not distributed.is_main():
        return None
    from torch.utils.tensorboard import SummaryWriter
    return SummaryWriter(log_dir=f"expt/{args.function}/{args.tb_expt_name}_{args.variant}_{args.bottleneck_dim}"
                                 f"_pt_lr_{args.pretrain_lr:f}_ft_lr_{args.finetune_lr:f}")


def train(model, dataset, schedule, setup, args):
    """Train on schedule (TrainerConfig fields), then write the params, the run's record beside them
    (PARAMS.json), and drop the resumable checkpoint."""
    out = require(args.writing_params_path, "--writing_params_path", args.function)
    check_output_dir(out, "--writing_params_path")  # before training, not after
    resume_path = out + ".ckpt"
    if args.resume and not os.path.exists(resume_path):
        print(f"--resume: no checkpoint at {resume_path}, starting from the beginning", flush=True)
    config = TrainerConfig(**schedule, **setup.trainer_options(dataset, schedule["batch_size"]),
                           writer=tensorboard_writer(args), resume_path=resume_path, resume=args.resume,
                           save_every=args.save_every, save_every_minutes=args.save_every_minutes, desc=args.function)
    started = time.time()
    trainer = Trainer(model, dataset, None, config)
    try:
        trainer.train()
    except Interrupted as e:
        if os.path.exists(resume_path):  # the trainer saved where it stood
            raise Interrupted(f"training state saved to {resume_path}; run the same command "
                              f"with --resume to continue", e.signum) from None
        raise
    finally:
        if config.writer is not None:
            config.writer.close()
    seconds = time.time() - started
    print(f"{config.desc} took {seconds:.1f} s", flush=True)
    if not distributed.is_main():  # under torchrun rank 0 saves; every rank holds the same weights
        return
    save_params(model, out, dataset.itos)
    finetuning = args.function == "finetune"
    atomic_write_text(out + ".json", json.dumps(run_record(
        args, setup, model, params=out, reading_params=args.reading_params_path if finetuning else None,
        finetune_corpus=args.finetune_corpus_path if finetuning else None, seconds=seconds,
        final_loss=trainer.loss, steps=trainer.step, tokens=trainer.tokens, epochs=config.max_epochs,
        batch_size=config.batch_size, learning_rate=config.learning_rate)) + "\n")
    if os.path.exists(resume_path):
        os.remove(resume_path)
    print(f"params written to {out}")


def pretrain(args, setup, pretrain_dataset, model):
    train(model, pretrain_dataset, pretrain_dataset.course.pretrain_schedule(
        len(pretrain_dataset), args.block_size, args.pretrain_epochs, args.batch_size, args.pretrain_lr), setup, args)


def finetune(args, setup, pretrain_dataset, model):
    path = require(args.finetune_corpus_path, "--finetune_corpus_path", "finetune")
    finetune_dataset = NameDataset(pretrain_dataset, read_text(path, "finetuning corpus"), source=path)
    train(model, finetune_dataset, pretrain_dataset.course.finetune_schedule(
        len(pretrain_dataset), args.block_size, bool(args.reading_params_path), args.finetune_epochs,
        args.batch_size, args.finetune_lr), setup, args)


def evaluate(args, setup, pretrain_dataset, model):
    if not distributed.is_main():  # under torchrun, decoding is rank 0's alone
        return
    params, path, out = (require(getattr(args, name), f"--{name}", "evaluate")
                         for name in ("reading_params_path", "eval_corpus_path", "outputs_path"))
    check_output_dir(out, "--outputs_path")
    rows = read_qa(path, "evaluation corpus")  # a malformed line stops the run now, before anything is written
    questions = [question for _, question, _ in rows]
    if not questions:
        raise UserError(f"evaluation corpus {path} has no questions")
    for number, question, _ in rows:
        ids, unknown = encode_question(question, pretrain_dataset.stoi)
        if unknown:
            print(f"warning: {path} line {number}: characters {''.join(unknown)!r} are not in the vocabulary "
                  f"and are left out", file=sys.stderr)
        if len(ids) >= model.max_len:
            print(f"warning: {path} line {number}: question longer than the model's {model.max_len} "
                  f"positions; only its end is seen", file=sys.stderr)
    started = time.time()
    predictions = predict_places(model, questions, pretrain_dataset.stoi, pretrain_dataset.itos, setup.device,
                                 batched=setup.batched_decoding)
    elapsed = time.time() - started
    atomic_write_text(out, "".join(p + "\n" for p in predictions))
    total, correct = count_correct(rows, predictions, path)
    atomic_write_text(out + ".json", json.dumps(run_record(
        args, setup, model, params=params, eval_corpus=path, predictions=out, questions=len(questions),
        correct=correct, total=total, percent=100.0 * correct / total if total else None, seconds=elapsed)) + "\n")
    print(f"decoded {len(questions)} questions in {elapsed:.2f} s")
    if total > 0:
        print(f"Correct: {correct} out of {total}: {100.0 * correct / total}%")
    else:
        print(f"Predictions written to {out}; no targets provided")


def main(argv=None):
    args = parse_args(argv)
    set_seed(args.seed)
    setup = setup_speed(args)
    corpus = read_text(args.pretrain_corpus_path, "pretraining corpus")
    # the vocabulary always comes from the pretraining corpus; the block size from the model
    model = build_model(args, setup, build_vocab(corpus)[1])
    pretrain_dataset = CharCorruptionDataset(corpus, args.block_size, course=args.course)
    {"pretrain": pretrain, "finetune": finetune, "evaluate": evaluate}[args.function](
        args, setup, pretrain_dataset, model)


if __name__ == "__main__":
    try:
        main()
        distributed.exit_when_all_done()
    except UserError as e:
        sys.exit(f"error: {e}")
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: one line, and the shell's exit status for the signal
        signum = getattr(e, "signum", signal.SIGINT)
        print(f"interrupted: {signal.Signals(signum).name}" + (f"; {e}" if str(e) else ""), file=sys.stderr)
        if isinstance(e, Interrupted):  # under torchrun every rank stopped after the same step: all get here
            distributed.exit_when_all_done(128 + signum)
        sys.exit(128 + signum)
    finally:
        distributed.destroy()
