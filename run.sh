#!/usr/bin/env bash
# Every assignment run by name, plus setup, demo, test and all.  ./run.sh help
#
#   ./run.sh setup                 create .venv from requirements.txt (done on demand by the rest)
#   ./run.sh demo [VARIANT] [OPT]  synthetic corpus, small model, the whole experiment in minutes on a CPU;
#                                  OPT go to every src/run.py, e.g. the CS224N handout's experiments --shared_qk,
#                                  --mask_after_softmax, --position_embedding sinusoidal (-> demo-vanilla-shared_qk/)
#                                  DEMO_SEED=N seeds corpus and training (-> demo-vanilla-seedN/)
#   ./run.sh demo-variants         the demo of every variant: results/demo-variants/variants.{md,json,png}
#   ./run.sh demo-augmentation [V] the demo at 1 and at 3 wiki lines per person, same number of examples:
#                                  results/demo-augmentation/augmentation.{md,json,png}
#   ./run.sh test                  the pytest suite
#   ./run.sh report [OPTIONS]      results/README.md, results.json and loss plots from the runs' records (tools/report.py -h)
#   ./run.sh bench                 the speed table (docs/performance.md), fast and plain in turn: results/bench/*.jsonl
#   ./run.sh cpu_real              the real data's vanilla runs with a small model, about 2 h on 2 CPU cores:
#                                  results/cpu_real/ (docs/experiments.md)
#   ./run.sh [--synthetic] TARGET [compile|no-compile] [BACKEND]
#                                  one run of the assignment (see help), or `all` of them in order (make skips
#                                  those up to date); compile: torch.compile the training runs, with BACKEND
#                                  (inductor, aot_eager, cudagraphs) if given; no-compile is the default
#   ./run.sh --course C TARGET     the runs of course C (src/course.py): xcs224n (the synthesizer year) or
#                                  xcs224n-2025 (RoPE); outputs in src/submission/, real data also looked up
#                                  in src/data/, logs in results/logs/C/; the handout's target names work
#
# Real data is looked up in the repo root, then data/ (see data/README.md); --synthetic uses
# data/synthetic/ instead (generated if missing). Extra options for src/run.py go in RUN_ARGS,
# e.g. RUN_ARGS="--n_layer 2 --n_embd 64 --pretrain_epochs 5" ./run.sh --synthetic all
# Environment: DATA_DIR (where to look for real data), SYNTHETIC_DIR (default data/synthetic), RESULTS_DIR
# (default results: logs/, synthetic/ and demo-*/ go there), OUT_DIR (where the runs' params and predictions go;
# default: the repo root, as in the handouts); relative paths are from the repo root.
# PYTHON: an interpreter to run as it is instead of .venv (a conda env, a cluster's module, a machine
# without network): nothing is installed, and a missing package is named, e.g. PYTHON=python ./run.sh all
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
PY=${PYTHON:-"$ROOT/.venv/bin/python"}
RUN_MODULES="torch tqdm numpy tensorboard"  # what the runs import (matplotlib only adds plots)
TEST_MODULES="$RUN_MODULES matplotlib pytest hypothesis"
RESULTS=${RESULTS_DIR:-results}
COURSE=cs224n

setup() {  # [MODULES]: what the target imports, checked in $PYTHON (default RUN_MODULES)
  if [ -n "${PYTHON:-}" ]; then
    local missing
    # shellcheck disable=SC2086  # the module names, one word each
    missing=$("$PY" -c 'import importlib.util as u, sys; print(*[m for m in sys.argv[1:] if not u.find_spec(m)])' \
      ${1:-$RUN_MODULES}) || { echo "error: PYTHON=$PYTHON does not run" >&2; exit 2; }
    [ -z "$missing" ] && return 0
    echo "error: PYTHON=$PYTHON lacks $missing: install requirements.txt into it, or unset PYTHON to use .venv" >&2
    exit 2
  fi
  if [ -x "$PY" ] && "$PY" -c "import ${TEST_MODULES// /, }" 2>/dev/null; then  # .venv has all of requirements.txt
    return 0
  fi
  echo "setting up .venv from requirements.txt ..."
  python3 -m venv .venv
  "$PY" -m pip install --quiet --upgrade pip >/dev/null || true
  "$PY" -m pip install --quiet -r requirements.txt
}

