"""``handgrad playground``: start the server, print its URL (token included), open the browser.

    handgrad playground                      # 127.0.0.1, a free port, opens the browser
    handgrad playground --port 8765 --no-browser

The URL is printed on a line of standard output that starts with ``http://``. Ctrl-C or SIGTERM stops
the server within a few seconds (uvicorn's graceful shutdown, bounded by ``SHUTDOWN_SECONDS``).
"""

import ipaddress
import secrets
import signal
import socket
import sys

from ..errors import ConfigError

SHUTDOWN_SECONDS = 3


def register(sub):
    """Add the ``playground`` subcommand to cli.py's subparsers."""
    parser = sub.add_parser("playground", help="train a network in the browser and click any number of its "
                                               "backpropagation (needs handgrad[playground])",
                            description="Start the playground: a local web page where a small network trains "
                                        "live; click a weight for its gradient, a neuron for its numbers.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this computer "
                                                             "only)")
    parser.add_argument("--port", type=int, default=0, help="port (default 0: a free one)")
    parser.add_argument("--no-browser", action="store_true", help="print the URL but do not open a browser")
    parser.set_defaults(func=cmd_playground)
    return parser


def _bind(host, port):
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, got {port}.")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({error.strerror}); choose another --port or "
                          "--host.") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _is_loopback(host):
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def cmd_playground(args):
    from .server import WS_MAX_BYTES, create_app

    app = create_app(token := secrets.token_urlsafe(24), host=args.host)
    import uvicorn

    sock = _bind(args.host, args.port)
    port = sock.getsockname()[1]
    shown = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{shown}:{port}/?token={token}"
    if not _is_loopback(args.host):
        print(f"handgrad: warning: listening on {args.host}, reachable from other machines; anyone with the "
              "URL (token included) can use it.", file=sys.stderr)
    print(url, flush=True)
    print("Ctrl-C stops the playground.", file=sys.stderr, flush=True)
    if not args.no_browser:
        import webbrowser

        webbrowser.open(url)
    config = uvicorn.Config(app, log_level="warning", ws_max_size=WS_MAX_BYTES, lifespan="off",
                            timeout_graceful_shutdown=SHUTDOWN_SECONDS, ws_ping_interval=None)
    previous = signal.signal(signal.SIGTERM, _stop)  # uvicorn handles the signal, then raises it again
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except (KeyboardInterrupt, _Stopped):
        pass  # the server has shut down already: this is the clean way out
    finally:
        signal.signal(signal.SIGTERM, previous)
        sock.close()
    print("handgrad: playground stopped.", file=sys.stderr)
    return 0


class _Stopped(Exception):
    pass


def _stop(signum, frame):
    raise _Stopped
