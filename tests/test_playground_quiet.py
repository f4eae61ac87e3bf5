"""The playground's costs and its terminal: the weight panel renders only the weight's part of the trace, and a
diverging run leaves no NumPy RuntimeWarning on the server's stderr (the page still says it diverged)."""

import json
import signal
import subprocess
import sys

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("websockets")

from handgrad.explain import Trace, trace
from handgrad.playground.session import Session


def test_the_weight_panel_renders_only_its_weight_not_the_whole_trace(monkeypatch):
    session = Session({"batch_size": 50, "data": {"name": "xor", "n_samples": 200}})
    session.one_step()
    session.select_weight(2, 1, 3)
    _, X, T = session.current_batch()
    full = trace(session.net, X, T, weight=(2, 1, 3)).render(precision=4)

    def whole_render(*args, **kwargs):
        raise AssertionError("the weight panel rendered every matrix of the trace")

    monkeypatch.setattr(Trace, "render", whole_render)
    shown = session.frame()["weight"]["trace"]
    assert shown == full[full.index("One weight:"):]  # the same text the page showed before
    assert shown.count("\n    n = ") == 50


def _serve():
    return subprocess.Popen([sys.executable, "-m", "handgrad", "playground", "--no-browser", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_diverging_run_says_so_on_the_page_and_nothing_on_the_servers_stderr():
    from websockets.sync.client import connect

    process = _serve()
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://"), url
        with connect(url.replace("http://", "ws://").replace("/?", "/ws?"), max_size=None) as socket:
            def until(kind):
                while True:
                    message = json.loads(socket.recv(timeout=30))
                    if message["type"] == kind:
                        return message

            until("frame")
            socket.send(json.dumps({"type": "configure", "config": {
                "data": {"name": "regression1d"}, "hidden": [{"size": 4, "activation": "relu"}],
                "output": "identity", "learning_rate": 99}}))
            until("network")
            socket.send(json.dumps({"type": "select_weight", "layer": 1, "i": 0, "j": 0}))
            socket.send(json.dumps({"type": "hover", "layer": 2, "i": 0, "j": 0}))
            socket.send(json.dumps({"type": "action", "action": "epoch"}))
            assert "lower the learning rate" in until("error")["message"]
            for action in ("step", "play", "epoch"):  # more steps on the diverged weights: a frame or a message
                socket.send(json.dumps({"type": "action", "action": action}))
                socket.send(json.dumps({"type": "action", "action": "pause"}))
                assert json.loads(socket.recv(timeout=30))["type"] in ("frame", "error")
            socket.send(json.dumps({"type": "action", "action": "reset"}))
            assert until("frame")["epoch"] == 0
    finally:
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=15)
    assert process.returncode == 0
    assert "RuntimeWarning" not in errors and "Traceback" not in errors, errors
