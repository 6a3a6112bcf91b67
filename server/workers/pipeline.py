"""The work behind each task: read the studio's rows and files, run ``ml``, write through the studio's services.

Every function takes a claimed (running) :class:`Job` and returns the job's ``result`` dict. Progress goes
through the job engine's :func:`job_progress`; when it reports that the row left ``running`` (cancelled,
reaped) the function raises :class:`JobCancelled` and nothing more is written. Numeric work (inference,
uncertainty, EPI, training, metrics) lives in ``ml``; decisions (what a proposal changes, whether a candidate
is promoted) live in the studio; this module only moves data between them. ``ml`` is imported inside the
functions: the web process imports this module (task registration) and must not load torch.
"""

from __future__ import annotations

import hashlib
import logging
import math
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from PIL import Image

from server.core.errors import ServiceError
from server.jobs.models import Job
from server.jobs.presence import device_kind
from server.jobs.progress import job_progress
from server.jobs.selectors import job_still_running
from server.jobs.services import JobCancelled
from server.studio import reports, selectors, storage
from server.studio.models import Case, ModelVersion, Split
from server.studio.services.cases import case_score_set
from server.studio.services.masks import mask_create_proposal, pseudolabel_update
from server.studio.services.training import (
    training_candidate_promote,
    training_candidate_store,
    training_params_validate,
)
from server.studio.services.validation import validation_set_for_round, validation_set_summary
from server.workers.runtime import LoadedModel, local_checkpoint, runtime, text_length

logger = logging.getLogger(__name__)

INFERENCE_BATCH = 8
# Network of a project's first (scratch) training round: LViT-T plus the report's lung-zone prior, the variant whose
# masks follow the report (docs/results.md, "Text steering"). Fine-tuning keeps the parent's config, so existing
# models and checkpoints go on as they were trained.
DEFAULT_ARCH = "lvit_zones"
# Share of a zone model's labeled training items whose report is blanked: with it, a blank report (no report, or a
# free-text one) gives the image-only mask instead of nothing, with the true-report Dice and the steering unchanged
# (docs/results.md, "Report dropout").
REPORT_DROPOUT = 0.2
# Pseudo-labels are corrected by their report before they enter an EPI map: the prediction times the report's
# claimed-zone map (ml.zones.pseudo_label_gate; free-text reports pass unchanged), in the training round's EPI
# updates and in the EPI job's alike (docs/results.md, "25 % of Train labeled").
PSEUDO_ZONE_GATE = True
EPI_BETA = 0.99  # versions trained before the β rule (ml.epi.beta_for_updates) record none


# =========================================================================== helpers


def _progress(job: Job, **fields: Any) -> None:
    if not job_progress(job, **fields):
        raise JobCancelled(job.pk)


def _case_image(case: Case) -> np.ndarray:
    """The case's normalized image as uint8 (H, W) or (H, W, 3), read through the storage API."""
    im = storage.read_image(case.image.name)
    im = im.convert("L") if im.mode not in ("RGB", "L") else im
    return np.asarray(im, dtype=np.uint8)


def _active_or_fail(job: Job) -> tuple[LoadedModel, bool]:
    loaded = runtime.active(job.project_id)
    if loaded is None:
        raise ServiceError("the project has no active model yet; train one first", code="no_model")
    return loaded


def _superseded(job: Job, model: LoadedModel) -> bool:
    """A follow-up job queued for a version that is no longer active has nothing to do."""
    wanted = job.params.get("model_version")
    return wanted is not None and int(wanted) != model.model_version_id


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class _Timings:
    """Where a batch job's time goes: reading images, the model (text features + forward), writing results."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.seconds = {"read": 0.0, "predict": 0.0, "write": 0.0}

    def add(self, key: str, since: float) -> float:
        now = time.perf_counter()
        self.seconds[key] += now - since
        return now

    def as_dict(self) -> dict[str, float]:
        out = {f"{k}_s": round(v, 4) for k, v in self.seconds.items()}
        out["total_s"] = round(time.perf_counter() - self.started, 4)
        if "torch" in sys.modules:  # never imported for this: a torch-free worker (ml.lite) stays torch-free
            out["torch_threads"] = sys.modules["torch"].get_num_threads()
        return out


def _read_cases(cases: Sequence[Case], timings: _Timings | None = None) -> tuple[list[np.ndarray], list[str]]:
    """The cases' images and report sentences, in order."""
    t0 = time.perf_counter()
    images = [_case_image(case) for case in cases]
    sentences = [selectors.case_sentence(case=case) for case in cases]
    if timings is not None:
        timings.add("read", t0)
    return images, sentences


