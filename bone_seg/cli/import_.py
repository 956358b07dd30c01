"""``bone-import``: scans and masks → the dataset store (conf/import.yaml)."""

from bone_seg.cli.app import hydra_main
from bone_seg.workflows.import_ import run

main = hydra_main("import", run)

if __name__ == "__main__":
    main()
