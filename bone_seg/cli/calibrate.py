"""``bone-calibrate``: a weights file's temperature and check profile (conf/calibrate.yaml)."""

from bone_seg.cli.app import hydra_main

main = hydra_main("calibrate", "bone_seg.workflows.calibrate")

if __name__ == "__main__":
    main()
