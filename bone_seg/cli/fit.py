"""``bone-fit``: train a segmentation model (see conf/fit.yaml)."""

from bone_seg.cli.app import hydra_main
from bone_seg.workflows.fit import run_fit

main = hydra_main("fit", run_fit)

if __name__ == "__main__":
    main()
