"""The playground's web server: Starlette routes, the safety checks, and one WebSocket per open page.

Safety (docs/playground.md, "Safety"):
- it binds 127.0.0.1 unless told otherwise;
- every request, the WebSocket included, needs the token of the URL (``?token=``), compared in
  constant time; without it: 403;
- a request whose Host is not one of the server's own names, or whose Origin is not the server's own
  origin, gets 403 (DNS rebinding, other sites driving it);
- uploads travel over the WebSocket and are refused above ``session.MAX_UPLOAD_BYTES``; a message
  larger than ``WS_MAX_BYTES`` closes that connection only;
- each page's training runs on the event loop in short slices (a frame's worth of steps, about 30 ms),
  so there are no training threads to leak: a closed tab ends its loop, a slow tab only slows its own
  loop (sending waits for it), and the other tabs go on;
- while playing, at most ``FRAMES_IN_FLIGHT`` frame is on its way that the page has not said it drew
  (``{"type": "drawn"}``): a page slow to draw a big network is not flooded, and pause answers sooner.
"""

import asyncio
import base64
import contextlib
import json
import os
import secrets
import traceback
from importlib import resources
from urllib.parse import parse_qs, urlsplit

from ..errors import HandgradError
from ..io import json_safe
from .session import DATA_SETS, FEATURES, MAX_HIDDEN_LAYERS, OPTIMIZER_RATES, PRESETS, RATE_WARNING_FACTOR, Session

WS_MAX_BYTES = 4 << 20
FRAME_SECONDS = 0.05  # one frame every 50 ms while playing
FRAMES_IN_FLIGHT = 1  # while playing, at most this many frames the page has not yet said it drew ("drawn")
LOCAL_NAMES = {"127.0.0.1", "localhost", "::1"}
ACTIONS = ("play", "pause", "step", "epoch", "reset")


def _starlette():
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        from ..errors import ConfigError

        raise ConfigError("the playground needs Starlette and uvicorn: pip install 'handgrad[playground]'.") from None


def _static(name):
    return resources.files("handgrad.playground").joinpath("static", name).read_text(encoding="utf-8")


def _host_name(host_header):
    """'127.0.0.1:8000' -> '127.0.0.1', '[::1]:8000' -> '::1' (lower case)."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Guard:
    """ASGI middleware: the token, Host and Origin checks in front of every HTTP request and WebSocket."""

    def __init__(self, app, token, allowed_names):
        self.app, self.token, self.allowed = app, token, set(allowed_names)

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        reason = self.refusal(scope)
        if reason is None:
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":  # closing before accept: the server answers the handshake with 403
            await send({"type": "websocket.close", "code": 1008})
            return None
        body = f"403 Forbidden: {reason}\n".encode()
        await send({"type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
        return None

    def refusal(self, scope):
        """None when the request may pass, else why not (shown in the 403 body)."""
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        host = headers.get("host", "")
        if _host_name(host) not in self.allowed:
            return f"the Host header '{host}' is not this server's name"
        origin = headers.get("origin")
        if origin is not None:
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or (parts.netloc or "").lower() != host.lower():
                return f"the Origin '{origin}' is not this server"
        supplied = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[0]
        if not secrets.compare_digest(supplied.encode(), self.token.encode()):
            return "a valid token is required (open the URL the playground printed, token included)"
        return None


def create_app(token, host="127.0.0.1"):
    """The Starlette application behind ``handgrad playground``, wrapped in :class:`Guard`."""
    _starlette()
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse, Response
    from starlette.routing import Route, WebSocketRoute

    types = {"app.js": "text/javascript", "style.css": "text/css"}

    async def index(request):
        page = _static("index.html").replace("{{TOKEN}}", token)
        return HTMLResponse(page, headers={"Cache-Control": "no-store", "Content-Security-Policy":
                                           "default-src 'self'; img-src 'self' data: blob:; style-src 'self' "
                                           "'unsafe-inline'; frame-ancestors 'none'"})

    async def static(request):
        name = request.path_params["name"]
        if name not in types:
            return Response("not found\n", status_code=404, media_type="text/plain")
        return Response(_static(name), media_type=types[name], headers={"Cache-Control": "no-store"})

    routes = [Route("/", index), Route("/static/{name}", static), WebSocketRoute("/ws", play_socket)]
    return Guard(Starlette(routes=routes), token, allowed_names(host))


def allowed_names(host):
    """The Host names this server answers to: loopback, the --host given, and for a wildcard address
    (0.0.0.0, ::) this machine's name and addresses. Any other name is a DNS-rebinding attempt."""
    names = LOCAL_NAMES | {host.strip("[]").lower()}
    if host.strip("[]") in ("0.0.0.0", "::"):
        import socket

        machine = socket.gethostname()
        names |= {machine.lower(), socket.getfqdn().lower()}
        with contextlib.suppress(OSError):
            names |= {info[4][0].lower() for info in socket.getaddrinfo(machine, None)}
    return names


