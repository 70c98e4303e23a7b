"""
Speed of the three hot paths, fast against plain: one JSON object per measurement on stdout (notes on stderr)
with what, variant, device, path ("fast" or "plain"), the figure, its context and the peak memory.

    python tools/bench.py train [--plain] [--device D] [--steps N] [--compile]       -> tokens_per_s
    python tools/bench.py data  [--plain] [--device D] [--steps N]                   -> examples_per_s
    python tools/bench.py eval  [--plain] [--device D] [--questions N] [--params P]  -> questions_per_s

fast is what run.py trains and evaluates with (speed.py); plain is plain attention, fp32, the per-example
dataset, every position computed and one question decoded at a time. --pairs alternates fast and plain, each in
a process of its own, then prints their ratios: a shared machine's speed drifts (docs/performance.md).
Without --corpus and --dev both are synthetic, made in a temporary folder.
"""
import argparse
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

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(REPO, "src"), os.path.join(REPO, "data")]  # the library, the synthetic corpus

import speed
from course import RECIPE
from dataset import CharCorruptionDataset
from decoding import predict_places
from make_synthetic_corpus import make_corpus
from model import GPT, VARIANTS, GPTConfig, config_for_variant
from packing import needed_lengths
from params import load_model, model_description, read_state_dict
from trainer import Trainer, TrainerConfig, data_loader
from utils import UserError, count_correct, read_qa, read_text, resolve_device, run_script, set_seed

FIGURE = {"train": "tokens_per_s", "data": "examples_per_s", "eval": "questions_per_s"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0])
    p.add_argument("what", choices=list(FIGURE))
    p.add_argument("--variant", choices=VARIANTS, default="vanilla")
    p.add_argument("--device", default="auto", help="auto (CUDA, else MPS, else CPU), cpu, cuda, mps")
    p.add_argument("--plain", action="store_true", help="measure the plain path instead of the fast one")
    p.add_argument("--steps", type=int, help="timed steps (train: 20 on CUDA, 5 on CPU) or batches (data: 200)")
    p.add_argument("--warmup", type=int, help="untimed steps (train: 5 CUDA, 2 CPU), batches (data: 5), questions (8)")
    p.add_argument("--batch_size", type=int, help=f"default {RECIPE.pretrain_batch_size} (train, data), 256 (eval)")
    p.add_argument("--block_size", type=int, default=RECIPE.block_size)
    for name in ("n_layer", "n_head", "n_embd"):
        p.add_argument(f"--{name}", type=int, default=getattr(GPTConfig, name))
    p.add_argument("--dropout", type=float, default=GPTConfig.embd_pdrop, help="train: the model's dropout")
    p.add_argument("--bottleneck_dim", type=int, default=RECIPE.bottleneck_dim)
    p.add_argument("--questions", type=int, default=500, help="eval: the first N questions of the file")
    p.add_argument("--params", help="eval: a params file (sizes and vocabulary from it)")
    p.add_argument("--corpus", help="pretraining corpus (default: synthetic)")
    p.add_argument("--dev", help="eval: question<TAB>answer file (default: synthetic)")
    p.add_argument("--compile", action="store_true", help="train: torch.compile the model")
    precision = p.add_mutually_exclusive_group()  # as in run.py
    precision.add_argument("--fp32", action="store_true", help="train: float32 where bf16 autocast is the default")
    precision.add_argument("--bf16", action="store_true", help="train: bf16 autocast anywhere (emulated without AMX)")
    p.add_argument("--repeat", type=int, default=1, help="measurements in a row (one JSON line each)")
    p.add_argument("--pairs", action="store_true", help="fast and plain in turn, --repeat pairs, then their ratios")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (CPU)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.pairs and args.plain:
        p.error("--pairs measures both paths: leave out --plain")
    return args


def cpu_model():
    """The CPU's model name from /proc/cpuinfo (Linux), else what platform knows."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def synthetic_inputs(args, folder):
    """{"corpus": path, "dev": path} of the inputs the options leave to a synthetic corpus made in folder: the
    corpus without --corpus, eval's dev file (at least --questions questions) without --dev."""
    left = [key for key in ("corpus", "dev") if getattr(args, key) is None and (key == "corpus" or args.what == "eval")]
    if not left:
        return {}
    people = max(1000, math.ceil(args.questions * 2937 / 500) + 1)  # dev is 500/2937 of the people
    made = make_corpus(folder, n_people=people, seed=args.seed)
    return {key: made["wiki" if key == "corpus" else "dev"] for key in left}


def model_config(args, vocab_size, fast):
    try:
        return config_for_variant(args.variant, vocab_size, args.block_size, bottleneck_dim=args.bottleneck_dim,
                                  n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd, fused_attention=fast,
                                  embd_pdrop=args.dropout, resid_pdrop=args.dropout, attn_pdrop=args.dropout)
    except ValueError as e:  # sizes GPTConfig refuses
        raise UserError(str(e)) from None


def batches_forever(loader, dataset, batch_size):
    """The loader's batches, epoch after epoch; a UserError if the corpus does not fill one batch."""
    if len(dataset) < batch_size:
        raise UserError(f"the corpus has fewer documents ({len(dataset)}) than a batch ({batch_size})")
    while True:
        yield from loader


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
    """The span-corruption batches the trainer gets (fast: speed's CorruptionBatches; plain: the DataLoader over
    CharCorruptionDataset), moved to the device."""
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


