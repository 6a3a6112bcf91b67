"""TextEmbedder: word pooling as in LViT, pad/cut to L, memory and disk caches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ml.text import TextEmbedder, default_model_dir, pool_words


@pytest.fixture(scope="module")
def embedder() -> TextEmbedder:
    return TextEmbedder(length=10)


def _real_words(features: np.ndarray) -> int:
    return int((np.abs(features).sum(-1) > 0).sum())


def test_default_model_is_the_bundled_bert(embedder: TextEmbedder) -> None:
    assert (default_model_dir() / "vocab.txt").is_file()
    assert embedder.dim == 384
    assert embedder.embed("Left lung.").shape == (10, 384)


def test_punctuation_counts_as_a_word_and_padding_is_zero(embedder: TextEmbedder) -> None:
    feats = embedder.embed("Left lung, right lung.")  # left | lung | , | right | lung | .
    assert feats.dtype == np.float32
    assert _real_words(feats) == 6
    assert np.all(feats[6:] == 0)
    assert np.all(np.abs(feats[:6]).sum(-1) > 0)


def test_wordpieces_are_averaged_per_word(embedder: TextEmbedder) -> None:
    sentence = "Carcinomatosis here."
    feats = embedder.embed(sentence)
    backend = embedder._model
    enc = backend.tokenizer([sentence], return_tensors="pt")
    assert enc.word_ids(0).count(0) > 1  # the first word is split into several WordPieces
    with torch.no_grad():
        hidden = backend.model(**enc).last_hidden_state[0].numpy()
    ids = np.array([-1 if w is None else w for w in enc.word_ids(0)])
    np.testing.assert_allclose(feats[0], hidden[ids == 0].mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(feats[2], hidden[ids == 2].mean(0), rtol=1e-5, atol=1e-5)  # "."
    assert _real_words(feats) == 3


def test_long_sentences_are_cut_to_L(embedder: TextEmbedder) -> None:
    sentence = "Bilateral pulmonary infection, two infected areas, upper middle lower left lung and all right lung."
    short = embedder.embed(sentence)
    long = TextEmbedder(length=30).embed(sentence)
    assert _real_words(short) == 10
    np.testing.assert_allclose(short, long[:10], atol=1e-6)  # the same words, cut, not re-pooled
    assert _real_words(long) == 18


def test_cache_hit_does_not_rerun_the_model(embedder: TextEmbedder) -> None:
    e = TextEmbedder(length=10)
    first = e.embed_many(["One area.", "Two areas.", "One area."])
    assert e.model_calls == 1  # misses are batched, duplicates embedded once
    np.testing.assert_array_equal(first[0], first[2])
    again = e.embed_many(["Two areas.", "One area."])
    assert e.model_calls == 1
    np.testing.assert_array_equal(again[1], first[0])
    again[0][:] = 7  # callers get copies; the cache is untouched
    np.testing.assert_array_equal(e.embed("Two areas."), first[1])
    assert e.model_calls == 1


def test_disk_cache_round_trip_without_loading_the_model(tmp_path) -> None:
    writer = TextEmbedder(length=10, cache_dir=tmp_path)
    want = writer.embed("Unilateral pulmonary infection, one infected area, lower left lung.")
    assert len(list(tmp_path.rglob("*.npy"))) == 1
    assert not list(tmp_path.rglob(".tmp-*"))  # atomic writes leave no temp files
    reader = TextEmbedder(length=10, cache_dir=tmp_path)
    got = reader.embed("Unilateral  pulmonary infection, one infected area, lower left lung. ")  # whitespace-normalised
    np.testing.assert_array_equal(got, want)
    assert reader.model_calls == 0 and reader._model is None
    other_length = TextEmbedder(length=5, cache_dir=tmp_path)
    assert other_length.cache_key("x") != reader.cache_key("x")


def test_float16_storage_is_consistent_between_miss_and_hit(tmp_path) -> None:
    e = TextEmbedder(length=10, cache_dir=tmp_path, storage_dtype="float16")
    miss = e.embed("Lower right lung.")
    e.clear_memory_cache()
    hit = e.embed("Lower right lung.")
    np.testing.assert_array_equal(miss, hit)
    assert e.model_calls == 1


def test_pool_words_ignores_padding() -> None:
    feats = np.zeros((2, 4, 3), dtype=np.float32)
    feats[0, :2] = [[1, 2, 3], [3, 2, 1]]
    np.testing.assert_allclose(pool_words(feats)[0], [2, 2, 2])
    np.testing.assert_allclose(pool_words(feats)[1], [0, 0, 0])
    torch.testing.assert_close(pool_words(torch.from_numpy(feats)), torch.from_numpy(pool_words(feats)))


def test_bad_arguments_raise(tmp_path) -> None:
    with pytest.raises(ValueError):
        TextEmbedder(length=0)
    with pytest.raises(ValueError):
        TextEmbedder(storage_dtype="int8")
    with pytest.raises(FileNotFoundError):
        TextEmbedder(tmp_path / "no-such-model")
    with pytest.raises(TypeError):
        TextEmbedder().embed(None)  # type: ignore[arg-type]


def test_pickles_for_dataloader_workers(embedder: TextEmbedder) -> None:
    import pickle

    want = embedder.embed("Lower left lung.")
    clone = pickle.loads(pickle.dumps(embedder))
    assert clone._model is None  # the text model is not shipped to workers
    np.testing.assert_array_equal(clone.embed("Lower left lung."), want)  # served from the copied cache
    assert clone.model_calls == embedder.model_calls


def test_warm_up_loads_the_model_and_leaves_the_caches_empty(tmp_path) -> None:
    """A worker's warm-up: the text model is loaded and has run once; nothing is cached for the warm-up sentence."""
    e = TextEmbedder(length=10, cache_dir=tmp_path)
    e.warm_up("Warm-up sentence.")
    assert e._model is not None and e.model_calls == 1
    assert not list(tmp_path.rglob("*.npy")) and not e._memory
    e.embed("Left lung.")  # the first real miss runs on the loaded model
    assert e.model_calls == 2


