"""``bone-report``: CV table or ranking of a sweep's runs (conf/report.yaml)."""

from bone_seg.cli.app import hydra_main

main = hydra_main("report", "bone_seg.workflows.report")

if __name__ == "__main__":
    main()
