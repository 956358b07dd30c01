"""``bone-fit``: train a segmentation model (conf/fit.yaml)."""

from bone_seg.cli.app import hydra_main
from bone_seg.workflows.fit import run

main = hydra_main("fit", run)

if __name__ == "__main__":
    main()
