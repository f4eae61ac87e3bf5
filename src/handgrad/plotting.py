"""Pictures of training: loss curves, decision boundaries, confusion matrices, gradient norms, weights.

Needs matplotlib (``pip install handgrad[plot]``), imported only when a picture is drawn.
Figures are built with matplotlib's object-oriented API on the Agg canvas, so nothing
here touches pyplot's global state or your interactive backend. Every function returns
the :class:`matplotlib.figure.Figure`; given a ``path``, it also writes a PNG there
(atomically: a temporary file renamed into place).

The gradient-norm picture makes seed 003's point visible: with logistic (sigmoid)
hidden layers, sigma'(z) <= 1/4, so each layer further from the output multiplies the
backpropagated error by at most W^T * 1/4 and the first layers' gradients shrink:

    net = hg.MLP(2, [(8, "sigmoid")] * 6 + [(1, "sigmoid")])
    recorder = GradientNormRecorder(X[:256], y[:256])
    net.fit(X, y, epochs=50, callbacks=[recorder])
    plot_gradient_norms(recorder, "gradient_norms.png")   # ||dW1|| far below ||dW7||
"""

import numpy as np

from .errors import DataError, HandgradError

try:
    from .callbacks import Callback as _CallbackBase
except ImportError:  # a trainer without callbacks: the recorder can still be driven by hand
    _CallbackBase = object


class PlottingUnavailable(HandgradError, ImportError):
    """matplotlib is not installed."""


