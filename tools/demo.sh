#!/usr/bin/env bash
# The main job end to end, offline: synthesize a Speech-Commands-layout dataset with
# espeak-ng, train the BiGRU recipe on it on the CPU, evaluate it on unseen synthetic
# speakers and transcribe a few of their clips. Run through `make demo`.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=data/demo_commands
TEST=data/demo_commands_unseen
RUN=runs/demo-$(date +%Y%m%d-%H%M%S)

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1/4 synthesizing training speakers into $DATA"
python tools/make_synthetic_commands.py "$DATA" --speakers 48 --seed 0
step "2/4 synthesizing unseen speakers into $TEST"
python tools/make_synthetic_commands.py "$TEST" --speakers 8 --seed 1

step "3/4 training the bidirectional GRU (run folder $RUN)"
python recipes/speech_commands/train.py fit \
    --config recipes/speech_commands/conf/demo.yaml --data.root "$DATA" --run_dir "$RUN"
CKPT="$RUN/checkpoints/best.ckpt"

step "4/4 evaluating on unseen speakers, then transcribing a few of their clips"
speech-gru evaluate --checkpoint "$CKPT" "$TEST" --out "$RUN/unseen"
speech-gru transcribe --checkpoint "$CKPT" --top-k 2 \
    "$TEST"/yes/*_nohash_0.wav "$TEST"/stop/*_nohash_0.wav "$TEST"/cat/*_nohash_0.wav

printf '\nDone. Checkpoints, logs and plots are in %s\n' "$RUN"
