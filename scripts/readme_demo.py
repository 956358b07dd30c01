#!/usr/bin/env python3
"""Keep the README's demo transcript the output of a real ``make demo``.

``bone-demo`` writes what its stages print to ``<paths.root>/demo_transcript.log``. This script
shortens that transcript by fixed rules (the rows and epochs a reader needs, ``…`` for the rest,
paths made relative) and writes it between the README's ``demo-transcript`` markers:

    python scripts/readme_demo.py bone_seg_out/demo_transcript.log            rewrite README.md
    python scripts/readme_demo.py --check bone_seg_out/demo_transcript.log    exit 1 if its figures
                                                                              differ from README.md

``--check`` compares every figure except times, speeds and memory (those depend on the machine
and its load); ``make demo`` runs it after the demo so that a change which moves the demo's figures
cannot leave the README's transcript stale silently.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

BEGIN = "<!-- demo-transcript:begin (scripts/readme_demo.py writes this block) -->"
END = "<!-- demo-transcript:end -->"
#: figures that depend on the machine and its load, masked by --check
MACHINE = re.compile(r"\d+(\.\d+)?(?= ?(s\b|min\b|Mvoxel/s|GB\b|GB/s))|took \d+ s|"
                     r"\d{4}-\d{2}-\d{2}/\d{2}-\d{2}-\d{2}_[0-9a-f]+|[0-9a-f]{32}")
#: a Python warning as printed: "/path/module.py:204: UserWarning: ..." (Lightning: no category)
PY_WARNING = re.compile(r"^\S+\.py:\d+: ")
HYDRA_PREFIX = re.compile(r"^\[\d{4}-\d{2}-\d{2} [\d:,]+\]\[HYDRA\] ?")
DROP = ("GPU available", "TPU available", "Model FLOPs", "saved best weights", "run directory:",
        "report: ", "importing ", "`Trainer.fit` stopped", "  fitting time", "  GPU utilisation",
        "  peak VRAM (torch", "  peak RAM (this", "  peak RAM (getrusage", "prediction ",
        "wrote ", "\t#", "logged the report")


def _stages(lines: list[str]) -> list[list[str]]:
    """Split the transcript at the ``$ command`` lines (the first chunk is what precedes them)."""
    stages: list[list[str]] = [[]]
    for line in lines:
        if line.startswith("$ "):
            stages.append([])
        stages[-1].append(line)
    return stages


def _relative(line: str, root: str) -> str:
    line = re.sub(r" paths\.root=\S+", "", line)
    return line.replace(root + "/", "bone_seg_out/").replace(root, "bone_seg_out")


def _epochs(body: list[str]) -> list[str]:
    """The first epoch's block and the best one's (the line marked new best last), ``…`` between."""
    starts = [i for i, line in enumerate(body) if line.startswith("Epoch ")]
    if not starts:
        return body
    blocks = [body[s:e] for s, e in zip(starts, starts[1:] + [len(body)], strict=True)]
    for k, block in enumerate(blocks):  # an epoch's block ends before the next non-indented line
        end = next((i for i, line in enumerate(block[1:], 1) if not line.startswith("  ")),
                   len(block))
        blocks[k] = block[:end]
        if k == len(blocks) - 1:
            tail = block[end:]
    best = max((k for k, b in enumerate(blocks) if "new best" in b[0]), default=0)
    keep = [*blocks[0], "…"] + ([*blocks[best], "…"] if best else [])
    return body[:starts[0]] + keep + tail


def _fit(stage: list[str]) -> list[str]:
    return _epochs([line for line in stage if not line.startswith(DROP)])


def _import(stage: list[str]) -> list[str]:
    rows = [i for i, line in enumerate(stage) if re.match(r"^\| +\d+ \|", line)]
    if len(rows) <= 2:
        return stage
    return stage[:rows[0] + 1] + ["…"] + stage[rows[-1]:]


def _iou(stage: list[str]) -> list[str]:
    mean = next((line for line in stage if line.startswith("|   | mean")), None)
    return [stage[0], f"{mean}   (table as above)", stage[-1]] if mean else stage


def _sweep(stage: list[str]) -> list[str]:
    head = [HYDRA_PREFIX.sub("", line) for line in stage
            if "MLflow parent run" in line or "Launching " in line]
    n = re.search(r"Launching (\d+) jobs", " ".join(head))
    return [stage[0], *head, f"… {n.group(1) if n else 'the'} runs …", stage[-1]]


def _report(stage: list[str]) -> list[str]:
    """The table (the notes under it are the report's own files')."""
    return [line for line in stage if line.startswith(("$ ", "|", "[", "sweep "))]


def _no_python_warnings(lines: list[str]) -> list[str]:
    """Without a library's Python warnings (``file.py:12: XWarning: ...`` and the indented source
    line Python prints under it): the terminal shows them, the README does not."""
    out: list[str] = []
    skip_source = False
    for line in lines:
        if PY_WARNING.match(line):
            skip_source = True
            continue
        if skip_source and line.startswith("  ") and not line.startswith(("  train", "  val")):
            skip_source = False
            continue
        skip_source = False
        out.append(line)
    return out


def render(transcript: str) -> str:
    """The README's shortened transcript of one demo run."""
    lines = [line for line in transcript.splitlines() if "\r" not in line and "it/s]" not in line]
    lines = _no_python_warnings(lines)
    root = next((m.group(1) for line in lines if (m := re.search(r"paths\.root=(\S+)", line))), "")
    out: list[str] = []
    for stage in _stages(lines)[1:]:
        while stage and not stage[-1].strip():
            stage = stage[:-1]
        cmd = stage[0]
        stage = [line for line in stage if not line.startswith(DROP) or line is cmd]
        if cmd.startswith("$ bone-fit -m"):
            stage = _sweep(stage)
        elif cmd.startswith("$ bone-fit"):
            stage = _fit(stage)
        elif cmd.startswith("$ bone-import"):
            stage = _import(stage)
        elif cmd.startswith("$ bone-iou"):
            stage = _iou(stage)
        elif cmd.startswith("$ bone-report"):
            stage = _report(stage)
        out += ["", *stage] if out else stage
    text = "\n".join(_relative(line, root) for line in out)
    text = re.sub(r"\S*/\.venv/bin/mlflow", "/path/to/bone_seg/.venv/bin/mlflow", text)
    return re.sub(r"sqlite:///\S*?bone_seg_out/", "sqlite:////path/to/bone_seg/bone_seg_out/", text)


