"""
Speed measurements of the three hot paths, fast against plain:

    python tools/bench.py train [--plain] [--device D] [--steps N] [--compile]   -> tokens_per_s
    python tools/bench.py data  [--plain] [--device D] [--steps N]               -> examples_per_s
    python tools/bench.py eval  [--plain] [--device D] [--questions N] [--params P]  -> questions_per_s

Each measurement prints ONE JSON object on stdout (notes go to stderr), with `what`,
`variant`, `device`, `path` ("fast" or "plain"), the figure, its context, and the peak
memory so far (`peak_rss_mib`; on CUDA also `peak_cuda_allocated_mib`).

train  optimizer steps of the full recipe shape by default (course.RECIPE's pretraining batch and block, the
       model's default sizes, AdamW, grad clip 1.0), timed after warm-up steps, data preparation included.
       fast: what run.py trains with (speed.py): fused attention, CorruptionBatches on the
       device, fused AdamW, bf16 autocast on CUDA and on CPUs with AMX (--fp32: not; --bf16:
       on any), TF32 on CUDA, only the real tokens computed (packing.py). plain: plain attention,
       fp32, per-example CharCorruptionDataset through the trainer's DataLoader, every position
       computed. tokens_per_s counts every position of a batch, as the course's schedule does;
       real_tokens_per_s only the real ones (each row up to its last target that is not PAD).
data   the span-corruption pipeline alone, batches delivered on the device, as train gets them.
eval   decoding.predict_places on a dev file. plain: batched=False (the course's decoder, one
       question at a time, no cache); fast: batched=True (right-padded batches, KV cache, early
       stop). A randomly initialised model never emits ⁇, so the fast decoder cannot stop early:
       measure with --params (a trained model; sizes and vocabulary from the file) as well.

--pairs measures the fast and the plain path in turn, --repeat times each (fast first), each in a
process of its own, and ends with a summary object (`summary: true`): both paths' figures, each
pair's ratio, the ratio of the means. Alternating pairs in one run is how the speed table (docs/performance.md)
is measured: a shared machine's speed drifts, so ratios of runs made minutes apart mislead.

Without --corpus and --dev, both are the synthetic ones (data/make_synthetic_corpus.py), made
in a temporary folder large enough to hold --questions dev questions.
"""
import argparse
import importlib.util
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "src"))  # the library

