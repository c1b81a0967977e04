#!/bin/sh
# make demo: the main job on the built-in default model: ask a fact, edit it, and show the
# answer after, a paraphrase and an unrelated prompt, with EasyEdit's metrics.
KED=${1:-build/ked}
set -e
MODEL=models/stories260K
PROMPT="Once upon a time, there was a little girl named"
SUBJECT="little girl"
TARGET=" Sue"
PARAPHRASE="One day, a little girl named"
UNRELATED="The dog ran to the park and"
OUT=build/demo
mkdir -p "$OUT"

say() { printf '\n== %s\n' "$*"; }
say "the model ($MODEL)"
"$KED" inspect --model "$MODEL" 2>/dev/null | sed -n '1,4p;/parameters/p'

say "before: ask"
"$KED" generate --model "$MODEL" --max-new 12 "$PROMPT" 2>/dev/null
"$KED" generate --model "$MODEL" --max-new 12 "$PARAPHRASE" 2>/dev/null
"$KED" generate --model "$MODEL" --max-new 12 "$UNRELATED" 2>/dev/null

say "edit: ROME, \"$SUBJECT\" -> \"$TARGET\""
"$KED" edit --model "$MODEL" --method rome --prompt "$PROMPT" --subject "$SUBJECT" \
    --target "$TARGET" --rephrase "$PARAPHRASE" --patch "$OUT/edit.patch" 2>&1 | grep -v '^  step'

say "after: the prompt, a paraphrase, an unrelated prompt (with the patch applied)"
"$KED" generate --model "$MODEL" --patch "$OUT/edit.patch" --max-new 12 "$PROMPT" 2>/dev/null
"$KED" generate --model "$MODEL" --patch "$OUT/edit.patch" --max-new 12 "$PARAPHRASE" 2>/dev/null
"$KED" generate --model "$MODEL" --patch "$OUT/edit.patch" --max-new 12 "$UNRELATED" 2>/dev/null