def _predict(
    model: LoadedModel, images: list[np.ndarray], sentences: list[str], timings: _Timings | None = None
) -> list[Any]:
    t0 = time.perf_counter()
    preds = model.predict(images, sentences, batch_size=INFERENCE_BATCH)
    if timings is not None:
        timings.add("predict", t0)
    return preds


def _predict_cases(
    model: LoadedModel, cases: Sequence[Case], timings: _Timings | None = None
) -> list[tuple[Case, str, Any]]:
    images, sentences = _read_cases(cases, timings)
    return list(zip(cases, sentences, _predict(model, images, sentences, timings), strict=True))


def _store_proposal(case: Case, model_version: ModelVersion, sentence: str, pred: Any) -> Any:
    """A prediction as the case's new proposal (mask, 8-bit probability map, uncertainty as its score)."""
    from ml.epi import quantize

    return mask_create_proposal(
        case=case,
        model_version=model_version,
        array=pred.mask,
        report_text=sentence,
        probabilities=quantize(pred.prob, rounding="nearest"),
        uncertainty=float(pred.uncertainty),
    )


# =========================================================================== proposals


def propose_case(job: Job) -> dict[str, Any]:
    """One case: predict with the active model and the current report, store a proposal mask version."""
    model, loaded_now = _active_or_fail(job)
    case = Case.objects.select_related("report").get(pk=job.case_id)
    _progress(job, phase="predict", done=0, total=1, model_version=model.model_version_id)
    [(case, sentence, pred)] = _predict_cases(model, [case])
    mv = ModelVersion.objects.get(pk=model.model_version_id)
    mask = _store_proposal(case, mv, sentence, pred)
    _progress(job, phase="done", done=1, total=1)
    return {
        "mask": mask.pk,
        "version": mask.version,
        "model_version": mv.pk,
        "report_text": sentence,
        "uncertainty": pred.uncertainty,
        "model_loaded": loaded_now,
    }


def propose_batch(job: Job) -> dict[str, Any]:
    """Every case without an accepted mask: a new proposal (and its uncertainty as the worklist score)."""
    model, loaded_now = _active_or_fail(job)
    if _superseded(job, model):
        return {"skipped": "superseded", "model_version": model.model_version_id}
    splits = tuple(job.params.get("splits") or (Split.TRAIN, Split.VAL, Split.TEST))
    cases = selectors.unlabeled_cases(project=job.project, splits=splits)
    mv = ModelVersion.objects.get(pk=model.model_version_id)
    _progress(job, phase="predict", done=0, total=len(cases), model_version=mv.pk)
    started, done, masks, timings = time.perf_counter(), 0, [], _Timings()
    for chunk in _batches(cases, INFERENCE_BATCH):
        predictions = _predict_cases(model, chunk, timings)
        t0 = time.perf_counter()
        for case, sentence, pred in predictions:
            masks.append(_store_proposal(case, mv, sentence, pred).pk)
        timings.add("write", t0)
        done += len(chunk)
        _progress(job, done=done, eta_s=_eta(started, done, len(cases)))
    return {
        "cases": done,
        "masks": masks,
        "model_version": mv.pk,
        "model_loaded": loaded_now,
        "timings": timings.as_dict(),
    }


def score_worklist(job: Job) -> dict[str, Any]:
    """Recompute the active-learning score (model uncertainty) of every unlabeled case, without new masks."""
    model, _ = _active_or_fail(job)
    if _superseded(job, model):
        return {"skipped": "superseded", "model_version": model.model_version_id}
    cases = selectors.unlabeled_cases(project=job.project, splits=(Split.TRAIN,))
    _progress(job, phase="score", done=0, total=len(cases))
    started, done = time.perf_counter(), 0
    for chunk in _batches(cases, INFERENCE_BATCH):
        for case, _, pred in _predict_cases(model, chunk):
            case_score_set(case_id=case.pk, al_score=pred.uncertainty)
        done += len(chunk)
        _progress(job, done=done, eta_s=_eta(started, done, len(cases)))
    return {"cases": done, "model_version": model.model_version_id}


