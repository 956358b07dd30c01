"""``bone-fit``: train a segmentation model (conf/fit.yaml)."""

from bone_seg.cli.app import hydra_main

main = hydra_main("fit", "bone_seg.workflows.fit")

if __name__ == "__main__":
    main()
