"""``bone-morpho``: bone morphometry of a label volume, or of a prediction against its reference."""

from bone_seg.cli.app import hydra_main

main = hydra_main("morpho", "bone_seg.workflows.morpho")

if __name__ == "__main__":
    main()
