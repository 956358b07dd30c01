#!/usr/bin/env bash
# `make pretrained`: build the pretrained starting model and publish it into the cache.
#   1. bone-phantom phantom_set=pretrain   the varied phantom set (conf/phantom_set/pretrain.yaml)
#   2. bone-import                         into its own store, ${paths.data}/pretrain/store
#   3. bone-fit experiment=pretrain        which publishes its best weights to
#                                          ${paths.pretrained}/<name>.safetensors at the end
# Variables (all optional):
#   BIN            folder of the bone-* commands (default .venv/bin)
#   COMMON_ARGS    overrides given to every command, e.g. "paths.root=/scratch/bs threads=2"
#   PHANTOM_ARGS   overrides of bone-phantom, e.g. "phantom_set.shape=[32,128,128]"
#   PRETRAIN_ARGS  overrides of bone-fit, e.g. "trainer.max_epochs=2 data.mode=3d"
#   PRETRAINED_NAME  publish as <name>.safetensors (model.net.weights=pretrained:<name>);
#                    default: pretrained (model.net.weights=pretrained)
set -euo pipefail
BIN=${BIN:-.venv/bin}
NAME=${PRETRAINED_NAME:-pretrained}
read -r -a common <<< "${COMMON_ARGS:-}"
read -r -a phantom <<< "${PHANTOM_ARGS:-}"
read -r -a fit <<< "${PRETRAIN_ARGS:-}"
phantoms='${paths.data}/pretrain/phantoms'
store='${paths.data}/pretrain/store'

step() { printf '\n$ %s\n' "$*"; "$@"; }

step "$BIN/bone-phantom" "${common[@]}" phantom_set=pretrain "out=$phantoms" "${phantom[@]}"
step "$BIN/bone-import" "${common[@]}" "scan_dir=$phantoms" "store_path=$store" overwrite=true
step "$BIN/bone-fit" "${common[@]}" experiment=pretrain "data.store=$store" \
    "publish_to=\${paths.pretrained}/$NAME.safetensors" "${fit[@]}"
