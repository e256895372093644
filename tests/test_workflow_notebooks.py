"""The research notebooks run top to bottom (tiny budgets: RPG_JAX_QUICK=1) in a fresh kernel."""

from pathlib import Path

import jax
import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_four_notebooks():
    assert [p.stem for p in NOTEBOOKS] == ["01_customize_a_policy", "02_prior_weight_frontier",
                                           "03_tabular_identities", "04_priors_from_demonstrations"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("RPG_JAX_QUICK", "1")
    # Share the suite's compilation cache: the notebooks' programs are the tests' (same shapes).
    monkeypatch.setenv("RPG_JAX_CACHE", jax.config.jax_compilation_cache_dir or "")
    book = nbformat.read(path, as_version=4)
    NotebookClient(book, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for cell in book.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    assert any(o.get("output_type") in ("display_data", "execute_result") and "image/png" in o.get("data", {})
               for cell in book.cells if cell.cell_type == "code" for o in cell.get("outputs", [])), \
        "the notebook should draw a figure"
