"""``bone-export``: a volume → TIFF, or weights → BONe's layout (conf/export.yaml)."""

from bone_seg.cli.app import hydra_main
from bone_seg.workflows.export import run

main = hydra_main("export", run)

if __name__ == "__main__":
    main()
