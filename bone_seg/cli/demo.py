"""``bone-demo``: phantoms → store → fit → predict → evaluate → CV (conf/demo.yaml)."""

from bone_seg.cli.app import hydra_main
from bone_seg.workflows.demo import run

main = hydra_main("demo", run)

if __name__ == "__main__":
    main()
