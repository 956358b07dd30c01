"""``bone-report``: CV table or ranking of a sweep's runs (conf/report.yaml)."""

from bone_seg.cli.app import hydra_main
from bone_seg.workflows.report import run

main = hydra_main("report", run)

if __name__ == "__main__":
    main()
