"""``bone-morpho``: bone morphometry of a label volume, or of a prediction against its reference."""

from bone_seg.cli.app import hydra_main
from bone_seg.workflows.morpho import run

main = hydra_main("morpho", run)

if __name__ == "__main__":
    main()
