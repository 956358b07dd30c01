"""``bone-demo``: phantoms → store → fit → predict → evaluate → CV (conf/demo.yaml)."""

from bone_seg.cli.app import hydra_main

main = hydra_main("demo", "bone_seg.workflows.demo")

if __name__ == "__main__":
    main()