def _figure(width=6.4, height=4.8, ncols=1):
    """A Figure on an Agg canvas (no pyplot), and its axes."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlottingUnavailable("pictures need matplotlib: pip install handgrad[plot]") from None
    figure = Figure(figsize=(width * ncols, height), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, ncols)
    return figure, axes


def save_figure(figure, path):
    """Write ``figure`` as a PNG to ``path`` atomically; returns the path."""
    from .io import atomic_writer

    with atomic_writer(path, "wb") as file:
        figure.savefig(file, format="png", dpi=100)
    return path


def _finish(figure, path):
    if path is not None:
        save_figure(figure, path)
    return figure


# ---------------------------------------------------------------------------- curves
def _history_dict(history):
    record = history.as_dict() if hasattr(history, "as_dict") else dict(history)
    return {key: list(value) for key, value in record.items() if isinstance(value, (list, tuple))}


def plot_history(history, path=None, title="training"):
    """The loss (and every other metric) per epoch, training and validation side by side.

    ``history`` is a :class:`handgrad.training.History` or a dict like ``history.as_dict()``:
    'loss', 'val_loss', 'accuracy', 'val_accuracy', ... Metrics other than the loss go into
    a second panel.
    """
    record = _history_dict(history)
    if not record.get("loss"):
        raise DataError("the history has no 'loss' values to plot; train for at least one epoch.")
    epochs = record.get("epoch") or list(range(1, len(record["loss"]) + 1))
    skip = {"epoch", "seconds", "learning_rate", "lr"}
    others = sorted({key.removeprefix("val_") for key in record if key not in skip} - {"loss"})
    figure, axes = _figure(ncols=2 if others else 1)
    axes = np.atleast_1d(axes)

    def draw(ax, name):
        for key, style in ((name, "-"), ("val_" + name, "--")):
            values = record.get(key)
            if values:
                ax.plot(epochs[:len(values)], values, style, label=key.replace("val_", "validation "))
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.legend()
        ax.grid(alpha=0.3)

    draw(axes[0], "loss")
    if min(v for v in record["loss"] if np.isfinite(v)) > 0 and max(record["loss"]) / max(min(record["loss"]),
                                                                                         1e-300) > 50:
        axes[0].set_yscale("log")
    axes[0].set_title(title)
    for name in others:
        draw(axes[1], name)
    if others:
        axes[1].set_ylabel(", ".join(others))
        axes[1].set_title("metrics")
    return _finish(figure, path)


def plot_sharpness(history, path=None, learning_rate=None, title="sharpness"):
    """The loss per epoch beside the sharpness lambda_1 per epoch (handgrad.callbacks.Sharpness), with the
    line 2 / eta: gradient descent with learning rate eta is stable near a minimum only while lambda_1 < 2/eta.

    ``history`` is a :class:`handgrad.training.History` or a dict like ``history.as_dict()`` with 'loss' and
    'sharpness' (NaN for epochs not measured). ``learning_rate`` draws 2/eta for that eta; without it the
    history's 'lr' (the rate of each epoch) is used, and no line is drawn when neither is there.
    """
    record = _history_dict(history)
    values = np.asarray(record.get("sharpness", []), dtype=np.float64)
    if not np.isfinite(values).any():
        raise DataError("the history has no 'sharpness' values; train with callbacks=[Sharpness(X, T)] first.")
    epochs = np.asarray(record.get("epoch") or range(1, len(values) + 1))
    figure, (left, right) = _figure(ncols=2)
    if record.get("loss"):
        left.plot(epochs[:len(record["loss"])], record["loss"], label="loss")
    if record.get("val_loss"):
        left.plot(epochs[:len(record["val_loss"])], record["val_loss"], "--", label="validation loss")
    left.set_xlabel("epoch")
    left.set_ylabel("loss")
    left.set_title(title)
    measured = np.isfinite(values)
    right.plot(epochs[:len(values)][measured], values[measured], "o-", markersize=3, label="sharpness lambda_1")
    if learning_rate is not None:
        right.axhline(2.0 / float(learning_rate), color="tab:red", linestyle="--",
                      label=f"2/eta (eta={float(learning_rate):g})")
    elif record.get("lr"):
        rates = np.asarray(record["lr"], dtype=np.float64)
        right.plot(epochs[:len(rates)], 2.0 / rates, color="tab:red", linestyle="--", label="2/eta")
    right.set_xlabel("epoch")
    right.set_ylabel("largest Hessian eigenvalue")
    right.set_title("sharpness and the stability bound 2/eta")
    for ax in (left, right):
        ax.legend()
        ax.grid(alpha=0.3)
    return _finish(figure, path)


# ---------------------------------------------------------------------------- decision boundary
def plot_decision_boundary(net, X, y, path=None, transform=None, resolution=200, title="decision boundary"):
    """The network's predicted class over the plane, with the data points on top (2-D inputs only).

    ``transform`` maps raw features to the network's inputs (e.g. a fitted Standardizer's
    ``transform``), so the picture is drawn in the data's own units.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    if X.ndim != 2 or X.shape[1] != 2 or net.n_inputs != 2:
        raise DataError(f"a decision boundary needs 2 input features, got data of shape {X.shape} and a network "
                        f"with {net.n_inputs} inputs.")
    figure, ax = _figure()
    margin = 0.1 * (X.max(axis=0) - X.min(axis=0)) + 1e-9
    low, high = X.min(axis=0) - margin, X.max(axis=0) + margin
    gx, gy = np.meshgrid(np.linspace(low[0], high[0], resolution), np.linspace(low[1], high[1], resolution))
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    inputs = transform(grid) if transform is not None else grid
    output = net.forward(inputs)
    if net.output_activation.name == "sigmoid" and net.n_outputs == 1:
        surface = output[:, 0].reshape(gx.shape)  # P(class 1): the boundary is the 0.5 contour
        shading = ax.contourf(gx, gy, surface, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.6)
        ax.contour(gx, gy, surface, levels=[0.5], colors="k", linewidths=1.5)
        figure.colorbar(shading, ax=ax, label="P(class 1)")
    elif net.output_activation.name == "softmax":
        classes = output.argmax(axis=1).reshape(gx.shape)
        ax.contourf(gx, gy, classes, levels=np.arange(net.n_outputs + 1) - 0.5, cmap="tab10", alpha=0.35,
                    vmin=0, vmax=9)
    else:
        shading = ax.contourf(gx, gy, output[:, 0].reshape(gx.shape), levels=20, cmap="viridis", alpha=0.6)
        figure.colorbar(shading, ax=ax, label="output")
    colors = y if y.dtype.kind in "iu" else None
    ax.scatter(X[:, 0], X[:, 1], c=colors, cmap="tab10" if net.output_activation.name == "softmax" else "RdBu_r",
               vmin=0, vmax=9 if net.output_activation.name == "softmax" else 1, s=12, edgecolors="k",
               linewidths=0.3)
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.set_title(title)
    return _finish(figure, path)


