"""``bone-import``: scans and masks → the dataset store (conf/import.yaml)."""

from bone_seg.cli.app import hydra_main

main = hydra_main("import", "bone_seg.workflows.import_")

if __name__ == "__main__":
    main()