# ---------------------------------------------------------------- data and logging
SYNTHETIC=0
data_dir() {
  if [ "$SYNTHETIC" = 1 ]; then
    local S=${SYNTHETIC_DIR:-data/synthetic}
    [ -f "$S/wiki.txt" ] || "$PY" data/make_synthetic_corpus.py --out "$S" >&2
    echo "$S"; return
  fi
  local dirs=". data"
  [ "$COURSE" = cs224n ] || dirs=". data src/data"  # XCS224N keeps its data in src/data/
  for d in ${DATA_DIR:-$dirs}; do
    if [ -f "$d/wiki.txt" ]; then echo "$d"; return; fi
  done
  echo "error: wiki.txt not found in ${DATA_DIR:-the repo root or data/}. Get the real files as data/README.md says," >&2
  echo "       or use the synthetic corpus: ./run.sh --synthetic TARGET" >&2
  exit 1
}

# outputs: handout file names in the repo root for real data (XCS224N: src/submission/), results/synthetic/
# (results/synthetic/xcs224n/) otherwise
out_dir() {
  if [ -n "${OUT_DIR:-}" ]; then mkdir -p "$OUT_DIR"; echo "$OUT_DIR"; return; fi
  local O=.
  if [ "$SYNTHETIC" = 1 ]; then O="$RESULTS/synthetic"; [ "$COURSE" = cs224n ] || O="$O/$COURSE"; mkdir -p "$O"
  elif [ "$COURSE" != cs224n ]; then O=src/submission; fi
  echo "$O"
}

# run LOG OUTPUT CMD...: run and log to LOG as well as the terminal, then record how it went in LOG's .json
# (command, output, exit status; report.py reads it); LOG is a path ending in .log, or a NAME for
# results/logs/NAME.log (the assignment's targets)
run() {
  local log=$1 output=$2 status=0; shift 2
  case "$log" in *.log) ;; *) log="$RESULTS/logs/$log.log" ;; esac
  mkdir -p "$(dirname "$log")"
  echo "+ $*" | tee "$log"
  "$@" 2>&1 | tee -a "$log" || status=$?
  "$PY" -c 'import json, sys; print(json.dumps({"command": sys.argv[3:], "output": sys.argv[2],
    "exit_status": int(sys.argv[1])}))' "$status" "$output" "$@" > "${log%.log}.json"
  return "$status"
}

# ---------------------------------------------------------------- the runs of the handouts (src/runs.py)
runs() {  # VARIANTS: only these of the course's
  local D O; D=$(data_dir); O=$(out_dir)
  # shellcheck disable=SC2086  # VARIANTS: one word each
  "$PY" src/runs.py "$@" --course "$COURSE" --data "$D" --out "$O" ${VARIANTS:+--variants $VARIANTS}
}