def test_count_words_is_what_the_text_path_counts(shared_data, embedder: TextEmbedder) -> None:
    """count_words(s) slots hold every word of s: it agrees with the embedder's word pooling on every real report."""
    from ml.data import read_text_table
    from ml.text import count_words, text_length_for

    sentences = set()
    for table in shared_data.glob("*/*_Folder/*_text.*"):
        sentences |= set(read_text_table(table).values())
    sentences |= {"Esophageal tumour in the upper thoracic esophagus, about 120 mm long.", "x_y (3.5%) -- ok?"}
    longest = text_length_for(sentences)
    assert longest == 20  # "Bilateral ..., upper middle lower left lung and upper middle lower right lung."
    wide = TextEmbedder(length=longest + 4)
    for s in sentences:
        assert _real_words(wide.embed(s)) == count_words(s), s
    assert text_length_for([], minimum=10) == 10


def test_openvino_engine_gives_the_torch_features_and_keeps_its_ir(tmp_path, embedder: TextEmbedder) -> None:
    """The serving engine: the same word features as transformers (within OPENVINO_TOLERANCE) for sentences of
    several lengths in one batch, the IR converted once and reused by a later process's embedder (here: a fresh
    backend on the same folder), and no second conversion."""
    import ml.text as text

    sentences = [
        "Carcinomatosis here.",
        "Bilateral pulmonary infection, two infected areas, upper middle lower left lung and all right lung.",
        "",
        "No pulmonary infection.",
    ]
    ov_embedder = TextEmbedder(length=20, engine="openvino", engine_cache_dir=tmp_path)
    want = TextEmbedder(length=20).embed_many(sentences)
    got = ov_embedder.embed_many(sentences)
    assert ov_embedder._model.engine == "openvino"
    np.testing.assert_allclose(got, want, atol=text.OPENVINO_TOLERANCE, rtol=0)
    np.testing.assert_allclose(
        ov_embedder.sentence_features(sentences), embedder.sentence_features(sentences), atol=1e-4
    )
    irs = sorted(p.name for p in tmp_path.iterdir())
    assert len(irs) == 2 and irs[0].endswith(".bin") and irs[1].endswith(".xml")  # nothing half-written left
    mtime = (tmp_path / irs[1]).stat().st_mtime_ns
    again = text.OpenVINOTextModel(ov_embedder.model_dir, ov_embedder.model_id, tmp_path)  # as a new process would
    hidden, word_ids = again(["No pulmonary infection."])
    assert (tmp_path / irs[1]).stat().st_mtime_ns == mtime and hidden.shape[-1] == 384 and word_ids[0][0] is None


def test_embedders_of_one_process_share_the_loaded_text_model() -> None:
    """A worker holds an embedder per text length; they load the text model once."""
    a, b = TextEmbedder(length=10), TextEmbedder(length=20)
    a.warm_up()
    b.warm_up()
    assert a._model is b._model


def test_a_failed_openvino_conversion_falls_back_to_torch(tmp_path, monkeypatch) -> None:
    import ml.text as text

    def broken(*args, **kwargs):
        raise RuntimeError("no OpenVINO here")

    monkeypatch.setattr(text.OpenVINOTextModel, "__init__", broken)
    e = TextEmbedder(length=10, engine="openvino", engine_cache_dir=tmp_path / "elsewhere")
    e.warm_up()
    assert e._model.engine == "torch"
    with pytest.raises(ValueError, match="engine"):
        TextEmbedder(engine="tensorrt")
