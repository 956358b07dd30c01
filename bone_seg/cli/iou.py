"""``bone-iou``: IoU and Dice of a prediction against a reference (conf/iou.yaml)."""

from bone_seg.cli.app import hydra_main
from bone_seg.workflows.iou import run

main = hydra_main("iou", run)

if __name__ == "__main__":
    main()