# ---------------------------------------------------------------------------------------- the WebSocket
async def play_socket(websocket):
    """One open page: its own Session, messages in, frames out, until the page goes away."""
    from starlette.websockets import WebSocketDisconnect

    await websocket.accept()
    session = Session()
    session.in_flight = 0  # frames sent while playing that the page has not said it drew (see _send_frame)
    await websocket.send_text(json.dumps({"type": "hello", "presets": PRESETS, "data_sets": list(DATA_SETS),
                                          "features": list(FEATURES), "actions": list(ACTIONS),
                                          "max_hidden_layers": MAX_HIDDEN_LAYERS, "optimizer_rates": OPTIMIZER_RATES,
                                          "rate_warning_factor": RATE_WARNING_FACTOR}))
    await _send_network(websocket, session)
    try:
        await _loop(websocket, session)
    except (WebSocketDisconnect, OSError, RuntimeError):
        pass  # the tab closed while a frame was on its way: this session ends here, nothing else does
    finally:
        session.playing = False
        with contextlib.suppress(Exception):
            await websocket.close()


async def _loop(websocket, session):
    """Wait for a message, or while playing for the next frame's time; a reader task fills the inbox.
    A frame is due every FRAME_SECONDS while playing, whether or not messages arrive meanwhile."""
    inbox = asyncio.Queue()
    reader = asyncio.create_task(_read(websocket, inbox))
    clock = asyncio.get_running_loop().time
    next_frame = clock()
    try:
        while True:
            due = session.playing and session.in_flight < FRAMES_IN_FLIGHT
            timeout = max(next_frame - clock(), 0.0) if due else None
            try:
                text = await asyncio.wait_for(inbox.get(), timeout)
            except asyncio.TimeoutError:
                text = None
            if text is _CLOSED:
                return
            if text is not None:
                await _handle(websocket, session, text)
            if session.playing and session.in_flight < FRAMES_IN_FLIGHT and clock() >= next_frame:
                await _guarded(websocket, session, session.advance)
                next_frame = clock() + FRAME_SECONDS
    finally:
        reader.cancel()


_CLOSED = object()


async def _read(websocket, inbox):
    """Every message of the page into the inbox; _CLOSED when the page goes away."""
    try:
        while True:
            await inbox.put(await websocket.receive_text())
    except Exception:  # disconnect, a binary frame, the server stopping: this page is done
        await inbox.put(_CLOSED)


async def _guarded(websocket, session, work, network=None, frame=True):
    """Run a piece of session work, then send a frame, after the ``network()`` message when the work built a
    new network (so the page never draws a frame of the new data with the old network's task and shape).
    A handgrad error becomes a message on the page; any other exception is a bug: its traceback goes to
    the server's stderr and the page is told so."""
    try:
        work()
    except HandgradError as error:
        session.playing = False  # the page shows it paused ("playing": false), not still playing
        await _send(websocket, {"type": "error", "message": " ".join(str(error).split()), "playing": False})
        return False
    except Exception as error:  # a bug: the page and the other tabs go on
        session.playing = False
        traceback.print_exc()
        await _send(websocket, {"type": "error", "playing": False,
                                "message": f"internal error ({type(error).__name__}: {error}); "
                                           "this is a bug in handgrad, please report it."})
        return False
    if network is not None:
        await _send(websocket, network())
    if frame:
        await _send_frame(websocket, session)
    return True


async def _send_frame(websocket, session):
    """A frame; one sent while playing counts as in flight until the page says it drew it ("drawn"): the page
    answers every such frame once, so the count is exact, and the loop sends the next play frame only when
    it is below FRAMES_IN_FLIGHT."""
    frame = session.frame()
    if frame["playing"]:
        session.in_flight += 1
    await _send(websocket, frame)


async def _send(websocket, message):
    try:  # the common case in one pass; NumPy values (json_safe as default) as numbers and lists
        text = json.dumps(message, allow_nan=False, default=json_safe)
    except ValueError:  # a NaN or infinity somewhere (a diverging run): JSON has none, so they go as null
        text = json.dumps(json_safe(message), allow_nan=False)
    await websocket.send_text(text)


async def _send_network(websocket, session):
    await _send(websocket, session.network_message())
    await _send_frame(websocket, session)


