"""The README's section on where you train: every Python example in it runs as written (each in
a fresh namespace, with the enable cache in a temporary folder)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Where you train: one line, torch's own policies, compile, FSDP2, pipelines"


def _examples() -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    return re.findall(r"```python\n(.*?)```", text[start:end], re.S)


def test_the_section_has_an_example_per_framework() -> None:
    blocks = _examples()
    need = [
        "cs.enable(model",
        "Trainer(",
        "lightning",
        "torch.compile(",
        "fully_shard(",
        "solve_pipeline(",
    ]
    assert all(any(n in b for b in blocks) for n in need), need


@pytest.mark.parametrize("index", range(len(_examples())))
def test_each_example_runs(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = _examples()[index]
    if "lightning" in code:
        pytest.importorskip("lightning")
    if "transformers" in code:
        pytest.importorskip("transformers")
        pytest.importorskip("accelerate")
    monkeypatch.setenv("CHECKPOINT_SOLVER_CACHE", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    torch._dynamo.reset()
    exec(compile(code, f"README example {index}", "exec"), {"__name__": "__readme__"})
