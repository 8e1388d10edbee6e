#!/bin/sh
# The downstream table of README.md, from the run records kept here (runs/<folder>, copied from each
# bench-downstream folder's runs/). Nothing is trained: python benchmarks/downstream_table.py reads them.
cd "$(dirname "$0")/../../.." || exit 1
R=docs/bench/fmnist-same/runs
B="balanced-softmax (best baseline by validation)"
exec python benchmarks/downstream_table.py --against "$B" \
    "plain=$R/scratch:plain" "posthoc-la=$R/scratch:posthoc-la" "reweight=$R/scratch:reweight" \
    "oversample=$R/scratch:oversample" "$B=$R/scratch:balanced-softmax" "drw=$R/scratch:drw" \
    "recipe, generator from scratch on the private part (3000 steps)=$R/scratch:recipe" \
    "recipe, public generator as is=$R/public:recipe" \
    "recipe, public generator fine-tuned 300 steps=$R/ft:recipe" \
    "pretrained classifier: posthoc-la=$R/init:posthoc-la" \
    "pretrained classifier: balanced-softmax=$R/init:balanced-softmax" \
    "pretrained classifier: recipe, fine-tuned generator=$R/init:recipe"
