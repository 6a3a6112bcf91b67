"""EPI: the update rule, 8-bit quantization error, iteration counts, persistence."""

from __future__ import annotations

import numpy as np
import pytest

from ml.epi import EPIStore, dequantize, epi_update, quantize


def test_first_update_stores_the_prediction() -> None:
    p = np.array([[0.0, 0.25], [0.5, 1.0]], dtype=np.float32)
    q = epi_update(None, p)
    assert q.dtype == np.uint8
    assert q.tolist() == [[0, 64], [128, 255]]  # round(255·p)


def test_update_arithmetic_nearest() -> None:
    prev = np.array([200, 10], dtype=np.uint8)
    pred = np.array([0.0, 1.0], dtype=np.float32)
    q = epi_update(prev, pred, beta=0.9, rounding="nearest")
    want = 0.9 * prev / 255 + 0.1 * pred  # [0.70588, 0.13529]
    assert q.tolist() == np.rint(want * 255).astype(int).tolist() == [180, 35]


@pytest.mark.parametrize("rounding,bound", [("nearest", 0.5 / 255), ("stochastic", 1 / 255)])
def test_quantization_error_bound(rounding: str, bound: float) -> None:
    rng = np.random.default_rng(0)
    p = rng.random((64, 64)).astype(np.float32)
    err = np.abs(dequantize(quantize(p, rounding=rounding, seed=1)) - p)
    assert err.max() <= bound + 1e-7
    prev = quantize(rng.random((64, 64)))
    exact = 0.99 * dequantize(prev) + 0.01 * p
    err = np.abs(dequantize(epi_update(prev, p, 0.99, rounding=rounding, seed=2)) - exact)
    assert err.max() <= bound + 1e-6


def test_stochastic_rounding_follows_the_exact_ema_where_nearest_freezes() -> None:
    # A constant prediction of 0.15 against a stored 0: each step moves the exact EMA by < 0.5/255,
    # so round-to-nearest never leaves 0; stochastic rounding tracks the exact EMA on average.
    target = np.full((32, 32), 0.15, dtype=np.float32)
    nearest = stochastic = np.zeros((32, 32), dtype=np.uint8)
    exact = 0.0
    for t in range(300):
        nearest = epi_update(nearest, target, 0.99, rounding="nearest")
        stochastic = epi_update(stochastic, target, 0.99, rounding="stochastic", seed=t)
        exact = 0.99 * exact + 0.01 * 0.15
    assert nearest.max() == 0
    assert dequantize(stochastic).mean() == pytest.approx(exact, abs=2e-3)


def test_store_counts_and_values() -> None:
    store = EPIStore(beta=0.5, rounding="nearest")
    assert store.get("a") is None and store.count("a") == 0
    store.update("a", np.ones((2, 2)))
    got = store.update("a", np.zeros((2, 2)))
    store.update("b", np.zeros((2, 2)))
    assert store.count("a") == 2 and store.count("b") == 1
    np.testing.assert_allclose(got, np.full((2, 2), 128 / 255))  # 0.5·1 + 0.5·0, rounded to 8 bits
    assert sorted(store) == ["a", "b"] and len(store) == 2 and "a" in store
    assert store.get_uint8("a").dtype == np.uint8


def test_store_stochastic_is_reproducible() -> None:
    pred = np.random.default_rng(3).random((16, 16)).astype(np.float32)
    maps = []
    for _ in range(2):
        store = EPIStore(seed=7)
        store.update("x", np.zeros((16, 16)))
        store.update("x", pred)
        maps.append(store.get_uint8("x"))
    np.testing.assert_array_equal(maps[0], maps[1])


def test_save_load_round_trip(tmp_path) -> None:
    store = EPIStore(beta=0.9, seed=3)
    store.update("mask_1.png", np.full((4, 4), 0.3))
    store.update("mask_1.png", np.full((4, 4), 0.7))
    store.update("weird name, ünïcode.png", np.eye(4))
    path = tmp_path / "sub" / "epi.npz"
    store.save(path)
    assert not list(path.parent.glob(".tmp-*"))
    loaded = EPIStore.load(path)
    assert loaded.beta == 0.9 and loaded.seed == 3 and loaded.rounding == "stochastic"
    for key in store:
        np.testing.assert_array_equal(loaded.get_uint8(key), store.get_uint8(key))
        assert loaded.count(key) == store.count(key)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError):
        epi_update(np.zeros((2, 2), np.uint8), np.zeros((3, 3)))
    with pytest.raises(ValueError):
        epi_update(None, np.full((2, 2), 1.5))
    with pytest.raises(ValueError):
        epi_update(None, np.full((2, 2), np.nan))
    with pytest.raises(ValueError):
        epi_update(None, np.zeros((2, 2)), beta=1.0)
    with pytest.raises(ValueError):
        dequantize(np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError):
        EPIStore(rounding="floor")  # type: ignore[arg-type]


def test_store_can_be_seeded_from_a_database() -> None:
    store = EPIStore(beta=0.5, rounding="nearest")
    store.set("case-1", np.full((2, 2), 255, np.uint8), count=4)
    assert store.count("case-1") == 4
    np.testing.assert_allclose(store.update("case-1", np.zeros((2, 2))), np.full((2, 2), 128 / 255))
    assert store.count("case-1") == 5
    with pytest.raises(ValueError):
        store.set("x", np.zeros((2, 2)), count=1)


def test_beta_rule_leaves_the_stated_share_of_the_starting_map() -> None:
    from ml.epi import beta_for_updates
    from ml.train import TrainConfig

    for n in (1, 3, 5, 20, 100):
        beta = beta_for_updates(n)
        assert beta**n == pytest.approx(0.05)
        prev = np.full((4, 4), 255, np.uint8)  # the prototype said 1.0 everywhere; every later prediction says 0
        for _ in range(n):
            prev = epi_update(prev, np.zeros((4, 4), np.float32), beta, rounding="nearest")
        assert dequantize(prev).max() <= 0.05 + n * 0.5 / 255  # <= 5 % left, up to rounding
    assert beta_for_updates(0) == 0.0
    assert 0.99**5 > 0.95  # the paper's beta over a 5-update round: the prototype keeps 95 %
    # a round: one update per semi-supervised epoch; from no maps the first only stores P_0
    cfg = TrainConfig(epochs=6, prototype_epochs=1)
    assert cfg.resolved_epi_beta(continuing=True) == pytest.approx(0.05 ** (1 / 5))
    assert cfg.resolved_epi_beta(continuing=False) == pytest.approx(0.05 ** (1 / 4))
    assert TrainConfig(epochs=6, epi_beta=0.99).resolved_epi_beta(continuing=True) == 0.99  # the paper's setting
    assert TrainConfig(use_epi=False).resolved_epi_beta(continuing=True) == 0.0
