#!/bin/sh
# make demo: the main job on the built-in default model. Until the built-in fact model exists
# (models/ked-facts), that is greedy generation from stories260K, a real pretrained tiny Llama.
KED=${1:-build/ked}
set -e
echo "== ked inspect --model models/stories260K"
"$KED" inspect --model models/stories260K
echo
echo "== ked generate --model models/stories260K --temperature 0 --max-new 200 \"Once upon a time\""
"$KED" generate --model models/stories260K --temperature 0 --max-new 200 "Once upon a time"