# =========================================================================== EPI


def _epi_seed(case_id: int, iteration: int) -> int:
    digest = hashlib.sha256(f"epi\x00{case_id}\x00{iteration}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _version_beta(model_version_id: int) -> float:
    """The EPI β of a version: the one its training round used (the β rule); the paper's 0.99 for versions that
    predate the rule."""
    config = ModelVersion.objects.values_list("config", flat=True).get(pk=model_version_id) or {}
    return float(config.get("epi_beta", EPI_BETA))


def update_pseudo_labels(job: Job) -> dict[str, Any]:
    """One EPI generation for every unlabeled non-test case: ``P_t = β·P_{t-1} + (1-β)·P̂_t`` (8-bit maps), with the
    β the active version's training round chose (``params.beta`` overrides)."""
    from ml.epi import epi_update

    model, _ = _active_or_fail(job)
    if _superseded(job, model):
        return {"skipped": "superseded", "model_version": model.model_version_id}
    beta = float(job.params.get("beta", _version_beta(model.model_version_id)))
    cases = selectors.unlabeled_cases(project=job.project, splits=(Split.TRAIN, Split.VAL))
    mv = ModelVersion.objects.get(pk=model.model_version_id)
    existing = {p.case_id: p for p in selectors.pseudo_labels_of(cases=cases)}
    _progress(job, phase="epi", done=0, total=len(cases), beta=beta)
    started, done, first, timings = time.perf_counter(), 0, 0, _Timings()
    for chunk in _batches(cases, INFERENCE_BATCH):
        images, sentences = _read_cases(chunk, timings)  # the images also render the report's gate
        predictions = _predict(model, images, sentences, timings)
        t0 = time.perf_counter()
        for case, image, sentence, pred in zip(chunk, images, sentences, predictions, strict=True):
            label = existing.get(case.pk)
            prev = storage.read_uint8_png(label.soft_map.name) if label is not None else None
            if prev is not None and prev.shape != pred.prob.shape:
                prev = None  # the image was replaced; start over
            first += prev is None
            iteration = label.iterations if label is not None else 0
            prob = _report_gated(pred.prob, sentence, image) if PSEUDO_ZONE_GATE else pred.prob
            soft = epi_update(prev, prob, beta, seed=_epi_seed(case.pk, iteration))
            pseudolabel_update(case=case, soft_map=soft, model_version=mv)
        timings.add("write", t0)
        done += len(chunk)
        _progress(job, done=done, eta_s=_eta(started, done, len(cases)))
    return {"cases": done, "initialised": first, "beta": beta, "model_version": mv.pk, "timings": timings.as_dict()}


def _report_gated(prob: np.ndarray, sentence: str, image: np.ndarray) -> np.ndarray:
    """A prediction corrected by its report (``ml.zones.pseudo_label_gate`` of the zone prior rendered on the image
    the prediction was made from, at its size); unchanged for a report that does not parse."""
    from ml.zones import parse_cells, pseudo_label_gate, zone_prior

    if parse_cells(sentence) is None:
        return prob
    if image.shape[:2] != prob.shape:
        raise ValueError(f"prediction {prob.shape} and image {image.shape[:2]} differ in size")
    return prob * pseudo_label_gate(zone_prior(sentence, image))


def _eta(started: float, done: int, total: int) -> float | None:
    if done <= 0:
        return None
    return (time.perf_counter() - started) / done * max(0, total - done)


# =========================================================================== training


class _Workspace:
    """Local copies of a project's images and masks for ``ml`` (which reads files), in a temp folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "img").mkdir(parents=True, exist_ok=True)
        (root / "mask").mkdir(parents=True, exist_ok=True)

    def image(self, case: Case) -> Path:
        path = self.root / "img" / f"{case.pk}.png"
        if not path.is_file():
            Image.fromarray(_case_image(case)).save(path)
        return path

    def mask(self, case: Case, name: str) -> Path:
        path = self.root / "mask" / f"{case.pk}.png"
        if not path.is_file():
            path.write_bytes(storage.read_file(name))
        return path


def _samples(ws: _Workspace, pairs: Sequence[tuple[Case, Any]] | None = None, cases: Sequence[Case] = ()) -> list:
    from ml.data import Sample

    out = []
    for case, mask in pairs or []:
        out.append(
            Sample(
                name=f"case-{case.pk}",
                image_path=ws.image(case),
                sentence=selectors.case_sentence(case=case),
                mask_path=ws.mask(case, mask.png.name),
            )
        )
    for case in cases:
        out.append(
            Sample(
                name=f"case-{case.pk}",
                image_path=ws.image(case),
                sentence=selectors.case_sentence(case=case),
                labeled=False,
            )
        )
    return out


class _TrainingProgress:
    """``Trainer.on_progress`` -> :func:`job_progress` (step events throttled to one write per second)."""

    def __init__(self, job: Job, min_interval_s: float = 1.0) -> None:
        self.job = job
        self.min_interval_s = min_interval_s
        self.started = time.perf_counter()
        self.last_write = 0.0
        self.stopped = False
        self.epochs = 1
        self.start_epoch = 0
        self.steps_per_epoch = 1

    def should_stop(self) -> bool:
        if not self.stopped and time.perf_counter() - self.last_write > self.min_interval_s:
            self.stopped = not job_still_running(job_id=self.job.pk)
            self.last_write = time.perf_counter()
        return self.stopped

    def _eta(self, epoch: int, step: int) -> float | None:
        done = (epoch - self.start_epoch) * self.steps_per_epoch + step + 1
        total = (self.epochs - self.start_epoch) * self.steps_per_epoch
        return _eta(self.started, done, total)

    def _write(self, **fields: Any) -> None:
        if not job_progress(self.job, **fields):
            self.stopped = True
        self.last_write = time.perf_counter()

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "start":
            self.epochs, self.start_epoch = event["epochs"], event["start_epoch"]
            self.steps_per_epoch = max(1, event["steps_per_epoch"])
            self._write(
                phase="train",
                epoch=0,
                epochs=self.epochs,
                step=0,
                steps=self.steps_per_epoch,
                n_labeled=event["n_labeled"],
                n_unlabeled=event["n_unlabeled"],
                n_val=event["n_val"],
                device=event["device"],
            )
        elif kind == "step":
            self.steps_per_epoch = max(1, event["steps"])
            if time.perf_counter() - self.last_write >= self.min_interval_s:
                self._write(
                    phase="train",
                    epoch=event["epoch"] + 1,
                    step=event["step"] + 1,
                    steps=event["steps"],
                    losses=event["losses"],
                    eta_s=self._eta(event["epoch"], event["step"]),
                )
        elif kind == "pseudo_labels":
            self._write(phase="pseudo_labels", pseudo={k: v for k, v in event.items() if k != "type"})
        elif kind == "epoch":
            val = event["val"]
            self._write(
                phase="train",
                epoch=event["epoch"] + 1,
                step=self.steps_per_epoch,
                losses=event["losses"],
                val_dice=_finite(val.get("dice")),
                val_iou=_finite(val.get("iou")),
                best_dice=_finite(event["best_dice"]),
                eta_s=self._eta(event["epoch"], self.steps_per_epoch - 1),
                history=[
                    {
                        "epoch": event["epoch"] + 1,
                        "losses": event["losses"],
                        "val_dice": _finite(val.get("dice")),
                        "val_iou": _finite(val.get("iou")),
                        "seconds": round(event["seconds"], 3),
                    }
                ],
            )


def _finite(value: Any) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None


def _evaluate_checkpoint(checkpoint: Path, samples: list, embedder: Any) -> dict[str, Any]:
    """Dice/IoU of a checkpoint on labeled samples, at the checkpoint's own input size; with what an empty mask
    scores on the same samples (``empty_baseline_dice``), how many have a lesion (``n_lesion``) and on how many of
    those the prediction is empty (``n_empty_on_lesion``)."""
    import torch

    from ml.data import LViTDataset
    from ml.metrics import MetricAccumulator
    from ml.predict import load_model
    from ml.train import predict_batches

    device = torch.device(settings.ML_DEVICE)
    model, cfg, _ = load_model(checkpoint, map_location=device)
    text = embedder if cfg.uses_text else None
    dataset = LViTDataset(
        samples, image_size=cfg.img_size, in_channels=cfg.in_channels, text=text, zones=cfg.uses_zones
    )
    acc, empty = MetricAccumulator(), MetricAccumulator()
    n_lesion = n_missed = 0
    for prob, batch in predict_batches(model, cfg, dataset, device, batch_size=INFERENCE_BATCH):
        acc.update(prob, batch["mask"], list(batch["name"]))
        empty.update(torch.zeros_like(prob), batch["mask"])
        lesion = (batch["mask"] >= 0.5).flatten(1).any(1)
        found = (prob >= 0.5).flatten(1).any(1)
        n_lesion += int(lesion.sum())
        n_missed += int((lesion & ~found).sum())
    out = {k: (_finite(v) if isinstance(v, float) else v) for k, v in acc.compute().to_dict().items()}
    out.update(empty_baseline_dice=_finite(empty.compute().dice), n_lesion=n_lesion, n_empty_on_lesion=n_missed)
    return out


def train(job: Job) -> dict[str, Any]:
    """One retraining round: supervised on accepted masks (+ EPI pseudo-labels and the LV loss on unlabeled
    cases in ``semi_supervised`` mode), validated on the project's ``val`` split, stored as a candidate
    ModelVersion, handed to the studio's promotion decision.
    """
    from ml.config import LViTConfig
    from ml.predict import load_checkpoint
    from ml.train import TrainConfig, Trainer

    params = training_params_validate(job.params)
    project = job.project
    parent = selectors.model_version_active(project_id=project.pk) if params["init"] == "finetune" else None
    # The fixed validation set (frozen by the first round, a new version when reviewers added val cases): its
    # cases are never trained on; test cases are never trained on and are scored for every version.
    vset = validation_set_for_round(project=project, seed=int(params.get("seed", 0)))
    held = set(vset.case_ids) if vset is not None else set()
    train_pairs = [p for p in selectors.accepted_cases(project=project, split=Split.TRAIN) if p[0].pk not in held]
    if vset is not None:
        val_pairs, val_source = selectors.accepted_pairs(project=project, case_ids=vset.case_ids), vset.source
    else:
        val_pairs, val_source = train_pairs, "train"  # one accepted case: nothing to hold out
    test_pairs = selectors.accepted_cases(project=project, split=Split.TEST)
    if not train_pairs:
        raise ServiceError("no accepted training cases", code="not_enough_labels")
    semi = params.get("mode") == "semi_supervised"
    unlabeled = selectors.unlabeled_cases(project=project, splits=(Split.TRAIN,)) if semi else []
    _progress(job, phase="prepare", n_labeled=len(train_pairs), n_unlabeled=len(unlabeled), n_val=len(val_pairs))

    with tempfile.TemporaryDirectory(prefix=f"lvit-job-{job.pk}-") as tmp:
        tmp_path = Path(tmp)
        ws = _Workspace(tmp_path / "data")
        train_samples = _samples(ws, train_pairs)
        val_samples = _samples(ws, val_pairs)
        test_samples = _samples(ws, test_pairs)
        unlabeled_samples = _samples(ws, cases=unlabeled)

        if parent is not None:  # fine-tuning keeps the parent's architecture, text length included
            parent_ckpt = load_checkpoint(local_checkpoint(parent), map_location="cpu")
            model_cfg = LViTConfig.from_dict(parent_ckpt["config"])
        else:
            parent_ckpt = None
            text_len = _app_text_length(project, [*train_samples, *val_samples, *unlabeled_samples])
            dim = runtime.embedder(text_len).dim
            model_cfg = LViTConfig(arch=DEFAULT_ARCH, img_size=int(params["img_size"]), text_dim=dim, text_len=text_len)
        embedder = runtime.embedder(model_cfg.text_len)
        epochs = int(params["epochs"])
        cfg = TrainConfig(
            out_dir=str(tmp_path / "run"),
            epochs=epochs,
            batch_size=int(params["batch_size"]),
            lr=float(params.get("lr") or (3e-4 if parent is not None else 1e-3)),
            patience=epochs,  # a round runs its budget; the best epoch is kept
            seed=int(params.get("seed", 0)),
            device=settings.ML_DEVICE,
            prototype_epochs=0 if parent is not None else epochs // 2,  # the active model is the prototype
            augment_mode="consistent",  # a mirror swaps left/right in the report too (ml.laterality)
            # a zone model also learns the no-report case (else a blank prior gives an empty mask; docs/results.md)
            report_dropout=REPORT_DROPOUT if model_cfg.uses_zones else 0.0,
            epi_beta=None,  # the β rule for this round's updates (ml.epi.beta_for_updates)
            pseudo_zone_gate=PSEUDO_ZONE_GATE,
            text_model=settings.LVIT_TEXT_MODEL or None,
            text_cache_dir=settings.LVIT_TEXT_CACHE_DIR,
            save_last=False,
        )
        tracker = _TrainingProgress(job)
        epi_store = _stored_epi(unlabeled, model_cfg.img_size, cfg) if unlabeled else None
        trainer = Trainer(
            cfg,
            model_cfg,
            train_samples,
            val_samples,
            unlabeled_samples,
            on_progress=tracker,
            should_stop=tracker.should_stop,
            text_embedder=embedder,
            epi_store=epi_store,
        )
        if parent_ckpt is not None:
            trainer.model.load_state_dict(parent_ckpt["model"])  # fine-tune from the active version
            del parent_ckpt
        fit_started = time.perf_counter()
        fit = trainer.fit()
        fit_seconds = time.perf_counter() - fit_started
        if fit.stopped == "cancelled" or tracker.stopped:
            raise JobCancelled(job.pk)
        if fit.best_checkpoint is None:
            raise ServiceError("training produced no checkpoint (validation never ran)", code="training_failed")

        # Compare with the active model on the same validation cases, then store the candidate.
        _progress(job, phase="evaluate")
        best = Path(fit.best_checkpoint)
        metrics = _evaluate_checkpoint(best, val_samples, embedder)
        test = _evaluate_checkpoint(best, test_samples, embedder) if test_samples else None
        active = selectors.model_version_active(project_id=project.pk)
        baseline = _evaluate_checkpoint(local_checkpoint(active), val_samples, embedder) if active else None
        _progress(job, phase="store")
        last = fit.history[-1] if fit.history else None
        vsummary = validation_set_summary(vset)
        metrics = {
            "val": metrics,
            "val_dice": metrics["dice"],
            "val_iou": metrics["iou"],
            "val_source": val_source,
            "validation_set": vsummary,
            "n_val": len(val_samples),
            "n_val_lesion": metrics["n_lesion"],
            "n_val_empty_on_lesion": metrics["n_empty_on_lesion"],
            "empty_baseline_dice": metrics["empty_baseline_dice"],
            "test": test,
            "test_dice": test["dice"] if test else None,
            "n_test": len(test_samples),
            "n_labeled": len(train_samples),
            "n_unlabeled": len(unlabeled_samples),
            "best_epoch": fit.best_epoch + 1,
            "val_dice_best": next(
                (_finite(h["val"]["dice"]) for h in fit.history if h["epoch"] == fit.best_epoch), None
            ),
            "val_dice_last": _finite(last["val"]["dice"]) if last else None,
            "last_epoch": last["epoch"] + 1 if last else None,
            "epochs_run": fit.epochs_run,
            "mode": params.get("mode"),
            "init": "finetune" if parent is not None else "scratch",
            "baseline": {"model_version": active.pk, **baseline} if active and baseline else None,
            "history": [
                {"epoch": h["epoch"] + 1, "val_dice": _finite(h["val"]["dice"]), "losses": h["losses"]}
                for h in fit.history
            ],
        }
        config = {
            "model": model_cfg.to_dict(),
            "train": {**cfg.to_dict(), "out_dir": None},
            "params": params,
            "settings": {
                "img_size": model_cfg.img_size,
                "mode": params.get("mode"),
                "init": "finetune" if parent is not None else "scratch",
                "epochs": epochs,
                "epochs_run": fit.epochs_run,
                "text_len": model_cfg.text_len,
                "seed": cfg.seed,
                "validation_set_version": vset.version if vset is not None else None,
            },
            "epi_beta": trainer.epi.beta,  # the β this round used; the version's EPI updates keep it
        }
        mv = training_candidate_store(
            job=job, checkpoint=best, config=config, metrics=metrics, parent=parent, validation_set=vset
        )

    decision = training_candidate_promote(
        candidate=mv,
        promotion=params.get("promotion"),
        baseline=active,
        baseline_dice=baseline["dice"] if baseline else None,
    )
    return {
        "model_version": mv.pk,
        "number": mv.number,
        "metrics": {
            k: metrics[k]
            for k in ("val_dice", "val_iou", "val_source", "validation_set", "n_val", "best_epoch", "test_dice")
        },
        "baseline_dice": baseline["dice"] if baseline else None,
        "promoted": decision["promoted"],
        "promotion": decision["promotion"],
        "reason": decision["reason"],
        "stopped": fit.stopped,
        "throughput": _throughput(
            fit_seconds,
            fit.epochs_run,
            len(train_samples) + len(val_samples) + len(unlabeled_samples),
            model_cfg.img_size,
        ),
    }


def _throughput(seconds: float, epochs: int, images: int, img_size: int) -> dict[str, Any]:
    """The round's measured speed, which later rounds' estimates use (``selectors.training_throughput``): seconds
    of ``Trainer.fit`` per image and epoch, over every case it touched each epoch (train, val, unlabeled)."""
    per = seconds / max(1, epochs * images)
    return {
        "seconds_per_image_epoch": round(per, 4),
        "seconds": round(seconds, 1),
        "epochs": epochs,
        "images": images,
        "img_size": img_size,
        "device": device_kind(),
    }


def _app_text_length(project: Any, samples: Sequence[Any]) -> int:
    """The text length of a new model: every word of the longest sentence the project's template can produce; for
    free text, of the longest report the round sees (at least the paper's 10)."""
    from ml.config import PAPER_TEXT_LEN
    from ml.text import text_length_for

    length = reports.template_text_length(reports.Template.of(project.template))
    if length is not None:
        return length
    return text_length_for((s.sentence for s in samples), minimum=PAPER_TEXT_LEN)


def _stored_epi(cases: Sequence[Case], size: int, cfg: Any) -> Any:
    """The project's EPI maps (kept at image size by ``epi_update`` jobs) as the trainer's starting store, so a
    round continues ``P_t = β·P_{t-1} + (1-β)·P̂_t`` across rounds instead of restarting from one prediction."""
    from ml.epi import EPIStore

    store = EPIStore(seed=cfg.seed)  # the Trainer sets the round's β (TrainConfig.resolved_epi_beta)
    for label in selectors.pseudo_labels_of(cases=list(cases), min_iterations=1):
        q = Image.fromarray(storage.read_uint8_png(label.soft_map.name)).resize((size, size), Image.Resampling.BILINEAR)
        store.set(f"case-{label.case_id}", np.asarray(q, dtype=np.uint8), label.iterations)
    return store


# =========================================================================== evaluation


def evaluate(job: Job) -> dict[str, Any]:
    """Dice/IoU of a version (``params.model_version``, default the active one) on the project's fixed validation
    set (its newest version; the ``val`` split before the first round), or on ``params.split`` when given."""
    mv_id = job.params.get("model_version")
    mv = (
        ModelVersion.objects.get(pk=mv_id, project=job.project)
        if mv_id
        else selectors.model_version_active(project_id=job.project_id)
    )
    if mv is None:
        raise ServiceError("the project has no active model to evaluate", code="no_model")
    split = job.params.get("split")
    vset = selectors.validation_set_current(project_id=job.project_id) if not split else None
    if vset is not None:
        pairs = selectors.accepted_pairs(project=job.project, case_ids=vset.case_ids)
    else:
        split = split or Split.VAL
        pairs = selectors.accepted_cases(project=job.project, split=split)
    if not pairs:
        raise ServiceError("no accepted cases in the validation split", code="no_validation_cases")
    _progress(job, phase="evaluate", total=len(pairs))
    with tempfile.TemporaryDirectory(prefix=f"lvit-job-{job.pk}-") as tmp:
        ws = _Workspace(Path(tmp))
        metrics = _evaluate_checkpoint(local_checkpoint(mv), _samples(ws, pairs), runtime.embedder(text_length(mv)))
    return {
        "model_version": mv.pk,
        "split": split,
        "validation_set": validation_set_summary(vset),
        "metrics": metrics,
    }
