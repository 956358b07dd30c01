#!/usr/bin/env bash
# Run a command with the one-node SLURM cluster of scripts/slurm_local.sh up (`make test` runs
# pytest this way): start it unless it runs already, run the command, stop it again afterwards
# (also when the command fails or is interrupted) if this script started it. Where no cluster can
# start (not root, not Debian, no apt-get; BONE_SEG_SLURM=off) the command runs all the same and
# the SLURM tests are skipped with the reason.
#   scripts/with_slurm.sh .venv/bin/python -m pytest -q
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export BONE_SEG_SLURM_DIR=${BONE_SEG_SLURM_DIR:-/tmp/bone_seg_slurm}
export SLURM_CONF=$BONE_SEG_SLURM_DIR/slurm.conf
started=0
unavailable=0
if ! "$here/slurm_local.sh" status >/dev/null 2>&1; then
    if "$here/slurm_local.sh" start; then started=1; else unavailable=1; fi
fi
cleanup() {  # stop what this script started; drop the reason file of a cluster that never ran
    if [[ $started -eq 1 ]]; then "$here/slurm_local.sh" stop; fi
    if [[ $unavailable -eq 1 ]]; then "$here/slurm_local.sh" stop >/dev/null; fi
    started=0 unavailable=0
}
trap cleanup EXIT
trap 'exit 130' INT TERM
"$@"
