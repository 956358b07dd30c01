#!/usr/bin/env bash
# Opens a package written by `bone-export format=bioimageio` the way a receiving lab would: in a
# fresh virtual environment holding only bioimageio.core and onnxruntime (no bone_seg, no torch),
# runs bioimageio.core's own test of it with the ONNX weights, then predicts an image with it.
#
#   scripts/check_bioimageio_package.sh <package.zip> [<image.npy> [<labels.npy>]]
#
# <image.npy>: raw intensities shaped as the package's input without the batch axis, (C, Y, X)
# for 2D/2.5D or (1, Z, Y, X) for 3D (default: the package's own test input); <labels.npy>: the
# labels bone-predict gave for it (same spatial shape): their agreement is printed.
# Needs the package registry (pip); the environment is removed afterwards.
set -euo pipefail
unset PYTHONPATH PYTHONHOME  # a receiving lab has no bone_seg on its path
[ $# -ge 1 ] || { echo "usage: $0 <package.zip> [<image.npy> [<labels.npy>]]" >&2; exit 2; }
pkg=$(realpath "$1")
image=${2:+$(realpath "$2")}
labels=${3:+$(realpath "$3")}
python=${PYTHON:-$(command -v python3.11 || command -v python3)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "bioimageio.core==0.11.0" "bioimageio.spec==0.5.12.0" "onnxruntime==1.32.0" \
    "pydantic==2.12.5"  # bioimageio.spec 0.5.12 fails to serialise descriptions with pydantic 2.14
cd "$work"  # away from any checkout: nothing of bone_seg can be imported
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$work/venv/bin/python" - "$pkg" "$image" "$labels" <<'EOF'
import importlib.util
import sys
import zipfile

import numpy as np

for name in ("bone_seg", "torch"):
    assert importlib.util.find_spec(name) is None, f"{name} is importable: not a clean environment"

from bioimageio.core import create_prediction_pipeline, load_model_description, predict, test_model

pkg, image, labels = sys.argv[1], sys.argv[2] or None, sys.argv[3] or None
summary = test_model(pkg, weight_format="onnx")
print(f"bioimageio.core test (onnx weights): {summary.status}")
for d in summary.details:
    if d.status != "passed":
        print(f"  {d.name}: {d.status} {[e.msg for e in d.errors]}")
if summary.status != "passed":
    sys.exit(1)
model = load_model_description(pkg)
if image is None:
    with zipfile.ZipFile(pkg) as z, z.open("test_input.npy") as f:
        x = np.load(f)
else:
    x = np.load(image)[None]
# no `with` around the pipeline: bioimageio.core 0.11 waits forever in its __exit__ after predict()
pipeline = create_prediction_pipeline(model, weight_format="onnx")
out = predict(model=pipeline, inputs={"raw": x.astype(np.float32)})
probs = out.members["probabilities"].data.to_numpy()[0]
names = [str(c) for c in model.outputs[0].axes[1].channel_names]
pred = np.where(probs.max(axis=0) < 0.5, 0, probs.argmax(axis=0)).astype(np.uint8)
print(f"predicted {'x'.join(map(str, x.shape[1:]))} with {model.name!r}: " + ", ".join(
    f"{n} {100 * np.mean(pred == i):.1f} %" for i, n in enumerate(names)))
if labels is not None:
    ref = np.load(labels).reshape(pred.shape)
    print(f"labels agree with bone-predict's on {100 * np.mean(ref == pred):.3f} % of voxels")
EOF
