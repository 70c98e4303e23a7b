"""
mingpt-demo/play_char.ipynb runs top to bottom (nbclient, a kernel on this interpreter) and
samples text from the model it trains.
"""
import json
import os
import re
import sys

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "mingpt-demo", "play_char.ipynb")


def outputs_text(cell):
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def test_play_char_runs_and_samples(tmp_path, monkeypatch):
    # a kernel spec for this very interpreter, whatever `python3` kernels the machine has;
    # one CPU thread keeps it quick on a busy machine
    spec = tmp_path / "kernels" / "this-python"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "this python", "language": "python", "env": {"OMP_NUM_THREADS": "1"}}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))

    nb = nbformat.read(NOTEBOOK, as_version=4)
    # the project's code is imported, not copied into the notebook
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for name in ("from model import GPT, GPTConfig", "from trainer import Trainer, TrainerConfig", "sample"):
        assert name in source
    assert "class GPT(" not in source and "class Trainer(" not in source
    assert nb.cells[0].cell_type == "markdown"

    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="this-python",
                                     resources={"metadata": {"path": os.path.dirname(NOTEBOOK)}})
    client.execute()  # raises CellExecutionError on any failing cell

    texts = [outputs_text(c) for c in nb.cells if c.cell_type == "code"]
    sample_text = next(t for t in texts if "SAMPLE:" in t).split("SAMPLE:", 1)[1].strip()
    assert sample_text.startswith("Born in ") and len(sample_text) >= 200
    losses = next(m for t in texts if (m := re.search(r"\d+ steps, loss ([\d.]+) -> ([\d.]+)", t)))
    assert float(losses[2]) < float(losses[1])  # it learned something
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, "the loss plot is missing"
