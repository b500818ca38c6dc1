"""The notebooks in notebooks/ run top to bottom (small sizes) and write their plots; in git they
carry no outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
WRITES = {
    "tradeoff.ipynb": ["tradeoff.png", "tradeoff.csv"],
    "apply.ipynb": ["apply.png", "gpt-40pct.schedule.json"],
}


def test_every_notebook_is_tested() -> None:
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(WRITES)


@pytest.mark.parametrize("name", sorted(WRITES))
def test_outputs_stripped_in_git(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, name


@pytest.mark.parametrize("name", sorted(WRITES))
def test_notebook_runs_and_writes_its_plots(name: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CS_NOTEBOOK_OUT", str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any failure
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    for produced in WRITES[name]:
        path = tmp_path / produced
        assert path.is_file() and path.stat().st_size > 0, produced
    for png in (p for p in WRITES[name] if p.endswith(".png")):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
    assert not list(NOTEBOOKS.glob("*.png")), "a notebook wrote into the repository"
