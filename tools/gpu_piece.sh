#!/usr/bin/env bash
# Training the detector on a machine lent for minutes with a size limit on what travels
# (docs/training.md, "Training on a lent GPU machine").
#
#   here:  bash tools/gpu_piece.sh prepare
#          .carry/: cil24_train and cil24_val packed small (tools/pack_dataset.py), and the
#          wheels that machine lacks for Python 3.12 (the pins of requirements.txt) with the
#          detectron2 sdist, all through this machine's pip configuration
#   there: bash tools/gpu_piece.sh train OUT MINUTES [tools/cil_recipe.py arguments]
#          (their --opts, last, are added after the piece's own, so they win)
#          installs what .carry/ holds, trains one piece of the CIL recipe on the GPU: as many
#          iterations as fit in MINUTES (--fit-minutes; --iters, when given, at most), with
#          SOLVER.STOP_AFTER_MINUTES MINUTES as the bound (output/ kept while the machine stays
#          warm, so the next piece resumes exactly), then writes into OUT the float16 weights in parts
#          of at most 15 MiB (weights.pth.part-aa, ...), metrics.json and the log's tail
#   here:  cat OUT/weights.pth.part-* > W.pth, then --init W.pth for a piece on a fresh
#          machine, or --weights W.pth --config-file configs/cpu/f_deepacc_cil_r18_crops.yaml
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=.carry
PACKAGES="fvcore iopath yacs termcolor pycocotools omegaconf iscn-authenticator pyryotype"

pin() {  # the requirements.txt line of a package, else the name alone
  grep -i -E "^$1==" requirements.txt || echo "$1"
}

case "${1:-}" in
prepare)
  PY=${PYTHON:-.venv/bin/python}
  rm -rf "$CARRY" && mkdir -p "$CARRY/wheels"
  $PY tools/pack_dataset.py --dataset cil24_train --out "$CARRY/datasets/cilpack" --split train
  $PY tools/pack_dataset.py --dataset cil24_val --out "$CARRY/datasets/cilpack" --split val
  $PY tools/install_detectron2.py --download-only "$CARRY/wheels"
  for p in $PACKAGES antlr4-python3-runtime; do
    # a wheel for that machine's Python where one exists, else one built here from the sdist
    # (the packages without a binary wheel are pure Python)
    $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 -d "$CARRY/wheels" "$(pin "$p")" 2>/dev/null ||
      $PY -m pip wheel -q --no-deps -w "$CARRY/wheels" "$(pin "$p")"
  done
  du -sh "$CARRY" "$CARRY"/*
  ;;
train)
  OUT=${2:?OUT folder}
  MINUTES=$(awk -v m="${3:?minutes of training}" 'BEGIN { printf "%.2f", m }')  # a float key
  shift 3
  PY=${PYTHON:-python3}
  if ! $PY -c "import detectron2" 2>/dev/null; then
    $PY -m pip install -q --no-index --no-deps --disable-pip-version-check "$CARRY"/wheels/*.whl
    $PY tools/install_detectron2.py --sdist "$CARRY"/wheels/pb1-detectron2-0.6.tar.gz
  fi
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" DETECTRON2_DATASETS="$CARRY/datasets"
  RUN=output/cil_gpu
  args=() opts=()
  while (($#)); do
    if [ "$1" = --opts ]; then shift; opts=("$@"); break; fi
    args+=("$1") && shift
  done
  mkdir -p output
  set +e
  $PY tools/cil_recipe.py --device "${DEVICE:-cuda}" --out "$RUN" --dataset cilpack_val --visualize 0 \
    --fit-minutes "$MINUTES" "${args[@]}" --opts DATASETS.TRAIN "('cilpack_train',)" DATASETS.TEST "('cilpack_val',)" \
    SOLVER.STOP_AFTER_MINUTES "$MINUTES" "${opts[@]}" 2>&1 | tee "$RUN.log" | tail -40
  rc=${PIPESTATUS[0]}
  set -e
  mkdir -p "$OUT"
  tail -200 "$RUN.log" >"$OUT/log_tail.txt"
  if [ ! -f "$RUN/model/last_checkpoint" ]; then
    echo "piece: recipe exit $rc and no checkpoint in $RUN/model (see $OUT/log_tail.txt)" >&2
    exit $((rc ? rc : 1))
  fi
  last="$RUN/model/$(cat "$RUN/model/last_checkpoint")"
  $PY -c "import sys, deepacc_d2.app.model_zoo as z; z.save_half_weights(sys.argv[1], sys.argv[2])" \
    "$last" "$RUN/weights.pth"
  split -b 15M "$RUN/weights.pth" "$OUT/weights.pth.part-"
  cp "$RUN/model/metrics.json" "$OUT/" 2>/dev/null || true
  echo "piece: recipe exit $rc, weights of $last in $OUT"
  exit "$rc"
  ;;
*)
  echo "usage: bash tools/gpu_piece.sh prepare | train OUT MINUTES [cil_recipe args]" >&2
  exit 2
  ;;
esac
