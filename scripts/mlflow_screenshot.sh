#!/usr/bin/env bash
# Regenerate docs/images/mlflow_models.png and mlflow_registry.png: the MLflow UI (headless
# chromium) on an experiment in its model-training view, its fits' logged models, one registered as
# bone_pores@champion, and that registered model's page (its version, alias and source run).
# (The UI keeps its GenAI / Model training switch per browser; ?workflowType=machine_learning in
# the address picks model training.) A throwaway SQLite store and server in a temporary folder; nothing else is touched.
#   scripts/mlflow_screenshot.sh [out.png]     (needs chromium: apt-get install -y chromium)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
out=${1:-$root/docs/images/mlflow_models.png}
py=${PYTHON:-$root/.venv/bin/python}
mlflow=$(dirname "$py")/mlflow
browser=$(command -v chromium || command -v chromium-browser || true)
[[ -n $browser ]] || { echo "mlflow_screenshot: no chromium (apt-get install -y chromium)" >&2; exit 3; }
tmp=$(mktemp -d)
server=""
fail() { echo "mlflow_screenshot: $1" >&2; exit 1; }
cleanup() { [[ -n $server ]] && kill -- "-$server" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
uri="sqlite:///$tmp/mlflow.db"
# a run as bone-fit records it (tiny random weights), its model, registered with an alias
exp_id=$(PYTHONPATH=$root:$root/tests OMP_NUM_THREADS=1 "$py" - "$uri" "$tmp" <<'PY' 2>"$tmp/setup.log" | tail -n 1
import sys
from pathlib import Path

from inference_helpers import save_model
from mlflow import MlflowClient

from bone_seg.tracking.store import ensure_experiment
from bone_seg.tracking.models import log_model_metrics, log_weights_model
from bone_seg.tracking.registry import register_run_model

uri, tmp = sys.argv[1], Path(sys.argv[2])
client = MlflowClient(uri)
eid = ensure_experiment(uri, "bone_seg")
for seed, miou in ((1, 0.912), (2, 0.934)):
    weights = save_model(tmp / f"best{seed}.safetensors", seed=seed)
    run = client.create_run(eid, run_name=f"unet-resnet18-p256-2d-f1-s{seed}",
                            tags={"bone_seg.sweep": "cv", "fold": "1", "seed": str(seed)})
    for key, value in {"model.net.arch": "unet", "model.net.encoder": "resnet18",
                       "data.patch_size": "256", "seed": str(seed)}.items():
        client.log_param(run.info.run_id, key, value)
    for epoch, v in enumerate((0.71, 0.85, miou), start=1):
        client.log_metric(run.info.run_id, "val/miou", v, step=epoch)
    model_id = log_weights_model(client, run.info.run_id, weights)
    log_model_metrics(client, run.info.run_id, model_id, {"test/miou": miou, "test/mdice": miou + 0.03})
    client.set_terminated(run.info.run_id, "FINISHED")
register_run_model(uri, run.info.run_id, "bone_pores", "champion")
print(eid)
PY
) || true
[[ -n $exp_id ]] || fail "could not record the example run: $(tail -n 3 "$tmp/setup.log")"
port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
setsid "$mlflow" server --backend-store-uri "$uri" --host 127.0.0.1 --port "$port" --workers 1 \
    >"$tmp/server.log" 2>&1 < /dev/null &
server=$!
for _ in $(seq 1 240); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    sleep 0.5
done
shot() {  # url, png: a palette PNG keeps the file small (< 300 kB)
    "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1920,820 \
        --virtual-time-budget=20000 --screenshot="$tmp/shot.png" "$1" >/dev/null 2>&1
    "$py" -c "import sys; from PIL import Image; Image.open(sys.argv[1]).convert('RGB').quantize(128).save(sys.argv[2], optimize=True)" \
        "$tmp/shot.png" "$2"
    echo "mlflow_screenshot: wrote $2"
}
shot "http://127.0.0.1:$port/#/experiments/$exp_id/models?workflowType=machine_learning" "$out"
shot "http://127.0.0.1:$port/#/models/bone_pores" "$(dirname "$out")/mlflow_registry.png"
