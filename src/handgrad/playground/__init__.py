"""The playground: a page in the browser where a network trains in front of you and every number of its
backpropagation can be clicked (``handgrad playground``; docs/playground.md).

- :mod:`.session`: data, network, the trainer's state and the frames (handgrad and NumPy only);
- :mod:`.server`: the Starlette app, its safety checks and the WebSocket protocol;
- :mod:`.command`: the ``handgrad playground`` subcommand (uvicorn, signals, the URL with its token);
- ``static/``: index.html, app.js, style.css, served from the package (no build step, no CDN).

Starlette and uvicorn are the optional extra ``handgrad[playground]``, imported only when the server starts.
"""
