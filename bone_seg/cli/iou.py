"""``bone-iou``: IoU and Dice of a prediction against a reference (conf/iou.yaml)."""

from bone_seg.cli.app import hydra_main

main = hydra_main("iou", "bone_seg.workflows.iou")

if __name__ == "__main__":
    main()
