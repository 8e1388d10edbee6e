#!/bin/sh
# The downstream table of README.md, from the run records kept here (runs/<folder>, copied from each
# bench-downstream folder's runs/). Nothing is trained: python benchmarks/downstream_table.py reads them.
cd "$(dirname "$0")/../../.." || exit 1
R=docs/bench/fmnist-new/runs
P="posthoc-la (best baseline by validation)"
exec python benchmarks/downstream_table.py --against "$P" --rare "Ankle boot (54 images)" \
    "plain=$R/scratch:plain" "$P=$R/scratch:posthoc-la" "balanced-softmax=$R/scratch:balanced-softmax" \
    "drw=$R/scratch:drw" "reweight=$R/scratch:reweight" "oversample=$R/scratch:oversample" \
    "recipe, generator from scratch (3000 steps)=$R/scratch:recipe" \
    "recipe, fine-tuned 1000 steps, own source classes (default)=$R/ftcyclic1000:recipe" \
    "recipe, fine-tuned 300 steps, own source classes (default)=$R/ftcyclic:recipe" \
    "recipe, fine-tuned 300 steps, spread=$R/ftspread:recipe" \
    "recipe, fine-tuned 300 steps from the mean=$R/ft:recipe" \
    "recipe, fine-tuned 1000 steps from the mean=$R/ft1000:recipe" \
    "recipe, fine-tuned 300 steps, source classes by hand=$R/ftnamed:recipe" \
    "recipe, generator from scratch, 300 steps=$R/scratch300:recipe" \
    "public-classifier init: plain=$R/init:plain" "public-classifier init: posthoc-la=$R/init:posthoc-la" \
    "public-classifier init: balanced-softmax=$R/init:balanced-softmax" \
    "public-classifier init: recipe (ft 1000 from the mean)=$R/init:recipe" \
    "generated init: plain=$R/geninit:plain" "generated init: posthoc-la=$R/geninit:posthoc-la" \
    "generated init: balanced-softmax=$R/geninit:balanced-softmax" "generated init: recipe=$R/geninit:recipe"
