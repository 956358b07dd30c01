#!/usr/bin/env bash
# Run a command with the test services up (`make test` runs pytest this way): the MLflow tracking
# server on PostgreSQL (scripts/mlflow_local.sh) and the one-node SLURM cluster
# (scripts/with_slurm.sh). Each is started unless it runs already and stopped afterwards (also when
# the command fails or is interrupted) if this script started it; one that cannot start leaves
# its reason for the tests it serves, which are skipped with it.
#   scripts/with_services.sh .venv/bin/python -m pytest -q
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export BONE_SEG_MLFLOW_DIR=${BONE_SEG_MLFLOW_DIR:-/tmp/bone_seg_mlflow}
started=0
unavailable=0
if ! "$here/mlflow_local.sh" status >/dev/null 2>&1; then
    if "$here/mlflow_local.sh" start; then started=1; else unavailable=1; fi
fi
cleanup() {  # stop what this script started; drop the reason file of a server that never ran
    if [[ $started -eq 1 || $unavailable -eq 1 ]]; then "$here/mlflow_local.sh" stop >/dev/null; fi
    started=0 unavailable=0
}
trap cleanup EXIT
trap 'exit 130' INT TERM
"$here/with_slurm.sh" "$@"
