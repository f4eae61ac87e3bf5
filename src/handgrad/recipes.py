"""The image recipe: settings measured to train image-like classifiers well, and the shifted copies they train on.

Chosen by measurement with benchmarks/mnist_accuracy.py (docs/training.md, "The image recipe").
"""

import numpy as np

from .errors import DataError
from .optimizers import AdamW
from .schedules import OneCycle


def shifted_copies(X, T, image_shape, pixels=1):
    """(X', T'): the images of X (rows of ``image_shape`` pixels) followed by copies shifted by ``pixels``
    up, down, left and right (vacated pixels are 0), with T repeated to match: 5 N samples.

    The image recipe trains on these: digits stay digits when moved by a pixel, and the
    extra variety cuts overfitting more than any regularizer did in our measurements.
    """
    X = np.asarray(X)
    height, width = image_shape
    if X.ndim != 2 or X.shape[1] != height * width:
        raise DataError(f"X must have one row of {height}x{width} = {height * width} pixels per image, "
                        f"got shape {X.shape}.")
    images = X.reshape(-1, height, width)
    out = [images]
    k = int(pixels)
    for dy, dx in ((k, 0), (-k, 0), (0, k), (0, -k)):
        moved = np.zeros_like(images)
        moved[:, max(dy, 0):height + min(dy, 0), max(dx, 0):width + min(dx, 0)] = \
            images[:, max(-dy, 0):height + min(-dy, 0), max(-dx, 0):width + min(-dx, 0)]
        out.append(moved)
    T = np.asarray(T)
    return np.concatenate(out).reshape(-1, height * width), np.concatenate([T] * len(out))


def image_recipe(n_classes=10, epochs=6):
    """The recommended settings for image-like classification (MNIST-like: pixels in [0, 1], ~10^4 images).

    Returns fresh objects: ``{"layers", "dropout", "dtype", "fit": keyword arguments for fit}``; train on
    :func:`shifted_copies` of the images::

        recipe = image_recipe(10)
        net = hg.MLP(784, recipe["layers"], dropout=recipe["dropout"], dtype=recipe["dtype"], seed=0)
        X5, y5 = shifted_copies(X, y, (28, 28))
        net.fit(X5, y5, **recipe["fit"])

    Chosen by measurement with benchmarks/mnist_accuracy.py (see docs/training.md, "The image recipe").
    """
    return {
        "layers": [(512, "relu"), (256, "relu"), (n_classes, "softmax")],
        "dropout": [0.2, 0.2],
        "dtype": "float32",
        "fit": {"epochs": epochs, "batch_size": 128, "optimizer": AdamW(weight_decay=0.01), "learning_rate": 2e-3,
                "schedule": OneCycle()},
    }