# ---------------------------------------------------------------------------- confusion matrix
def plot_confusion_matrix(matrix, path=None, labels=None, title="confusion matrix"):
    """C[i, j] = samples of true class i predicted as j, with the counts written in the cells."""
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise DataError(f"a confusion matrix must be square, got shape {matrix.shape}.")
    K = matrix.shape[0]
    labels = [str(k) for k in range(K)] if labels is None else [str(label) for label in labels]
    figure, ax = _figure(width=max(4.0, 0.5 * K + 2), height=max(3.6, 0.5 * K + 1.6))
    image = ax.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=ax)
    threshold = matrix.max() / 2 if matrix.size else 0
    for i in range(K):
        for j in range(K):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if matrix[i, j] > threshold else "black")
    ax.set_xticks(range(K), labels)
    ax.set_yticks(range(K), labels)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    return _finish(figure, path)


# ---------------------------------------------------------------------------- gradient norms
class GradientNormRecorder(_CallbackBase):
    """Records ||dJ/dW_k||_F for every layer k, before training and after every epoch.

    The gradient is that of the full objective on a fixed probe set ``(X, T)`` (a few
    hundred training samples), computed with ``net.loss_and_grad`` (dropout off), so the
    curves are comparable across epochs and independent of the optimizer. Pass it to
    ``net.fit(..., callbacks=[recorder])``; ``recorder.norms`` is ``{"W1": [...], ...}``
    and ``recorder.epochs`` the matching epoch numbers (0 = before training).
    """

    def __init__(self, X, T):
        self.X = X
        self.T = T
        self.epochs = []
        self.norms = {}
        self.net = None

    def record(self, net, epoch):
        """Measure now (also usable by hand after each call to ``partial_fit``)."""
        _, grads = net.loss_and_grad(self.X, self.T)
        self.epochs.append(int(epoch))
        for k, (dW, _) in enumerate(grads, 1):
            self.norms.setdefault(f"W{k}", []).append(float(np.linalg.norm(dW)))

    def on_train_begin(self, net):
        self.net = net
        if not self.epochs:
            self.record(net, 0)

    def on_epoch_end(self, epoch, logs):
        self.record(self.net, epoch)

    def as_dict(self):
        return {"epoch": list(self.epochs), **{name: list(values) for name, values in self.norms.items()}}


def plot_gradient_norms(norms, path=None, title="gradient norm per layer"):
    """||dJ/dW_k|| per layer over training, on a log scale (vanishing gradients show as a fan of lines).

    ``norms`` is a :class:`GradientNormRecorder` or a dict ``{"W1": [...], "W2": [...], "epoch": [...]}``.
    """
    record = norms.as_dict() if hasattr(norms, "as_dict") else dict(norms)
    layers = sorted((key for key in record if key != "epoch"), key=lambda name: int(name[1:]) if name[1:].isdigit()
                    else 0)
    if not layers or not any(record[name] for name in layers):
        raise DataError("no gradient norms to plot; pass a GradientNormRecorder to fit(callbacks=[...]) first.")
    figure, ax = _figure()
    for name in layers:
        values = np.asarray(record[name], dtype=np.float64)
        epochs = record.get("epoch") or list(range(len(values)))
        ax.plot(epochs[:len(values)], np.maximum(values, 1e-300), label=f"||d{name}||")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("Frobenius norm of dJ/dW")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    ax.set_title(title)
    return _finish(figure, path)


# ---------------------------------------------------------------------------- weights
def plot_weight_histograms(net, path=None, bins=40, title="weights per layer"):
    """One histogram of the entries of W_k per layer (and of b_k when the layer has biases)."""
    n = len(net.layers)
    figure, axes = _figure(width=3.2, height=3.0, ncols=n)
    axes = np.atleast_1d(axes)
    for k, (layer, ax) in enumerate(zip(net.layers, axes), 1):
        ax.hist(layer.W.ravel(), bins=bins, color="tab:blue", alpha=0.8, label=f"W{k}")
        if layer.b is not None and layer.b.size > 1:
            ax.hist(layer.b.ravel(), bins=bins, color="tab:orange", alpha=0.6, label=f"b{k}")
        ax.set_title(f"layer {k}: {layer.activation.name} {layer.W.shape}", fontsize=9)
        ax.legend(fontsize=8)
    figure.suptitle(title)
    return _finish(figure, path)