import speed
from course import RECIPE
from dataset import CharCorruptionDataset
from decoding import predict_places
from model import GPT, VARIANTS, GPTConfig, config_for_variant
from packing import needed_lengths
from params import load_model, model_description, read_state_dict
from trainer import Trainer, TrainerConfig, data_loader
from utils import UserError, count_correct, read_qa, read_text, resolve_device, run_script, set_seed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.strip().split("\n\n")[0])
    p.add_argument("what", choices=["train", "data", "eval"])
    p.add_argument("--variant", choices=VARIANTS, default="vanilla")
    p.add_argument("--device", default="auto", help="auto (CUDA, else MPS, else CPU), cpu, cuda, mps")
    p.add_argument("--plain", action="store_true", help="measure the plain path instead of the fast one")
    p.add_argument("--steps", type=int, default=None,
                   help="timed optimizer steps (train; default 20 on CUDA, 5 on CPU) or batches (data; 200)")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed steps/batches first (train: 5 on CUDA, 2 on CPU; data: 5), "
                        "questions for eval (8)")
    p.add_argument("--batch_size", type=int, default=None,
                   help=f"default {RECIPE.pretrain_batch_size} (train, data), 256 (eval)")
    p.add_argument("--block_size", type=int, default=RECIPE.block_size)
    for name in ("n_layer", "n_head", "n_embd"):
        p.add_argument(f"--{name}", type=int, default=getattr(GPTConfig, name))
    p.add_argument("--dropout", type=float, default=GPTConfig.embd_pdrop, help="train: the model's dropout")
    p.add_argument("--bottleneck_dim", type=int, default=RECIPE.bottleneck_dim)
    p.add_argument("--questions", type=int, default=500, help="eval: questions decoded (the first N of the file)")
    p.add_argument("--params", default=None, help="eval: a params file (sizes and vocabulary from it)")
    p.add_argument("--corpus", default=None, help="pretraining corpus (default: synthetic, made on the fly)")
    p.add_argument("--dev", default=None, help="eval: question<TAB>answer file (default: synthetic)")
    p.add_argument("--compile", action="store_true", help="train: torch.compile the model")
    precision = p.add_mutually_exclusive_group()  # as in run.py
    precision.add_argument("--fp32", action="store_true", help="train: float32 where bf16 autocast is the default")
    precision.add_argument("--bf16", action="store_true", help="train: bf16 autocast anywhere (emulated without AMX)")
    p.add_argument("--repeat", type=int, default=1, help="measurements in a row (one JSON line each)")
    p.add_argument("--pairs", action="store_true",
                   help="fast and plain in turn, --repeat pairs, then a summary line with their ratios")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.pairs and args.plain:
        p.error("--pairs measures both paths: leave out --plain")
    return args


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def context(args, device, fast):
    """Keys every measurement carries."""
    info = {"what": args.what, "variant": args.variant, "device": device.type, "path": "fast" if fast else "plain",
            "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "cpu": cpu_model()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def cpu_model():
    """The CPU's model name (Linux: /proc/cpuinfo), else what platform knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def summary(figure, results):
    """The pairs' figures side by side (results alternate fast, plain) and how much faster fast is."""
    fast = [r[figure] for r in results[0::2]]
    plain = [r[figure] for r in results[1::2]]
    return {**{k: results[0][k] for k in ("what", "variant", "device", "cpu", "torch", "threads")},
            **({"gpu": results[0]["gpu"]} if "gpu" in results[0] else {}),
            "summary": True, "figure": figure, "fast": fast, "plain": plain,
            "pair_ratios": [f / p for f, p in zip(fast, plain)],
            "ratio_of_means": (sum(fast) / len(fast)) / (sum(plain) / len(plain))}


def peak_memory(device):
    """The process's peak resident memory so far (CPU), and the peak of CUDA allocations (GPU), in MiB; with the
    process's minor page faults and system CPU seconds so far (what speed.keep_freed_memory saves)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    memory = {"peak_rss_mib": usage.ru_maxrss / 1024,  # Linux: KiB
              "minor_page_faults": usage.ru_minflt, "system_cpu_s": round(usage.ru_stime, 3)}
    if device.type == "cuda":
        memory["peak_cuda_allocated_mib"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
    return memory


# data -----------------------------------------------------------------------------------------

def synthetic_files(args, folder):
    """Paths of a synthetic corpus with at least --questions dev questions, made in folder."""
    spec = importlib.util.spec_from_file_location("make_synthetic_corpus",
                                                  os.path.join(REPO, "data", "make_synthetic_corpus.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    people = max(1000, math.ceil(args.questions * 2937 / 500) + 1)  # dev is 500/2937 of the people
    return module.make_corpus(folder, n_people=people, seed=args.seed)


def left_to_synthetic(args):
    """The inputs the options leave to the synthetic files: "corpus" without --corpus, "dev" for eval without --dev."""
    return [key for key, missing in (("corpus", args.corpus is None), ("dev", args.what == "eval" and args.dev is None))
            if missing]


def batches_forever(loader, dataset, batch_size):
    """The loader's batches, epoch after epoch; a UserError if the corpus does not fill one batch."""
    if len(dataset) < batch_size:
        raise UserError(f"the corpus has fewer documents ({len(dataset)}) than a batch ({batch_size})")
    while True:
        yield from loader


def timed(step, warmup, steps, device):
    """(sum of step()'s results over the timed calls, their seconds, the warm-up's seconds)."""
    started = time.perf_counter()
    for _ in range(warmup):
        step()
    synchronize(device)
    warmup_seconds, started = time.perf_counter() - started, time.perf_counter()
    total = sum(step() for _ in range(steps))
    synchronize(device)
    return total, time.perf_counter() - started, warmup_seconds


def bench_data(args, setup, corpus):
    """The batches the trainer gets: speed.Speed.trainer_options' CorruptionBatches, or on the plain path
    trainer.data_loader over CharCorruptionDataset, moved to the device."""
    dataset = CharCorruptionDataset(corpus, args.block_size)
    batch_size = args.batch_size or RECIPE.pretrain_batch_size
    config = TrainerConfig(batch_size=batch_size, **setup.trainer_options(dataset, batch_size))
    loader = config.train_loader or data_loader(dataset, config, setup.device)
    batches = batches_forever(loader, dataset, config.batch_size)
    steps, warmup = args.steps or 200, 5 if args.warmup is None else args.warmup

    def step():
        x, y = next(batches)
        x, y = x.to(setup.device, non_blocking=True), y.to(setup.device, non_blocking=True)
        return x.size(0)
    examples, seconds, _ = timed(step, warmup, steps, setup.device)
    return {"examples_per_s": examples / seconds, "examples": examples, "batches": steps, "seconds": seconds,
            "batch_size": config.batch_size, "block_size": args.block_size, "documents": len(dataset),
            "pipeline": type(loader).__name__}


# train ----------------------------------------------------------------------------------------

def model_config(args, vocab_size, fast):
    try:
        return config_for_variant(args.variant, vocab_size, args.block_size, bottleneck_dim=args.bottleneck_dim,
                                  n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd,
                                  fused_attention=fast, embd_pdrop=args.dropout, resid_pdrop=args.dropout,
                                  attn_pdrop=args.dropout)
    except ValueError as e:  # sizes GPTConfig refuses
        raise UserError(str(e)) from None


def bench_train(args, setup, corpus):
    """Trainer.train_step itself, with the fast paths run.py gives the trainer (speed.Speed.trainer_options)."""
    device, cuda = setup.device, setup.device.type == "cuda"
    dataset = CharCorruptionDataset(corpus, args.block_size)
    batch_size = args.batch_size or RECIPE.pretrain_batch_size
    steps = args.steps or (20 if cuda else 5)
    # on the CPU the first two steps are still slow (allocator, kernel selection): both untimed
    warmup = args.warmup if args.warmup is not None else (5 if cuda else 2)
    model = GPT(model_config(args, dataset.vocab_size, setup.fused_attention))
    config = TrainerConfig(learning_rate=RECIPE.pretrain_lr, batch_size=batch_size,
                           **setup.trainer_options(dataset, batch_size))
    trainer = Trainer(model, dataset, None, config)
    trainer.prepare()
    batches = batches_forever(trainer.train_loader, dataset, batch_size)

    real = []  # each step's real tokens: its rows' positions up to their last target that is not PAD

    def step():
        x, y = next(batches)
        trainer.train_step(x, y)
        real.append(needed_lengths(y).sum())
        return y.numel()

    tokens, seconds, warmup_seconds = timed(step, warmup, steps, device)
    real_tokens = int(sum(real[warmup:]))
    return {"tokens_per_s": tokens / seconds, "real_tokens_per_s": real_tokens / seconds,
            "real_token_fraction": real_tokens / tokens, "steps": steps, "tokens": tokens, "seconds": seconds,
            "step_ms": 1000 * seconds / steps, "warmup_steps": warmup, "warmup_seconds": warmup_seconds,
            "batch_size": batch_size, "block_size": args.block_size, "n_layer": args.n_layer,
            "n_head": args.n_head, "n_embd": args.n_embd, "n_params": sum(p.numel() for p in model.parameters()),
            "dropout": args.dropout, "fused_attention": setup.fused_attention, "dtype": setup.dtype_name(),
            "tf32": setup.tf32, "fused_adamw": config.fused_adamw, "compiled": trainer.train_model is not trainer.eager,
            "real_tokens_only": trainer.real_tokens, "data": type(trainer.train_loader).__name__,
            "final_loss": trainer.loss}


# eval -----------------------------------------------------------------------------------------

def bench_eval(args, device, fast, corpus, dev_path):
    if args.params:  # the model and, where the file describes it, the vocabulary come from the file
        found = model_description(read_state_dict(args.params))
        if not found:
            print(f"{args.params} does not describe its model: sizes from the options, vocabulary from the corpus",
                  file=sys.stderr)
        itos = list(found["vocab"]) if found else CharCorruptionDataset(corpus, args.block_size).itos
        model = load_model(args.params, itos, fallback=model_config(args, len(itos), fast), fused_attention=fast)
    else:
        itos = CharCorruptionDataset(corpus, args.block_size).itos
        model = GPT(model_config(args, len(itos), fast))
    stoi = {c: i for i, c in enumerate(itos)}
    model.to(device).eval()
    rows = read_qa(dev_path, "dev file")[:args.questions]
    questions = [question for _, question, _ in rows]
    batch_size = args.batch_size or 256
    warmup = 8 if args.warmup is None else args.warmup
    if warmup:
        predict_places(model, questions[:warmup], stoi, itos, device, batched=fast, batch_size=batch_size,
                       progress=False)
    synchronize(device)
    started = time.perf_counter()
    # a progress bar on a terminal only (the plain decoder takes minutes); it redraws at most once a second
    answers = predict_places(model, questions, stoi, itos, device, batched=fast, batch_size=batch_size,
                             progress=sys.stderr.isatty())
    synchronize(device)
    seconds = time.perf_counter() - started
    result = {"questions_per_s": len(questions) / seconds, "questions": len(questions), "seconds": seconds,
              "model": args.params or "random init",
              **{k: getattr(model.config, k) for k in ("variant", "n_layer", "n_head", "n_embd", "block_size")},
              "n_params": sum(p.numel() for p in model.parameters()), "fused_attention": fast,
              "decoder": "batched, KV cache" if fast else "one question at a time (utils.sample)",
              "batch_size": batch_size if fast else 1, "dtype": "float32", "tf32": fast and device.type == "cuda",
              "mean_answer_chars": sum(map(len, answers)) / max(1, len(answers))}
    total, correct = count_correct(rows, answers, dev_path)
    if total:
        result.update(correct=correct, accuracy=correct / total)
    return result


def measure_pairs(args, argv):
    """--pairs: fast and plain in turn, each measurement in a process of its own, so that neither path's
    memory, allocator or caches reach the other's figures; the synthetic files are made once for all."""
    argv = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--pairs"]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_") as folder:
        left = left_to_synthetic(args)
        synthetic = synthetic_files(args, folder) if left else {}
        made = {key: synthetic["wiki" if key == "corpus" else "dev"] for key in left}
        given = [item for key, path in made.items() for item in (f"--{key}", path)]
        for _ in range(args.repeat):
            for plain in (False, True):
                child = subprocess.run([sys.executable, os.path.abspath(__file__), *argv, *given, "--repeat", "1",
                                        *(["--plain"] if plain else [])], stdout=subprocess.PIPE, text=True)
                if child.returncode:
                    sys.exit(child.returncode)  # its error is on stderr already
                result = json.loads(child.stdout)
                result.update({key: "synthetic" for key in made})
                print(json.dumps(result), flush=True)
                results.append(result)
    figure = {"train": "tokens_per_s", "data": "examples_per_s", "eval": "questions_per_s"}[args.what]
    total = summary(figure, results)
    print(json.dumps(total), flush=True)
    ratios = sorted(total["pair_ratios"])
    print(f"{args.what} {figure}, fast {', '.join(f'{x:,.1f}' for x in total['fast'])} against plain "
          f"{', '.join(f'{x:,.1f}' for x in total['plain'])}: {ratios[0]:.2f}-{ratios[-1]:.2f}x a pair, "
          f"{total['ratio_of_means']:.2f}x on the means ({total.get('gpu', total['cpu'])}, "
          f"{total['threads']} threads)", file=sys.stderr)


def main(argv=None):
    args = parse_args(argv)
    if args.pairs:
        return measure_pairs(args, argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    # as run.py decides it
    setup = speed.resolve(device, plain=args.plain, fp32=args.fp32, bf16=args.bf16, compile=args.compile)
    fast = not args.plain
    with tempfile.TemporaryDirectory(prefix="bench_") as folder:
        synthetic = synthetic_files(args, folder) if left_to_synthetic(args) else None
        corpus = read_text(args.corpus, "corpus") if args.corpus else read_text(synthetic["wiki"], "corpus")
        dev_path = args.dev or (synthetic["dev"] if synthetic else None)
        for _ in range(args.repeat):
            set_seed(args.seed)
            if args.what == "train":
                figures = bench_train(args, setup, corpus)
            elif args.what == "data":
                figures = bench_data(args, setup, corpus)
            else:
                figures = bench_eval(args, device, fast, corpus, dev_path)
            result = {**context(args, device, fast), **figures, "kept_freed_memory": setup.kept_freed_memory,
                      **peak_memory(device)}
            result["corpus"] = args.corpus or "synthetic"
            if args.what == "eval":
                result["dev"] = args.dev or "synthetic"
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    run_script(main)
