#!/usr/bin/env bash
# The wake-phrase figures of docs/results.md ("Wake phrases from their spelling"): a model
# for each of six phrases made by `speech-gru wakeword` from its spelling, scored on real
# recordings beside pocketsphinx. Each step is skipped when its output is there.
#   recipes/wakewords/dev_phrases.sh DEV WAKEWORDS [WORK]
# DEV: a folder in the Speech Commands layout (the speaker-disjoint part of the v0.02 test
# archive here); WAKEWORDS: folders of real recordings of the phrases and of other speech.
set -euo pipefail
DEV=$1 WAKEWORDS=$2 WORK=${3:-runs/wakewords}
mkdir -p "$WORK"

# 1. DEV's speakers in two: the training split's clips are the real negatives of training,
#    the held-out speakers' clips other speech in the scored recordings.
python - "$DEV" "$WORK" <<'PY'
import sys
from pathlib import Path
from speech_gru.train.corpus import split_rule
root, work = Path(sys.argv[1]), Path(sys.argv[2])
rule = split_rule(root, {"version": "folder"})
for clip in sorted(root.glob("*/*.wav")):
    if clip.parent.name == "_silence_":
        continue
    part = "dev_train" if rule(clip) == "training" else "dev_heldout"
    link = work / part / clip.parent.name / clip.name
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(clip.resolve())
PY

# 2. The encoder to start from: the recipe's model of DEV alone (the bundled model has
#    heard WAKEWORDS' recordings as _unknown_).
BASE=$WORK/base/checkpoints/best.ckpt
[ -f "$BASE" ] || python recipes/speech_commands/train.py fit \
    --config recipes/speech_commands/conf/folder.yaml --data.root "$DEV" \
    --run_dir "$WORK/base" --seed_everything 0

# 3. One model per phrase, one at a time (each within its 15-minute budget).
for phrase in computer athena amelia "hey chatterbox" "hey savant" "hey computer"; do
  label=${phrase// /_}
  [ -f "$WORK/models/$label/model.ckpt" ] && continue
  speech-gru wakeword "$phrase" --out "$WORK/models/$label" --negatives "$WORK/dev_train" \
      --noise "$DEV/_silence_" --init-from "$BASE"
done

# 4. Each model and pocketsphinx on its phrase's 60-minute recording (pip install -e '.[bench]').
python tools/bench_wakewords.py --models "$WORK/models" --data "$WAKEWORDS" \
    --other "$WORK/dev_heldout" --noise "$DEV/_silence_" --minutes 60 --seed 0 \
    --pronounce chatterbox="CH AE T ER B AA K S" \
    --out "$WORK/bench.md" --json "$WORK/bench.json" --work "$WORK/bench"