def bench_train(args, setup, corpus):
    """Trainer.train_step, data preparation included, with the fast paths run.py gives the trainer. tokens_per_s
    counts every position, as the course's schedule does; real_tokens_per_s only the real ones."""
    dataset = CharCorruptionDataset(corpus, args.block_size)
    batch_size = args.batch_size or RECIPE.pretrain_batch_size
    cuda = setup.device.type == "cuda"  # on the CPU the first two steps are still slow (allocator, kernels): untimed
    steps, warmup = args.steps or (20 if cuda else 5), args.warmup if args.warmup is not None else (5 if cuda else 2)
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
    tokens, seconds, warmup_seconds = timed(step, warmup, steps, setup.device)
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


def bench_eval(args, device, fast, corpus, dev_path):
    """decoding.predict_places on the dev questions. A random model never emits ⁇, so the fast decoder cannot
    stop early: measure a trained one (--params) as well."""
    found = model_description(read_state_dict(args.params)) if args.params else None
    if args.params and not found:
        print(f"{args.params} does not describe its model: sizes from the options, vocabulary from the corpus",
              file=sys.stderr)
    # the model and, where the params file describes it, the vocabulary come from the file
    itos = list(found["vocab"]) if found else CharCorruptionDataset(corpus, args.block_size).itos
    config = model_config(args, len(itos), fast)
    model = load_model(args.params, itos, fallback=config, fused_attention=fast) if args.params else GPT(config)
    model = model.to(device).eval()
    rows = read_qa(dev_path, "dev file")[:args.questions]
    questions = [question for _, question, _ in rows]
    stoi = {c: i for i, c in enumerate(itos)}
    batch_size, warmup = args.batch_size or 256, 8 if args.warmup is None else args.warmup

    def decode(some, progress=False):
        return predict_places(model, some, stoi, itos, device, batched=fast, batch_size=batch_size, progress=progress)
    if warmup:
        decode(questions[:warmup])
    synchronize(device)
    started = time.perf_counter()
    answers = decode(questions, progress=sys.stderr.isatty())  # a progress bar on a terminal: plain takes minutes
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
    """--pairs: fast and plain in turn, each in a process of its own, so that neither path's memory, allocator
    or caches reach the other's figures; the synthetic files are made once for all."""
    argv = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--pairs"]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_") as folder:
        made = synthetic_inputs(args, folder)
        given = [a for key, path in made.items() for a in (f"--{key}", path)]
        for _ in range(args.repeat):
            for plain in (False, True):
                child = subprocess.run([sys.executable, os.path.abspath(__file__), *argv, *given, "--repeat", "1",
                                        *(["--plain"] if plain else [])], stdout=subprocess.PIPE, text=True)
                if child.returncode:
                    sys.exit(child.returncode)  # its error is on stderr already
                results.append({**json.loads(child.stdout), **dict.fromkeys(made, "synthetic")})
                print(json.dumps(results[-1]), flush=True)
    first, figure = results[0], FIGURE[args.what]
    fast, plain = [r[figure] for r in results[0::2]], [r[figure] for r in results[1::2]]
    ratios = [f / p for f, p in zip(fast, plain)]
    total = {**{k: first[k] for k in ("what", "variant", "device", "cpu", "torch", "threads", "gpu") if k in first},
             "summary": True, "figure": figure, "fast": fast, "plain": plain, "pair_ratios": ratios,
             "ratio_of_means": (sum(fast) / len(fast)) / (sum(plain) / len(plain))}
    print(json.dumps(total), flush=True)
    print(f"{args.what} {figure}, fast {', '.join(f'{x:,.1f}' for x in fast)} against plain "
          f"{', '.join(f'{x:,.1f}' for x in plain)}: {min(ratios):.2f}-{max(ratios):.2f}x a pair, "
          f"{total['ratio_of_means']:.2f}x on the means ({first.get('gpu', first['cpu'])}, "
          f"{first['threads']} threads)", file=sys.stderr)


def main(argv=None):
    args = parse_args(argv)
    if args.pairs:
        return measure_pairs(args, argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    setup = speed.resolve(device, plain=args.plain, fp32=args.fp32, bf16=args.bf16, compile=args.compile)  # as run.py
    with tempfile.TemporaryDirectory(prefix="bench_") as folder:
        made = synthetic_inputs(args, folder)
        corpus, dev_path = read_text(args.corpus or made["corpus"], "corpus"), args.dev or made.get("dev")
        for _ in range(args.repeat):
            set_seed(args.seed)
            if args.what == "eval":
                figures = bench_eval(args, device, not args.plain, corpus, dev_path)
            else:
                figures = (bench_train if args.what == "train" else bench_data)(args, setup, corpus)
            usage = resource.getrusage(resource.RUSAGE_SELF)  # memory, and what speed.keep_freed_memory saves
            result = {"what": args.what, "variant": args.variant, "device": device.type,
                      "path": "plain" if args.plain else "fast", "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "cpu": cpu_model(),
                      **({"gpu": torch.cuda.get_device_name(device)} if cuda else {}),
                      **figures, "kept_freed_memory": setup.kept_freed_memory,
                      "peak_rss_mib": usage.ru_maxrss / 1024,  # Linux: KiB
                      "minor_page_faults": usage.ru_minflt, "system_cpu_s": round(usage.ru_stime, 3),
                      **({"peak_cuda_allocated_mib": torch.cuda.max_memory_allocated(device) / 2**20} if cuda else {}),
                      "corpus": args.corpus or "synthetic"}
            if args.what == "eval":
                result["dev"] = args.dev or "synthetic"
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    run_script(main)
