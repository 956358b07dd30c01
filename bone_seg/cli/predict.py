"""``bone-predict``: segment a scan with a weights file (conf/predict.yaml)."""

from bone_seg.cli.app import hydra_main

main = hydra_main("predict", "bone_seg.workflows.predict")

if __name__ == "__main__":
    main()
