"""Shared helpers for benchmark scripts: machine description and RESULTS.md sections."""

from __future__ import annotations

import datetime
import os
import platform
import re
import subprocess
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def machine() -> str:
    """One line describing where the benchmark ran."""
    cpu = platform.processor() or "unknown CPU"
    try:
        text = Path("/proc/cpuinfo").read_text()
        match = re.search(r"model name\s*:\s*(.+)", text)
        if match:
            cpu = match.group(1).strip()
    except OSError:
        pass
    import numpy

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, numpy {numpy.__version__}, code at commit {commit}"
    )


def zoo_arguments(doc: str | None) -> tuple[int, list[str]]:
    """``--size`` (the zoo config) and ``--families`` of a zoo benchmark, parsed with the script's
    first docstring line as its description; warnings silenced (the zoo's models warn)."""
    import argparse
    import warnings

    from checkpoint_solver import zoo

    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--size", type=int, default=0)
    parser.add_argument("--families", default=",".join(zoo.FAMILIES))
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    return args.size, args.families.split(",")


def table(headers: list[str], rows: list[list[object]]) -> str:
    """A GitHub-markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section `name` of RESULTS.md, stamped with date and machine."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = (
        f"<!-- begin {name} -->\n## {name}\n\nRun {stamp} on: {machine()}.\n"
        f"Regenerate with `python benchmarks/{name}.py`.\n\n{body.strip()}\n<!-- end {name} -->\n"
    )
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\n"
    pattern = re.compile(
        rf"<!-- begin {re.escape(name)} -->.*?<!-- end {re.escape(name)} -->\n", re.S
    )
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text + "\n" + section
    tmp = RESULTS.with_suffix(".md.tmp")  # atomically: a killed run leaves the old file whole
    tmp.write_text(text)
    tmp.replace(RESULTS)
