"""``bone-predict``: segment a scan with a weights file (conf/predict.yaml)."""

from bone_seg.cli.app import hydra_main
from bone_seg.workflows.predict import run

main = hydra_main("predict", run)

if __name__ == "__main__":
    main()
