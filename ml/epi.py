"""Exponential Pseudo-label Iteration (EPI, paper Eq. 8) with 8-bit storage.

Per unlabeled case and pixel: ``P_t = β·P_{t-1} + (1-β)·P̂_t``, where ``P̂_t`` is the current model's predicted
probability. β = 0.99 is the paper's setting (~100 generations); a training round picks β from the number of updates
it will make (:func:`beta_for_updates`: the starting map's weight falls to 5 % by the round's end). The first update stores ``P̂`` itself as ``P_0`` (the prototype's
prediction). Maps are stored as uint8 (``round(255·p)``).

Why stochastic rounding: with β = 0.99 one update moves a pixel by ``0.01·(P̂ - P)``, which is below
half a quantization step (0.5/255) whenever ``|P̂ - P| < 0.196``. Rounding to nearest would freeze the
map there (a 0.2-wide dead zone). Stochastic rounding (round up with probability equal to the
fractional part) is unbiased, so the stored map follows the exact EMA in expectation; each stored value
is within 1/255 of the exact update of the previous stored value. Pass ``rounding="nearest"`` for
deterministic round-to-nearest (error <= 0.5/255 per step, with the dead zone). Stochastic rounding is
reproducible when a seed is given; the store seeds it from (its seed, the case key, the iteration).

The server keeps the uint8 map and the iteration count per case in its database and calls the pure
function :func:`epi_update`; the trainer uses :class:`EPIStore` (same arithmetic, npz persistence).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np

Rounding = Literal["stochastic", "nearest"]
DEFAULT_BETA = 0.99  # the paper's β, meant for ~100 generations (0.99^100 = 0.37 of the prototype is still left)
EPI_RESIDUAL = 0.05  # the β rule: the starting map's weight falls to this by the end of a round


def beta_for_updates(n_updates: int, residual: float = EPI_RESIDUAL) -> float:
    """The β rule: the β under which the map a round starts from (the prototype's prediction, or the map the
    previous round left) keeps weight ``residual`` after the round's ``n_updates`` EMA updates: ``β^n = residual``,
    so ``β = residual^(1/n)``. 5 updates: 0.549; 20: 0.861; 100: 0.970. The paper's fixed 0.99 would leave the
    prototype 95 % of the weight after a 5-update round, so a round could barely move its pseudo-labels.
    """
    if not 0.0 < residual < 1.0:
        raise ValueError(f"residual must be in (0, 1), got {residual}")
    if n_updates < 1:
        return 0.0  # no EMA update happens: β is never used
    return float(residual ** (1.0 / n_updates))


def _check_prob(prob: np.ndarray) -> np.ndarray:
    p = np.asarray(prob, dtype=np.float32)
    if not np.all(np.isfinite(p)):
        raise ValueError("prediction contains NaN or inf")
    if p.size and (p.min() < -1e-4 or p.max() > 1 + 1e-4):
        raise ValueError(f"prediction must be probabilities in [0, 1], got range [{p.min()}, {p.max()}]")
    return np.clip(p, 0.0, 1.0)


def quantize(prob: np.ndarray, *, rounding: Rounding = "nearest", seed: int | None = None) -> np.ndarray:
    """Probabilities in [0, 1] -> uint8 ``0..255``. ``"stochastic"`` rounding uses ``seed`` (None: fresh entropy)."""
    scaled = _check_prob(prob).astype(np.float64) * 255.0
    if rounding == "nearest":
        q = np.rint(scaled)
    elif rounding == "stochastic":
        low = np.floor(scaled)
        rng = np.random.default_rng(seed)
        q = low + (rng.random(scaled.shape) < (scaled - low))
    else:
        raise ValueError(f"rounding must be 'stochastic' or 'nearest', got {rounding!r}")
    return np.clip(q, 0, 255).astype(np.uint8)


def dequantize(q: np.ndarray) -> np.ndarray:
    """uint8 map -> float32 probabilities in [0, 1]."""
    q = np.asarray(q)
    if q.dtype != np.uint8:
        raise ValueError(f"expected a uint8 map, got {q.dtype}")
    return q.astype(np.float32) / 255.0


def epi_update(
    prev: np.ndarray | None,
    pred_prob: np.ndarray,
    beta: float = DEFAULT_BETA,
    *,
    rounding: Rounding = "stochastic",
    seed: int | None = None,
) -> np.ndarray:
    """One EPI step on 8-bit maps.

    Args:
        prev: the stored uint8 map ``P_{t-1}``, or ``None`` for a case seen for the first time.
        pred_prob: the current prediction ``P̂_t``, float probabilities in [0, 1], same shape as ``prev``.
        beta: momentum β in [0, 1).
        rounding: ``"stochastic"`` (unbiased, default) or ``"nearest"``.
        seed: seed of the stochastic rounding; pass e.g. a hash of (case id, iteration) to make the update
            reproducible. ``None`` draws fresh entropy.

    Returns:
        the new uint8 map ``P_t`` (``P_0 = quantize(P̂)`` with nearest rounding when ``prev`` is None).
    """
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    p_hat = _check_prob(pred_prob)
    if prev is None:
        return quantize(p_hat, rounding="nearest")
    prev = np.asarray(prev)
    if prev.shape != p_hat.shape:
        raise ValueError(f"previous map {prev.shape} and prediction {p_hat.shape} must have the same shape")
    new = beta * dequantize(prev).astype(np.float64) + (1.0 - beta) * p_hat
    return quantize(new, rounding=rounding, seed=seed)


def _stable_seed(*parts: object) -> int:
    digest = hashlib.sha256("\x00".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little")


class EPIStore:
    """EPI maps and iteration counts per case key, with atomic npz persistence.

    ``count(key)`` is the number of updates the case has received (1 after ``P_0``).
    """

    def __init__(self, beta: float = DEFAULT_BETA, rounding: Rounding = "stochastic", seed: int = 0) -> None:
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"beta must be in [0, 1), got {beta}")
        if rounding not in ("stochastic", "nearest"):
            raise ValueError(f"rounding must be 'stochastic' or 'nearest', got {rounding!r}")
        self.beta = beta
        self.rounding: Rounding = rounding
        self.seed = seed
        self._maps: dict[str, np.ndarray] = {}
        self._counts: dict[str, int] = {}

    def update(self, key: str, pred_prob: np.ndarray) -> np.ndarray:
        """Fold a prediction into the case's map; returns the new map as float32 probabilities."""
        count = self._counts.get(key, 0)
        seed = _stable_seed(self.seed, key, count)
        q = epi_update(self._maps.get(key), pred_prob, self.beta, rounding=self.rounding, seed=seed)
        self._maps[key] = q
        self._counts[key] = count + 1
        return dequantize(q)

    def set(self, key: str, q: np.ndarray, count: int) -> None:
        """Seed a case from outside (e.g. the uint8 map and iteration count a database kept)."""
        q = np.asarray(q)
        if q.dtype != np.uint8:
            raise ValueError(f"expected a uint8 map, got {q.dtype}")
        if count < 1:
            raise ValueError(f"count must be >= 1 for a stored map, got {count}")
        self._maps[key] = q
        self._counts[key] = int(count)

    def get(self, key: str) -> np.ndarray | None:
        """The case's map as float32 probabilities, or None if it was never updated."""
        q = self._maps.get(key)
        return None if q is None else dequantize(q)

    def get_uint8(self, key: str) -> np.ndarray | None:
        return self._maps.get(key)

    def count(self, key: str) -> int:
        return self._counts.get(key, 0)

    def keys(self) -> list[str]:
        return list(self._maps)

    def __contains__(self, key: object) -> bool:
        return key in self._maps

    def __len__(self) -> int:
        return len(self._maps)

    def __iter__(self) -> Iterator[str]:
        return iter(self._maps)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write all maps, counts and settings to one ``.npz`` (atomically: temp file + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        keys = list(self._maps)
        meta = {"beta": self.beta, "rounding": self.rounding, "seed": self.seed, "keys": keys}
        arrays = {f"map_{i}": self._maps[k] for i, k in enumerate(keys)}
        arrays["counts"] = np.asarray([self._counts[k] for k in keys], dtype=np.int64)
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez_compressed(fh, **arrays)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> EPIStore:
        with np.load(Path(path), allow_pickle=False) as data:
            meta = json.loads(data["meta"].tobytes().decode("utf-8"))
            store = cls(beta=float(meta["beta"]), rounding=meta["rounding"], seed=int(meta["seed"]))
            counts = data["counts"]
            for i, key in enumerate(meta["keys"]):
                store._maps[key] = data[f"map_{i}"]
                store._counts[key] = int(counts[i])
        return store
