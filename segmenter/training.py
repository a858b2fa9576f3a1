"""``maskwatch train``: fine-tune torchvision's Mask R-CNN on an operator's own labelled data.

The data set is loaded and validated completely first (:mod:`segmenter.datasets`),
so labelling mistakes stop the run before any GPU time is spent. The model starts
from torchvision's COCO weights when they can be had (the box and mask predictors
are then replaced for the data set's classes), from a local checkpoint, or from
scratch with a warning. Every epoch ends with a checkpoint (``last.pth``, enough to
``--resume``) and mask AP on the held-out split; the final ``model.pth`` is what
``maskwatch run --weights`` loads, class names included.

Import this module inside the command that uses it: it imports torch.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

import torch
from pydantic import BaseModel, Field, field_validator, model_validator
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torchvision.models import detection
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor
from torchvision.models.detection.transform import resize_boxes

from common import InputError
from segmenter.coco_eval import Prediction, Truth, mask_ap
from segmenter.datasets import (
    DatasetIndex,
    InstanceDataset,
    Sample,
    build_augmentation,
    collate,
    load_dataset,
    load_image,
    parse_classes,
    split_samples,
)
from segmenter.maskrcnn import BACKGROUND, names_by_label, paste_crops, read_checkpoint
from segmenter.roi_inference import detect

logger = logging.getLogger(__name__)

LAST = "last.pth"
MODEL = "model.pth"
METRICS = "metrics.jsonl"
BUILDERS = {"v1": detection.maskrcnn_resnet50_fpn, "v2": detection.maskrcnn_resnet50_fpn_v2}
COCO_WEIGHTS = detection.MaskRCNN_ResNet50_FPN_V2_Weights.DEFAULT
EVAL_SCORE_THRESHOLD = 0.05  # COCO evaluation practice: low-confidence detections still add to the PR curve


class TrainConfig(BaseModel, extra="forbid", validate_assignment=True):
    """Settings of ``maskwatch train``; the defaults fine-tune from COCO weights on one GPU."""

    weights: str = Field(
        "DEFAULT",
        min_length=1,
        description="DEFAULT: torchvision's COCO weights (downloaded once; from scratch with a warning when they "
        "cannot be had); none: from scratch; a path: a .pth checkpoint (e.g. a model.pth, or torchvision's COCO "
        "file copied to an offline machine).",
    )
    epochs: int = Field(12, ge=1, description="Passes over the training split (the total, also when resuming).")
    batch_size: int = Field(2, ge=1, description="Images per iteration.")
    optimizer: Literal["sgd", "adamw"] = Field("sgd", description="SGD with momentum, or AdamW.")
    lr: float | None = Field(
        None, gt=0, description="Peak learning rate; unset: 0.0025 per image in the batch for SGD, 1e-4 for AdamW."
    )
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum.")
    weight_decay: float = Field(1e-4, ge=0)
    schedule: Literal["cosine", "step"] = Field(
        "cosine", description="After warm-up: cosine decay to 0, or x0.1 at 70% and again at 90% of the iterations."
    )
    warmup_iters: int = Field(200, ge=0, description="Iterations of linear warm-up from lr/1000.")
    clip_grad: float = Field(
        35.0, ge=0, description="Clip the gradient norm to this (0: no clipping); guards against a bad batch."
    )
    val_fraction: float = Field(0.2, ge=0, lt=1, description="Share of images (sequences: frame blocks) held out.")
    seed: int = Field(0, description="Fixes the split, the initial weights and the data order.")
    workers: int = Field(2, ge=0, description="DataLoader worker processes (0: load in the training process).")
    min_size: int = Field(800, ge=32, description="Images are resized so the short side is this many pixels...")
    max_size: int = Field(1333, ge=32, description="...unless the long side would then exceed this.")
    flip: bool = Field(True, description="Random horizontal flips.")
    scale_jitter: float = Field(0.2, ge=0, lt=1, description="Random zoom by up to this fraction in or out (0: off).")
    color_jitter: float = Field(0.2, ge=0, lt=1, description="Random brightness, contrast, saturation (0: off).")
    rotation: float = Field(0.0, ge=0, le=30, description="Random rotation up to this many degrees (0: off).")
    rois_per_image: int = Field(
        512, ge=16, description="Proposals sampled per image for the box head's loss (fewer: faster, noisier)."
    )
    val_proposals: int = Field(
        1000, ge=10, description="RPN proposals per image in the evaluation: 1000 as in maskwatch run; fewer is "
        "faster (on a CPU the box head over them dominates) but can only lower AP.",
    )
    amp: bool | None = Field(None, description="fp16 mixed precision; unset: on when training on CUDA.")
    device: str = Field("auto", description="auto (CUDA when available, else CPU), cpu, cuda or cuda:N.")
    resume: Path | None = Field(
        None, description="Continue from this last.pth (or a training output folder holding one)."
    )
    classes: dict[int, str] | None = Field(
        None, description="MOTS class ids to names, e.g. 1=car,2=pedestrian (default: those two, as they occur)."
    )
    log_every: int = Field(20, ge=1, description="Write training losses to metrics.jsonl every this many iterations.")

    @field_validator("classes", mode="before")
    @classmethod
    def _parse_classes(cls, value: Any) -> Any:
        return parse_classes(value) if isinstance(value, str) else value

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, not {value!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.max_size < self.min_size:
            raise ValueError(f"max_size ({self.max_size}) must not be smaller than min_size ({self.min_size})")
        return self

    @property
    def base_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return 0.0025 * self.batch_size if self.optimizer == "sgd" else 1e-4


@dataclass
class TrainResult:
    """What a training run produced; ``pretrained`` is False when it started from random weights."""

    epochs: int
    iterations: int
    metrics: dict | None  # mask AP of the last evaluation (None without a validation split)
    pretrained: bool
    class_names: list[str]
    train_images: int
    val_images: int
    model_path: Path
    last_path: Path
    metrics_path: Path


def train_command(data: Path, out: Path, config: TrainConfig, console: Console) -> dict:
    """What ``maskwatch train --data DATA --out OUT`` does: train with a progress bar, return a JSON-able summary.

    ``data``: a COCO .json, a folder with annotations.json, or a MOTS sequence
    folder; ``out``: where last.pth, model.pth and metrics.jsonl go; ``config``:
    every option (the CLI's ``--resume`` is ``config.resume = out``); ``console``:
    where the progress bar and the per-epoch AP lines are printed. Bad data or
    options raise :class:`InputError`. The summary has epochs, iterations, AP,
    AP50, AP75, per_class, pretrained, class_names, images and output paths.
    """
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f}  lr {task.fields[lr]:.2e}  {task.fields[speed]:.2f} it/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )
    with progress:
        result = train(data, out, config, progress)
    metrics = result.metrics or {}
    return {
        "epochs": result.epochs,
        "iterations": result.iterations,
        "AP": metrics.get("AP"),
        "AP50": metrics.get("AP50"),
        "AP75": metrics.get("AP75"),
        "per_class": metrics.get("per_class", {}),
        "pretrained": result.pretrained,
        "class_names": result.class_names,
        "train_images": result.train_images,
        "val_images": result.val_images,
        "model": str(result.model_path),
        "last": str(result.last_path),
        "metrics": str(result.metrics_path),
    }


def train(data: Path, out: Path, config: TrainConfig, progress: Progress | None = None) -> TrainResult:
    """Validate ``data``, train, evaluate and checkpoint every epoch, and write ``out/model.pth``.

    ``progress`` (optional) gets one task over all iterations, with the fields
    ``loss``, ``lr`` and ``speed`` (it/s) updated every iteration, and its console
    the per-epoch lines; without it those lines go to the log.
    """
    index = load_dataset(Path(data), config.classes)
    train_samples, val_samples = split_samples(index, config.val_fraction, config.seed)
    names = index.class_names
    out = Path(out)
    resume = _resume_path(config.resume)
    if resume is None and (out / LAST).exists():
        raise InputError(f"{out} already holds a training run ({LAST}): resume it, or choose another output folder")
    device = _device(config.device)
    use_amp = device.type == "cuda" if config.amp is None else config.amp
    if use_amp and device.type != "cuda":
        raise InputError("amp (fp16 mixed precision) needs CUDA; this run is on the CPU")
    checkpoint = _read_last(resume, names) if resume else None
    torch.manual_seed(config.seed)
    if checkpoint is not None:
        version, pretrained = checkpoint["version"], checkpoint["pretrained"]
        model = _architecture(version, len(names) + 1, config)  # weights: restored below
    else:
        model, version, pretrained = build_training_model(config, names)
    augment = build_augmentation(config.flip, config.scale_jitter, config.color_jitter, config.rotation)
    loop = _Loop(model, InstanceDataset(train_samples, names, augment), config, device, use_amp, pretrained)
    start_epoch, metrics = 0, None
    if checkpoint is not None:
        loop.restore(checkpoint)
        start_epoch, metrics = checkpoint["epoch"], checkpoint.get("metrics")

    out.mkdir(parents=True, exist_ok=True)
    paths = (out / MODEL, out / LAST, out / METRICS)
    if checkpoint is None:
        paths[2].write_text("")  # a fresh run starts a fresh log; a resumed one appends
    say = progress.console.print if progress is not None else logger.info
    say(_dataset_line(index, train_samples, val_samples, pretrained, checkpoint is not None, start_epoch))
    if progress is not None:
        loop.show(progress)
    with paths[2].open("a", encoding="utf-8") as log:
        for epoch in range(start_epoch + 1, config.epochs + 1):
            losses = loop.epoch(epoch, log)
            metrics = evaluate(model, val_samples, names, device, config.batch_size, use_amp) if val_samples else None
            epoch_loss = sum(losses) / len(losses) if losses else None
            record = {"type": "epoch", "epoch": epoch, "iteration": loop.iteration, "train_loss": epoch_loss,
                      "lr": loop.lr, **_ap_fields(metrics)}
            log.write(json.dumps(record) + "\n")
            log.flush()
            say(_epoch_line(epoch, config.epochs, epoch_loss, metrics))
            _save_atomic(loop.state() | {"epoch": epoch, "class_names": names, "version": version,
                                         "pretrained": pretrained, "metrics": metrics}, paths[1])
    _save_atomic({"model": _cpu_state(model), "class_names": names, "version": version}, paths[0])
    return TrainResult(max(start_epoch, config.epochs), loop.iteration, metrics, pretrained, names,
                       len(train_samples), len(val_samples), *paths)


class _Loop:
    """The optimisation state of a run (model, optimizer, LR schedule, loss scaler) and one epoch over the data."""

    def __init__(
        self, model: MaskRCNN, data: InstanceDataset, config: TrainConfig, device: torch.device, amp: bool,
        pretrained: bool,
    ) -> None:
        _set_trainable(model, pretrained)
        self.model, self.data, self.config, self.device, self.amp = model.to(device), data, config, device, amp
        self.pretrained = pretrained
        self.params = [p for p in model.parameters() if p.requires_grad]
        lr, decay = config.base_lr, config.weight_decay
        self.optimizer = (
            torch.optim.SGD(self.params, lr=lr, momentum=config.momentum, weight_decay=decay)
            if config.optimizer == "sgd"
            else torch.optim.AdamW(self.params, lr=lr, weight_decay=decay)
        )
        self.total = math.ceil(len(data) / config.batch_size) * config.epochs  # iterations over all epochs
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda it: lr_factor(it, self.total, config.warmup_iters, config.schedule)
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp)
        self.iteration = 0
        self.progress: Progress | None = None
        self.task = None

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def restore(self, checkpoint: dict) -> None:
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        if checkpoint["scaler"]:  # empty when the run so far had no mixed precision (e.g. it was on the CPU)
            self.scaler.load_state_dict(checkpoint["scaler"])
        self.iteration = checkpoint["iteration"]

    def state(self) -> dict:
        return {"model": _cpu_state(self.model), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "iteration": self.iteration}

    def show(self, progress: Progress) -> None:
        """Report every iteration to ``progress`` (a task with the fields loss, lr and speed)."""
        self.progress = progress
        self.task = progress.add_task("train", total=self.total, completed=min(self.iteration, self.total),
                                      loss=float("nan"), lr=self.lr, speed=0.0)

    def epoch(self, epoch: int, log: TextIO) -> list[float]:
        """Train one epoch (1-based); returns the loss of every iteration."""
        config = self.config
        loader = torch.utils.data.DataLoader(
            self.data,
            batch_size=config.batch_size,
            shuffle=True,
            num_workers=config.workers,
            collate_fn=collate,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(config.seed * 100_003 + epoch),  # order and worker seeds
        )
        self.model.train()
        if self.pretrained:
            _freeze_batch_norm(self.model)
        losses, started, shown = [], time.perf_counter(), float("nan")
        for images, targets in loader:
            lr = self.lr
            parts = self._step(images, targets)
            value = sum(parts.values())
            losses.append(value)
            shown = value if math.isnan(shown) else 0.9 * shown + 0.1 * value  # smoothed for display
            if self.iteration % config.log_every == 0:
                record = {"type": "train", "epoch": epoch, "iteration": self.iteration, "loss": value, "lr": lr}
                log.write(json.dumps(record | parts) + "\n")
                log.flush()
            if self.progress is not None:
                self.progress.update(self.task, advance=1, description=f"epoch {epoch}/{config.epochs}", loss=shown,
                                     lr=lr, speed=len(losses) / (time.perf_counter() - started))
        return losses

    def _step(self, images: list[torch.Tensor], targets: list[dict]) -> dict[str, float]:
        """One optimisation step; returns the loss terms."""
        images = [image.to(self.device, non_blocking=True) for image in images]
        targets = [{k: v.to(self.device, non_blocking=True) for k, v in t.items()} for t in targets]
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.amp):
            parts = self.model(images, targets)
        lr = self.lr
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(sum(parts.values())).backward()
        if self.config.clip_grad > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.params, self.config.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.iteration += 1
        values = {name: part.item() for name, part in parts.items()}  # read once the GPU has the whole step queued
        if not math.isfinite(sum(values.values())):
            raise InputError(f"training diverged: the loss is {sum(values.values())} at iteration {self.iteration} "
                             f"(learning rate {lr:.2e}; try a lower lr)")
        return values


def build_training_model(config: TrainConfig, class_names: list[str]) -> tuple[MaskRCNN, str, bool]:
    """``(model, version, pretrained)`` for ``class_names`` (foreground) from ``config.weights``.

    COCO weights that cannot be fetched (offline, proxy) are not fatal: training
    from scratch still works, only it needs far more data and epochs, so it is
    logged as a warning and reported back through ``pretrained``.
    """
    num_classes = len(class_names) + 1
    weights = config.weights
    if weights.upper() == "DEFAULT":
        try:
            model = BUILDERS["v2"](weights=COCO_WEIGHTS, **_model_settings(config))
        except Exception as exc:  # whatever fails while fetching or reading the file
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            logger.warning(
                "cannot load torchvision's COCO weights (%s): training Mask R-CNN from scratch, which needs much more "
                "data and epochs; on an offline machine pass weights=path/to/maskrcnn_resnet50_fpn_v2_coco.pth",
                reason,
            )
            return _architecture("v2", num_classes, config), "v2", False
        _replace_predictors(model, num_classes)
        return model, "v2", True
    if weights.lower() == "none":
        return _architecture("v2", num_classes, config), "v2", False
    state, names, version = read_checkpoint(Path(weights))
    version = version or "v2"
    own_classes = state["roi_heads.box_predictor.cls_score.weight"].shape[0]
    model = _architecture(version, own_classes, config)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(f"{weights}: its weights do not fit Mask R-CNN {version}") from exc
    if names is None or names_by_label(names, own_classes, f"class_names of {weights}") != [BACKGROUND, *class_names]:
        _replace_predictors(model, num_classes)  # other classes: keep the features, learn new predictors
    return model, version, True


def lr_factor(iteration: int, total: int, warmup: int, schedule: str) -> float:
    """Learning-rate multiplier at ``iteration`` (0-based) of ``total``: linear warm-up, then cosine or steps."""
    warm = 1.0 if iteration >= warmup else 0.001 + 0.999 * iteration / warmup
    progress = min(iteration / max(total, 1), 1.0)
    if schedule == "cosine":
        return warm * 0.5 * (1 + math.cos(math.pi * progress))
    return warm * 0.1 ** ((progress >= 0.7) + (progress >= 0.9))


@torch.inference_mode()
def evaluate(
    model: MaskRCNN, samples: list[Sample], class_names: list[str], device: torch.device, batch_size: int, amp: bool
) -> dict:
    """Mask AP of ``model`` on ``samples``; ignore regions are passed as crowds, so detections there are not errors."""
    model.eval()
    truth, predictions = [], []
    for start in range(0, len(samples), batch_size):
        batch = samples[start : start + batch_size]
        images = [load_image(s).to(device).float().div_(255) for s in batch]
        with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            resized, _ = model.transform(images)
            features = model.backbone(resized.tensors)
            proposals, _ = model.rpn(resized, features)
            outputs = detect(model.roi_heads, features, proposals, resized.image_sizes, pre_nms_top_k=1000)
        for sample, output, size in zip(batch, outputs, resized.image_sizes):
            shape = (sample.height, sample.width)
            boxes = resize_boxes(output["boxes"].float(), size, shape)
            masks = paste_crops(output["masks"], boxes, shape, 0.5)
            predictions.append([
                Prediction(class_names[label - 1], mask.to_rle(*shape), score)
                for mask, label, score in zip(masks, output["labels"].tolist(), output["scores"].float().tolist())
                if mask.area
            ])
            crowds = [
                Truth(name, region.rle(*shape), crowd=True)
                for region in sample.ignore
                for name in ([region.class_name] if region.class_name else class_names)
            ]
            truth.append([Truth(inst.class_name, inst.rle(*shape)) for inst in sample.instances] + crowds)
    return mask_ap(truth, predictions, class_names)


def _architecture(version: str, num_classes: int, config: TrainConfig) -> MaskRCNN:
    """An untrained Mask R-CNN: the same modules, hence the same state_dict keys, ``build_model`` loads."""
    return BUILDERS[version](weights=None, num_classes=num_classes, **_model_settings(config))


def _model_settings(config: TrainConfig) -> dict[str, Any]:
    return {
        "weights_backbone": None,  # ImageNet weights would need the network and are no use under COCO's
        "min_size": config.min_size,
        "max_size": config.max_size,
        "box_batch_size_per_image": config.rois_per_image,
        "box_score_thresh": EVAL_SCORE_THRESHOLD,
        "rpn_pre_nms_top_n_test": config.val_proposals,
        "rpn_post_nms_top_n_test": config.val_proposals,
    }


def _replace_predictors(model: MaskRCNN, num_classes: int) -> None:
    """New box and mask predictors for ``num_classes`` (with background); every other layer keeps its weights."""
    box = model.roi_heads.box_predictor.cls_score
    model.roi_heads.box_predictor = FastRCNNPredictor(box.in_features, num_classes)
    conv = model.roi_heads.mask_predictor.conv5_mask
    model.roi_heads.mask_predictor = MaskRCNNPredictor(conv.in_channels, conv.out_channels, num_classes)


def _set_trainable(model: MaskRCNN, pretrained: bool) -> None:
    """From trained weights the ResNet stem and layer1 stay fixed (torchvision's default: generic low-level
    features, and fewer to overfit); from scratch everything learns. Set explicitly so a resumed run
    optimises the very same parameters as the run it continues."""
    for name, param in model.backbone.body.named_parameters():
        param.requires_grad_(not pretrained or name.startswith(("layer2", "layer3", "layer4")))


def _freeze_batch_norm(model: MaskRCNN) -> None:
    """Keep trained batch-norm statistics: re-estimating them from 2-image batches would wreck them."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.eval()


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"training device is {name} but CUDA is not available here (use auto or cpu)")
    return torch.device(name)