async def _handle(websocket, session, text):
    """One message of the page (docs/playground.md, "Protocol")."""
    try:
        message = json.loads(text)
        kind = message.get("type")
    except (ValueError, AttributeError):
        await _send(websocket, {"type": "error", "message": "the server got a message that is not a JSON object."})
        return
    if kind == "drawn":  # the page drew a frame: the next one may come (a page that draws slowly is not flooded)
        session.in_flight = max(session.in_flight - 1, 0)
    elif kind == "action":
        await _action(websocket, session, message.get("action"))
    elif kind == "configure":  # the reply names the request, so the page can tell a stale reply
        await _guarded(websocket, session, lambda: session.configure(message.get("config") or {}),
                       network=lambda: {**session.network_message(), "request": message.get("id")})
    elif kind == "select_weight":
        await _guarded(websocket, session, lambda: session.select_weight(*_ints(message, "layer", "i", "j")))
    elif kind == "select_neuron":
        await _guarded(websocket, session, lambda: session.select_neuron(*_ints(message, "layer", "unit")))
    elif kind == "hover":  # the connection under the pointer (none: it left): its exact numbers, now and every frame
        await _hover(websocket, session, message)
    elif kind == "close_panel":  # "panel": "weight" or "neuron" closes that one; none given closes both
        panel = message.get("panel")
        if panel in (None, "weight"):
            session.selected_weight = None
        if panel in (None, "neuron"):
            session.selected_neuron = None
    elif kind == "upload_csv":
        await _guarded(websocket, session, lambda: session.load_csv(str(message.get("text", "")), _filename(message)),
                       network=session.network_message)
    elif kind == "load_model":
        await _guarded(websocket, session, lambda: session.load_model(_decode(message), _filename(message)),
                       network=session.network_message)
    elif kind == "download":
        await _download(websocket, session, message.get("what"))
    else:
        await _send(websocket, {"type": "error", "message": f"unknown message type {kind!r}."})


async def _hover(websocket, session, message):
    """A small ``hover`` message with the exact weight and gradient of the connection under the pointer (the
    frames, which carry the weights only as codes for drawing, then bring it along while it stays there)."""
    if message.get("layer") is None:
        session.hovered_weight = None
        return
    try:
        session.hover_weight(*_ints(message, "layer", "i", "j"))
    except HandgradError:  # a line of the network before the last rebuild, still under the pointer: no box
        session.hovered_weight = None
        return
    await _send(websocket, {"type": "hover", **session.hover_detail(*session.hovered_weight)})


async def _action(websocket, session, action):
    if action == "play":
        session.playing = True
        await _send_frame(websocket, session)
    elif action == "pause":
        session.playing = False
        await _send_frame(websocket, session)
    elif action == "step":
        session.playing = False
        await _guarded(websocket, session, session.one_step)
    elif action == "epoch":
        session.playing = False
        await _epoch(websocket, session)
    elif action == "reset":
        await _guarded(websocket, session, session.reset, network=session.network_message)
    else:
        await _send(websocket, {"type": "error", "message": f"unknown action {action!r}; use {', '.join(ACTIONS)}."})


async def _epoch(websocket, session):
    """The epoch action in slices of about 30 ms (session.advance stops at the epoch's end), the event loop running
    between them: an epoch of thousands of steps of a big network (batch norm, 8 layers of 64, batches of 2: 20 s
    on a busy machine) held the whole server before, every other tab and a stop signal included. A page that goes
    away ends it."""
    from starlette.websockets import WebSocketState

    epoch = session.epoch
    while session.epoch == epoch:
        if not await _guarded(websocket, session, session.advance, frame=False):
            return
        await asyncio.sleep(0)
        if websocket.client_state != WebSocketState.CONNECTED:
            return
    await _send_frame(websocket, session)


def _ints(message, *names):
    from ..errors import ConfigError

    try:
        return [int(message[name]) for name in names]
    except (KeyError, TypeError, ValueError, OverflowError):  # (OverflowError: JSON's Infinity)
        raise ConfigError(f"expected integers {', '.join(names)} in the message.") from None


def _filename(message):
    return os.path.basename(str(message.get("name") or "upload"))[:100]


def _decode(message):
    from ..errors import DataError

    data = str(message.get("data", ""))
    if len(data) > WS_MAX_BYTES:
        raise DataError("the file is too large for the playground.")
    try:
        return base64.b64decode(data, validate=True)
    except ValueError:
        raise DataError("the model file did not arrive intact (bad base64); choose it again.") from None


async def _download(websocket, session, what):
    """A file for the page to save: the model (handgrad's format), the history (JSON) or the current batch."""
    if what == "model":
        try:
            data = base64.b64encode(session.model_bytes()).decode()
        except HandgradError as error:  # weights a model file may not hold (an overflow to inf): said on the page
            await _send(websocket, {"type": "error", "message": " ".join(str(error).split())})
            return
        await _send(websocket, {"type": "file", "name": "playground-model.npz", "mime": "application/octet-stream",
                                "base64": data})
    elif what == "history":
        # a diverged run's last epochs may hold inf or NaN, which JSON lacks: they are saved as null
        text = json.dumps(json_safe(session.history_json()), indent=1, allow_nan=False)
        await _send(websocket, {"type": "file", "name": "playground-history.json", "mime": "application/json",
                                "text": text})
    elif what == "batch":
        await _send(websocket, {"type": "file", "name": "playground-batch.csv", "mime": "text/csv",
                                "text": session.batch_csv()})
    else:
        await _send(websocket, {"type": "error", "message": f"nothing to download called {what!r}."})
