"""``bone-export``: a volume → TIFF, or weights → BONe's layout (conf/export.yaml)."""

from bone_seg.cli.app import hydra_main

main = hydra_main("export", "bone_seg.workflows.export")

if __name__ == "__main__":
    main()
