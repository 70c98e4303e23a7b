"""
The assignment's runs, written once: each run's name, step, inputs, output and command, for a course
(its handout's variants, course.py). run.sh's targets, `all` (through make), `help` and report.py read it.

    python src/runs.py list [--course C] [--data D] [--out O]           # NAME OUTPUT INPUTS..., a run a line
    python src/runs.py command NAME [--course C] [--data D] [--out O]   # a line each: its name, yes/no (trains),
                                                                        # its output, its command
"""
import argparse
import os
import sys
from dataclasses import dataclass

from course import COURSES, CS224N, RECIPE, get_course

DATA_FILES = ("wiki.txt", "birth_places_train.tsv", "birth_dev.tsv", "birth_test_inputs.tsv")
# the XCS224N handout's spellings of two targets
ALIASES = {"vanilla_finetime_without_pretrain": "vanilla_finetune_without_pretrain",
           "synthesizer_finetrain_with_pretrain": "synthesizer_finetune_with_pretrain"}


@dataclass(frozen=True)
class Run:
    name: str  # run.sh's target
    variant: "str | None"  # None: the London baseline
    step: str  # baseline, pretrain, finetune, dev or test
    pretrained: bool  # part of the pretrain -> finetune -> evaluate chain
    output: str  # the file it writes (its record beside it: OUTPUT.json)
    inputs: tuple  # the files it reads
    command: tuple  # the script under src/ and its arguments

    @property
    def training(self):
        return self.step in ("pretrain", "finetune")


def assignment_runs(course=CS224N, data=".", out=".", variants=None):
    """[Run] of the course's handout in the order `all` runs them: inputs from the folder data, outputs in out;
    variants: only these of the course's."""
    course = get_course(course)
    wiki, train, dev, test = (os.path.join(data, name) for name in DATA_FILES)

    def o(name):
        return os.path.join(out, name)

    def run_py(function, variant, *args):
        # CS224N's commands are the handout's; other courses name their recipe
        bottleneck = ["--bottleneck_dim", str(RECIPE.handout_bottleneck_dim)] if variant == "perceiver" else []
        return ("src/run.py", function, variant, wiki, *bottleneck, *args,
                *([] if course is CS224N else ["--course", course.name]))

    def evaluations(variant, params, pretrained):
        with_ = "with" if pretrained else "without"
        for split, path in (("dev", dev), ("test", test)):
            predictions = o(f"{variant}.{'pretrain' if pretrained else 'nopretrain'}.{split}.predictions")
            runs.append(Run(f"{variant}_eval_{split}_{with_}_pretrain", variant, split, pretrained, predictions,
                            (params, path), run_py("evaluate", variant, "--reading_params_path", params,
                                                   "--eval_corpus_path", path, "--outputs_path", predictions)))

    london, scratch = o("london_baseline_accuracy.txt"), o("vanilla.model.params")
    runs = [Run("london_baseline", None, "baseline", False, london, (dev,),
                ("src/london_baseline.py", "--eval_corpus_path", dev, "--outputs_path", london)),
            Run("vanilla_finetune_without_pretrain", "vanilla", "finetune", False, scratch, (wiki, train),
                run_py("finetune", "vanilla", "--writing_params_path", scratch, "--finetune_corpus_path", train))]
    evaluations("vanilla", scratch, False)
    for v in [v for v in course.variants if variants is None or v in variants]:
        pretrained, finetuned = o(f"{v}.pretrain.params"), o(f"{v}.finetune.params")
        runs.append(Run(f"{v}_pretrain", v, "pretrain", True, pretrained, (wiki,),
                        run_py("pretrain", v, "--pretrain_lr", f"{RECIPE.pretrain_lr:g}",
                               "--writing_params_path", pretrained)))
        runs.append(Run(f"{v}_finetune_with_pretrain", v, "finetune", True, finetuned, (pretrained, train),
                        run_py("finetune", v, "--reading_params_path", pretrained, "--writing_params_path",
                               finetuned, "--finetune_corpus_path", train)))
        evaluations(v, finetuned, True)
    return runs


def find_run(name, *args, **kwargs):
    """The Run a target name (or a handout spelling of it) names, or None; the rest: assignment_runs'."""
    name = ALIASES.get(name, name)
    return next((run for run in assignment_runs(*args, **kwargs) if run.name == name), None)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.strip().split("\n\n")[0])
    p.add_argument("what", choices=["list", "command"])
    p.add_argument("name", nargs="?", help="command: the run's target name")
    p.add_argument("--course", choices=list(COURSES), default=CS224N.name)
    p.add_argument("--data", default=".", help="the folder of wiki.txt and the .tsv files")
    p.add_argument("--out", default=".", help="the folder of the params and predictions")
    p.add_argument("--variants", nargs="+", help="only these of the course's variants")
    args = p.parse_args(argv)
    where = (args.course, args.data, args.out, args.variants)
    if args.what == "list":
        for run in assignment_runs(*where):
            print(run.name, run.output, *run.inputs)
        return 0
    run = find_run(args.name or "", *where)
    if run is None:
        print(f"error: unknown target '{args.name}' (./run.sh help lists them)", file=sys.stderr)
        return 2
    print("\n".join((run.name, "yes" if run.training else "no", run.output) + run.command))  # a line each
    return 0


if __name__ == "__main__":
    sys.exit(main())
