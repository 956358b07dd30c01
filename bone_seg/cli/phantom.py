"""``bone-phantom``: synthetic micro-CT phantoms (conf/phantom.yaml)."""

from bone_seg.cli.app import hydra_main
from bone_seg.workflows.phantom import run

main = hydra_main("phantom", run)

if __name__ == "__main__":
    main()
