"""``bone-phantom``: synthetic micro-CT phantoms (conf/phantom.yaml)."""

from bone_seg.cli.app import hydra_main

main = hydra_main("phantom", "bone_seg.workflows.phantom")

if __name__ == "__main__":
    main()
