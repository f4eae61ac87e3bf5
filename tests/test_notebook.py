"""The example notebook runs, top to bottom, in a real Jupyter kernel (nbclient), and shows its rich output.

The kernel is this interpreter (a kernel spec written for the test, so no other Python's kernel is
picked up) and sees this process's environment, PYTHONPATH included.
"""

import json
import os
import sys

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("ipykernel")

NOTEBOOK = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "notebook_rich_display.ipynb")


@pytest.fixture
def kernel_name(tmp_path, monkeypatch):
    folder = tmp_path / "kernels" / "handgrad-test"
    folder.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "handgrad test", "language": "python"}
    (folder / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))  # the kernel inherits the environment, PYTHONPATH included
    return "handgrad-test"


def test_the_example_notebook_runs_and_displays_richly(kernel_name, tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(notebook, kernel_name=kernel_name, timeout=120,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    html = [output["data"]["text/html"] for output in outputs if "text/html" in output.get("data", {})]
    assert len(html) == 4  # the network, its equations, the history, the trace
    network, equations, history, trace = html
    assert "<svg" in network and "tanh" in network
    assert equations.count("<math") > 20 and "mfrac" in equations
    assert history.count("<polyline") == 2  # loss and val_loss
    assert "dW2[1,0]" in trace