target() {
  local spec
  data_dir >/dev/null  # missing data: its error and exit status, before anything runs
  mapfile -t spec < <(runs command "$1") && [ ${#spec[@]} -gt 0 ] || exit 2  # runs.py said why
  local name=${spec[0]} trains=${spec[1]} output=${spec[2]} log
  log=${LOGS:+$LOGS/$name.log}
  [ "$COURSE" = cs224n ] || log="$RESULTS/logs/$COURSE/$name.log"
  [ "$trains" = yes ] || TRAIN_ARGS=""
  local extra="$TRAIN_ARGS ${RUN_ARGS:-}"
  [ "${spec[3]}" = src/run.py ] || extra=""  # RUN_ARGS are src/run.py's options
  # shellcheck disable=SC2086  # RUN_ARGS and TRAIN_ARGS: options, one word each
  run "${log:-$name}" "$output" "$PY" "${spec[@]:3}" $extra
}

# every target in order, each unless its output is newer than its inputs (make decides)
all() {
  local self=("$ROOT/run.sh" --course "$COURSE") listing
  [ "$SYNTHETIC" = 1 ] && self+=(--synthetic)
  data_dir >/dev/null
  listing=$(runs list)
  if ! command -v make >/dev/null; then
    echo "(no make: running the targets whose output is missing)" >&2
    while read -r name output _; do [ -f "$output" ] || target "$name" </dev/null; done <<< "$listing"
    return
  fi
  # shellcheck disable=SC2086
  {
    echo "all: $(cut -d' ' -f2 <<< "$listing" | tr '\n' ' ')"
    while read -r name output inputs; do
      printf '%s: %s\n\t@%s %s %s\n' "$output" "$inputs" "${self[*]}" "$name" "$WORDS"
    done <<< "$listing"
  } | make --no-print-directory -f - all
}

help() {
  sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"  # the comment block at the top
  echo
  if [ "$COURSE" = cs224n ]; then echo "Targets (./run.sh --course xcs224n|xcs224n-2025 help lists XCS224N's):"
  else echo "Targets of $COURSE:"; fi
  "$PY" src/runs.py list --course "$COURSE" --out "$(out_dir)" | while read -r name output _; do printf "  %-36s -> %s\n" "$name" "$output"; done
  echo "  all                                  every target above in order, skipping those already up to date"
  echo "  XCS224N's handout spellings: vanilla_finetime_without_pretrain = vanilla_finetune_without_pretrain,"
  echo "  synthesizer_finetrain_with_pretrain = synthesizer_finetune_with_pretrain"
}

# ---------------------------------------------------------------- demo: the experiment in minutes on a CPU
bottleneck() {  # the handout's perceiver bottleneck (src/course.py), for the demo's perceiver
  [ "$1" = perceiver ] || return 0
  echo "--bottleneck_dim $("$PY" -c 'import sys; sys.path.insert(0, "src"); import course
print(course.RECIPE.handout_bottleneck_dim)')"
}

demo() {
  local variant=vanilla
  if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then variant=$1; shift; fi
  # the remaining options go to every src/run.py call; they also name the output directory
  local extra="$*" tag seed=${DEMO_SEED:-0} people=${DEMO_PEOPLE:-200} bios=${DEMO_BIOS:-3}
  tag=$(printf '%s' "$extra" | sed 's/--//g' | tr -cs 'A-Za-z0-9_.' '-')
  [ "$seed" = 0 ] || tag="${tag:+$tag-}seed$seed"
  local O="${DEMO_OUT:-$RESULTS/demo-$variant${tag:+-$tag}}"
  local D="${SYNTHETIC_DIR:-data/synthetic}/people$people-bios$bios-seed$seed"
  mkdir -p "$O"
  # knowledge-augmented corpus (README, Results): regenerated when another generator version made it
  "$PY" data/make_synthetic_corpus.py --out "$D" --people "$people" --bios_per_person "$bios" --seed "$seed" \
    --keep_if_current
  # a small model and short schedules: the demo's own settings, not the assignment recipe
  local small="--n_layer 2 --n_head 4 --n_embd 64 --dropout 0 --batch_size 32 --device cpu --seed $seed"
  small="$small --tb_expt_name demo $extra"
  local W="$D/wiki.txt" started=$SECONDS
  cp "$D/corpus.json" "$O/corpus.json"  # which corpus this demo ran on, for tools/demo_report.py
  # shellcheck disable=SC2086
  {
    run "$O/logs/baseline.log" "$O/baseline_accuracy.txt" "$PY" src/london_baseline.py --eval_corpus_path "$D/birth_dev.tsv" \
      --most_common_from "$D/birth_places_train.tsv" --outputs_path "$O/baseline_accuracy.txt"
    run "$O/logs/finetune_without_pretrain.log" "$O/nopretrain.params" "$PY" src/run.py finetune "$variant" "$W" $small $(bottleneck "$variant") \
      --finetune_epochs "${DEMO_SCRATCH_EPOCHS:-40}" --writing_params_path "$O/nopretrain.params" \
      --finetune_corpus_path "$D/birth_places_train.tsv"
    run "$O/logs/eval_without_pretrain.log" "$O/nopretrain.dev.predictions" "$PY" src/run.py evaluate "$variant" "$W" $small $(bottleneck "$variant") \
      --reading_params_path "$O/nopretrain.params" --eval_corpus_path "$D/birth_dev.tsv" \
      --outputs_path "$O/nopretrain.dev.predictions"
    run "$O/logs/pretrain.log" "$O/pretrain.params" "$PY" src/run.py pretrain "$variant" "$W" $small $(bottleneck "$variant") \
      --pretrain_epochs "${DEMO_PRETRAIN_EPOCHS:-320}" --writing_params_path "$O/pretrain.params"
    run "$O/logs/finetune_with_pretrain.log" "$O/finetune.params" "$PY" src/run.py finetune "$variant" "$W" $small $(bottleneck "$variant") \
      --finetune_epochs "${DEMO_FINETUNE_EPOCHS:-20}" --finetune_lr "${DEMO_FINETUNE_LR:-2e-4}" \
      --reading_params_path "$O/pretrain.params" --writing_params_path "$O/finetune.params" \
      --finetune_corpus_path "$D/birth_places_train.tsv"
    run "$O/logs/eval_with_pretrain.log" "$O/pretrain.dev.predictions" "$PY" src/run.py evaluate "$variant" "$W" $small $(bottleneck "$variant") \
      --reading_params_path "$O/finetune.params" --eval_corpus_path "$D/birth_dev.tsv" \
      --outputs_path "$O/pretrain.dev.predictions"
    # did pretraining store the dev people's birth places, and can other words lead to them? (README, Results)
    run "$O/logs/probe_recall.log" "$O/probe_recall.json" "$PY" tools/probe_recall.py "$O/pretrain.params" "$W" "$D/birth_dev.tsv" \
      --json_path "$O/probe_recall.json"
  }
  local seconds=$((SECONDS - started))
  echo "$seconds" > "$O/seconds.txt"
  DEMO_DIR=$O  # for demo_variants
  local acc
  mapfile -t acc < <("$PY" tools/report.py --accuracy "$O/baseline_accuracy.txt.json" \
    "$O/nopretrain.dev.predictions.json" "$O/pretrain.dev.predictions.json")
  echo
  echo "Demo results ($variant${extra:+ $extra}, synthetic corpus of $people people x $bios lines, seed $seed," \
    "dev set, $(nproc) CPU cores, ${seconds} s):"
  printf "  %-34s %s\n" "most common place baseline" "${acc[0]}"
  printf "  %-34s %s\n" "$variant without pretraining" "${acc[1]}"
  printf "  %-34s %s\n" "$variant pretrained + finetuned" "${acc[2]}"
  printf "  %-34s %s\n" "pretrained, recalled from own line" "$("$PY" -c 'import json, sys
print("{} out of {}".format(*json.load(open(sys.argv[1]))["own line"]))' "$O/probe_recall.json")"
}

# the demo at 1 wiki line per person and at DEMO_BIOS (3), on the same number of training examples
demo_augmentation() {
  local variant=${1:-vanilla} bios=${DEMO_BIOS:-3} epochs=${DEMO_PRETRAIN_EPOCHS:-320}
  local O="$RESULTS/demo-augmentation${1:+-$1}"
  DEMO_OUT="$O/bios1" DEMO_BIOS=1 DEMO_PRETRAIN_EPOCHS=$((epochs * bios)) demo "$variant"
  DEMO_OUT="$O/bios$bios" DEMO_BIOS=$bios DEMO_PRETRAIN_EPOCHS=$epochs demo "$variant"
  "$PY" tools/demo_report.py "$O/bios1" "$O/bios$bios" --by bios_per_person --out "$O" --name augmentation
}

# the demo of every variant, then one table, JSON and chart of them all
demo_variants() {
  local variant dirs=()
  for variant in $("$PY" -c 'import sys; sys.path.insert(0, "src"); import model; print(*model.VARIANTS)'); do
    demo "$variant" "$@"
    dirs+=("$DEMO_DIR")
  done
  local out="$RESULTS/demo-variants"
  [ "${DEMO_SEED:-0}" = 0 ] || out="$out-seed$DEMO_SEED"
  "$PY" tools/demo_report.py "${dirs[@]}" --by variant --out "$out" --name variants
}

# ---------------------------------------------------------------- cpu_real: the real data in one sitting on a CPU
# The assignment's runs for vanilla with a smaller model (2 layers, 4 heads, 96 dims) and no dropout; the
# epochs, batch sizes, learning rates and schedules stay the handout's. Like `all`, a rerun skips finished
# targets, and --resume continues an interrupted training from its checkpoint. Outputs: results/cpu_real/
CPU_REAL_ARGS="--n_layer 2 --n_head 4 --n_embd 96 --dropout 0 --device cpu"
cpu_real() {
  [ "$COURSE" = cs224n ] || { echo "error: cpu_real is CS224N's recipe only" >&2; exit 2; }
  local O="$RESULTS/cpu_real" D started=$SECONDS
  D=$(data_dir)
  OUT_DIR=$O LOGS=$O/logs VARIANTS=vanilla RUN_ARGS="$CPU_REAL_ARGS --resume --tb_expt_name cpu_real ${RUN_ARGS:-}" all
  # is the dev people's birth place in the pretrained model, and from which prompts? (README, Results)
  [ -f "$O/probe_recall.json" ] && [ "$O/vanilla.pretrain.params" -ot "$O/probe_recall.json" ] ||
    run "$O/logs/probe_recall.log" "$O/probe_recall.json" "$PY" tools/probe_recall.py "$O/vanilla.pretrain.params" "$D/wiki.txt" \
      "$D/birth_dev.tsv" --json_path "$O/probe_recall.json"
  echo
  echo "cpu_real results (dev set, $CPU_REAL_ARGS, $(nproc) CPU cores; this invocation took $((SECONDS - started)) s):"
  local acc
  mapfile -t acc < <("$PY" tools/report.py --accuracy "$O/london_baseline_accuracy.txt.json" \
    "$O/vanilla.nopretrain.dev.predictions.json" "$O/vanilla.pretrain.dev.predictions.json")
  printf "  %-34s %s\n" "London baseline" "${acc[0]}"
  printf "  %-34s %s\n" "vanilla without pretraining" "${acc[1]}"
  printf "  %-34s %s\n" "vanilla pretrained + finetuned" "${acc[2]}"
}

# ---------------------------------------------------------------- bench: the README's speed table
# fast and plain in turn, two pairs each (bench.py --pairs); one JSON line per measurement, the
# summary last, in $RESULTS/bench/NAME.jsonl. Run it alone on the machine (minutes on a CPU).
bench() {
  local D="${SYNTHETIC_DIR:-data/synthetic}/people200-bios3-seed0" trained="$RESULTS/demo-vanilla/finetune.params"
  mkdir -p "$RESULTS/bench"
  "$PY" data/make_synthetic_corpus.py --out "$D" --people 200 --bios_per_person 3 --seed 0 --keep_if_current
  bench_row eval_random eval  # the bench's own synthetic dev set, 500 questions
  if [ -f "$trained" ]; then bench_row eval_demo_model eval --params "$trained"
  else echo "(no $trained: run ./run.sh demo first to time a trained model's evaluation)" >&2; fi
  bench_row train_recipe train
  bench_row train_demo_shape train --n_layer 2 --n_head 4 --n_embd 64 --batch_size 32 --dropout 0 --steps 100 \
    --warmup 5 --corpus "$D/wiki.txt"
}

bench_row() {  # NAME BENCH_ARGS...: two fast/plain pairs into $RESULTS/bench/NAME.jsonl
  local name=$1; shift
  echo "== $name" >&2
  # shellcheck disable=SC2086  # BENCH_ARGS: options appended to every row (the tests' tiny sizes)
  "$PY" tools/bench.py "$@" --pairs --repeat 2 ${BENCH_ARGS:-} > "$RESULTS/bench/$name.jsonl"
}

# ---------------------------------------------------------------- dispatch
while [ $# -gt 0 ] && [ "${1#--}" != "$1" ]; do
  case "$1" in
    --synthetic) SYNTHETIC=1 ;;
    --course) [ $# -gt 1 ] || { echo "error: --course needs a name (src/course.py)" >&2; exit 2; }; COURSE=$2; shift ;;
    --course=*) COURSE=${1#--course=} ;;
    *) echo "error: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
cmd=${1:-help}
[ $# -gt 0 ] && shift
# TARGET|all [compile|no-compile] [BACKEND]: torch.compile for the training runs, with its backend
WORDS="$*" TRAIN_ARGS=""
train_words() {
  while [ $# -gt 0 ]; do
    case "$1" in
      compile) TRAIN_ARGS="$TRAIN_ARGS --compile" ;;
      no-compile) ;;
      inductor|aot_eager|cudagraphs) TRAIN_ARGS="$TRAIN_ARGS --backend $1" ;;
      *) echo "error: '$1' after $cmd: expected compile, no-compile or a backend (inductor, aot_eager, cudagraphs)" >&2
         exit 2 ;;
    esac
    shift
  done
}
case "$cmd" in
  help|-h) help ;;
  setup) setup ;;
  test) setup "$TEST_MODULES"; exec "$PY" -m pytest -q tests "$@" ;;
  demo) setup; demo "$@" ;;
  demo-augmentation) setup "$RUN_MODULES matplotlib"; demo_augmentation "$@" ;;
  demo-variants) setup "$RUN_MODULES matplotlib"; demo_variants "$@" ;;
  report) setup; L="$RESULTS/logs"; [ "$COURSE" = cs224n ] || L="$L/$COURSE"
    exec "$PY" tools/report.py --course "$COURSE" --logs "$L" --demos "$RESULTS" --out "$RESULTS" "$@" ;;
  all) train_words "$@"; setup; all ;;
  cpu_real) setup; cpu_real ;;
  bench) setup; bench ;;
  *) train_words "$@"; setup; target "$cmd" ;;
esac; exit  # on this line, so that a run.sh edited while it runs never reads on