def epochs_line(transcript: str) -> str:
    """The single fit's validation mIoU over its epochs, its best in bold."""
    first_fit = transcript.split("$ bone-fit ", 1)[-1].split("\n$ ", 1)[0]
    values = re.findall(r"^  val +loss \S+ +mIoU (\S+)", first_fit, flags=re.M)
    if not values:
        return ""
    best = max(range(len(values)), key=lambda i: (float(values[i]), -i))
    shown = [f"{float(v):.3f}" for v in values]
    shown[best] = f"**{shown[best]}**"
    return f"Validation mIoU of the single fit over its epochs: {', '.join(shown)}."


def block(transcript: str) -> str:
    """The README's text between the markers."""
    return f"{BEGIN}\n```text\n{render(transcript)}\n```\n\n{epochs_line(transcript)}\n{END}"


def readme_block(readme: str) -> str:
    """The block between the markers of ``readme`` (markers included)."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"error: README.md has no {BEGIN!r} … {END!r} block; add the markers")
    return readme[start:end + len(END)]


def figures(text: str) -> list[str]:
    """The lines of a block with the machine-dependent figures masked."""
    return [MACHINE.sub("#", line) for line in text.splitlines() if "demo finished in" not in line]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("transcript", type=Path, help="<paths.root>/demo_transcript.log")
    parser.add_argument("--readme", type=Path, default=Path(__file__).parents[1] / "README.md")
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    if not args.transcript.is_file():
        print(f"error: no demo transcript at {args.transcript}; run `make demo` first",
              file=sys.stderr)
        return 2
    readme = args.readme.read_text(encoding="utf-8")
    old, new = readme_block(readme), block(args.transcript.read_text(encoding="utf-8"))
    if not args.check:
        args.readme.write_text(readme.replace(old, new), encoding="utf-8")
        print(f"wrote the demo transcript into {args.readme}")
        return 0
    changed = [(a, b) for a, b in zip(figures(old), figures(new), strict=False) if a != b]
    if not changed and len(figures(old)) == len(figures(new)):
        print(f"{args.readme.name}'s demo transcript shows this run's figures")
        return 0
    there, here = changed[0] if changed else ("(other lines)", "(other lines)")
    print(f"note: {args.readme.name}'s demo transcript is from another run; its figures differ "
          f"(there: {there.strip()!r}, here: {here.strip()!r}); to update it run\n"
          f"  python scripts/readme_demo.py {args.transcript}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
