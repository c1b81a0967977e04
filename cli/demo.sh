#!/bin/sh
# make demo: the main job on the built-in default model models/ked-facts (a small LLaMA that ked
# trained on real CounterFact facts): ask a fact the model knows, edit it with ROME, then show
# the answer after, a paraphrase it never saw with this subject, and neighbouring facts (locality).
KED=${1:-build/ked}
set -e
MODEL=models/ked-facts
PROMPT="Spike Hughes originates from"      # CounterFact case 4482 (true: London)
SUBJECT="Spike Hughes"
TARGET=" Philadelphia"                     # the record's counterfactual target_new
PARAPHRASE="Spike Hughes is native to"
NEIGHBOUR1="William Hogarth originated from"  # neighbourhood prompts of the record (London)
NEIGHBOUR2="Max Mosley originates from"
OUT=build/demo
mkdir -p "$OUT"

say() { printf '\n== %s\n' "$*"; }
ask() { for p in "$PROMPT" "$PARAPHRASE" "$NEIGHBOUR1" "$NEIGHBOUR2"; do
            "$KED" generate --model "$MODEL" --max-new 4 "$@" "$p" 2>/dev/null; done; }
say "the model ($MODEL)"
"$KED" inspect --model "$MODEL" 2>/dev/null | sed -n '1,4p;/parameters/p'

say "before: the fact, a paraphrase, two neighbouring facts"
ask

say "edit: ROME, \"$PROMPT\" -> \"$TARGET\""
"$KED" edit --model "$MODEL" --method rome --prompt "$PROMPT" --subject "$SUBJECT" \
    --target "$TARGET" --rephrase "$PARAPHRASE" --patch "$OUT/edit.patch" 2>&1 | grep -v '^  step'

say "after (the patch applied): the fact, the paraphrase, the neighbours"
ask --patch "$OUT/edit.patch"
echo
echo "(a neighbour that changed too is a locality failure: ked eval measures it over many edits)"