def _resume_path(resume: Path | None) -> Path | None:
    if resume is None:
        return None
    path = resume / LAST if resume.is_dir() else resume
    if not path.is_file():
        raise InputError(f"nothing to resume: {path} not found")
    return path


def _read_last(path: Path, class_names: list[str]) -> dict:
    """A ``last.pth`` written by :func:`train`, for the same classes as the data set."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # text, a foreign pickle, a truncated file
        raise InputError(f"{path} is not a training checkpoint: torch.load cannot read it") from exc
    keys = {"model", "optimizer", "scheduler", "scaler", "epoch", "iteration", "class_names", "version", "pretrained"}
    if not isinstance(checkpoint, dict) or not keys <= checkpoint.keys():
        raise InputError(f"{path} is not a training checkpoint written by maskwatch train ({LAST})")
    if checkpoint["class_names"] != class_names:
        raise InputError(
            f"{path} was trained for classes {checkpoint['class_names']} but the data has {class_names}: "
            "resume with the same data, or start a new run (weights=that checkpoint)"
        )
    return checkpoint


def _cpu_state(model: MaskRCNN) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu() for key, value in model.state_dict().items()}


def _save_atomic(data: dict, path: Path) -> None:
    """Write then rename: a run killed while saving keeps the previous checkpoint intact."""
    partial = path.with_suffix(".partial")
    torch.save(data, partial)
    os.replace(partial, path)


def _ap_fields(metrics: dict | None) -> dict:
    if metrics is None:
        return {"AP": None, "AP50": None, "AP75": None, "per_class_AP": None}
    return {"AP": metrics["AP"], "AP50": metrics["AP50"], "AP75": metrics["AP75"], "per_class_AP": metrics["per_class"]}


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _epoch_line(epoch: int, epochs: int, loss: float | None, metrics: dict | None) -> str:
    line = f"epoch {epoch}/{epochs}: train loss {_fmt(loss)}"
    if metrics is None:
        return line
    per_class = ", ".join(f"{name} {_fmt(ap)}" for name, ap in metrics["per_class"].items())
    return f"{line}, val mask AP {_fmt(metrics['AP'])} AP50 {_fmt(metrics['AP50'])} AP75 {_fmt(metrics['AP75'])} ({per_class})"


def _dataset_line(
    index: DatasetIndex, train_samples: list, val_samples: list, pretrained: bool, resumed: bool, epoch: int
) -> str:
    counts = ", ".join(f"{name} {count}" for name, count in index.instance_counts().items())
    start = f"resuming after epoch {epoch}" if resumed else ("from pretrained weights" if pretrained else "from scratch")
    return (
        f"{index.source} ({index.layout}): {len(train_samples)} training and {len(val_samples)} validation images; "
        f"instances: {counts}; {start}"
    )
