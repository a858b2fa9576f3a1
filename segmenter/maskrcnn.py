"""Mask R-CNN (torchvision) as a maskwatch segmenter: BGR frames in, compact crop masks out.

The model returns every mask pasted into a full frame, (N, 1, H, W) float; at 1080p
that is 8 MB per object. Masks are therefore thresholded and cut to the tight box of
their pixels on the model's device, and only those crops travel to the host.

Weights come from one of three places (``MaskRCNNConfig.weights``): torchvision's
COCO weights, fetched once and cached by torchvision; a local checkpoint, either a
bare ``state_dict`` or ``{"model": state_dict, "class_names": [...], "version": "v2"}``;
or none at all (an untrained model, for tests). Every way that goes wrong is an
:class:`InputError` naming the file or the fix, never a torchvision traceback.

``maskwatch.config`` imports this module for :class:`MaskRCNNConfig`, so torch and
torchvision are imported inside the functions that use them: loading a config for
another segmenter must not cost the two seconds of importing torch.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, Field, field_validator, model_validator

from common import InputError
from segmenter.detections import Detections
from segmenter.masks import CropMask

if TYPE_CHECKING:
    import torch
    from torchvision.models.detection import MaskRCNN

def check_weights_file(path: Path) -> None:
    """A checkpoint path that is not a file: said in one line before anything is loaded (``serve`` checks it at start)."""
    if not path.is_file():
        raise InputError(
            f"Mask R-CNN weights not found: {path} (segmenter.maskrcnn.weights takes a .pth checkpoint, "
            "DEFAULT for torchvision's COCO weights, or none)"
        )


COCO_NUM_CLASSES = 91  # torchvision's COCO label space: background + 90 category ids (some "N/A")
CLS_SCORE_KEY = "roi_heads.box_predictor.cls_score.weight"  # (num_classes, 1024): gives the number of classes
BACKGROUND = "__background__"


class TilesConfig(BaseModel, extra="forbid"):
    """Tiled inference (``segmenter.maskrcnn.tiles``): see :mod:`segmenter.tiles`."""

    size: int = Field(..., ge=32, description="Tile side in pixels (each tile is then resized as a frame would be).")
    overlap: int = Field(
        ..., ge=0, description="Pixels neighbouring tiles share: at least the largest object's size, so each object "
        "is whole in some tile; 0 joins the halves of objects cut by a seam by how they abut."
    )

    @model_validator(mode="after")
    def _overlap_below_size(self) -> TilesConfig:
        if self.overlap >= self.size:
            raise ValueError(f"tiles.overlap ({self.overlap}) must be smaller than tiles.size ({self.size})")
        return self


class MaskRCNNConfig(BaseModel, extra="forbid", validate_assignment=True):
    """Settings of :class:`MaskRCNNSegmenter` (``segmenter.maskrcnn`` in the site config).

    ``validate_assignment`` because the CLI sets ``weights`` from ``--weights`` after
    the YAML was validated.
    """

    weights: str = Field(
        "DEFAULT",
        min_length=1,
        description="DEFAULT: torchvision's COCO weights (downloaded once, then cached by torchvision); "
        "none: untrained (tests); anything else: path to a local .pth checkpoint.",
    )
    version: Literal["v1", "v2"] = Field(
        "v2",
        description="v2: maskrcnn_resnet50_fpn_v2 (more accurate); v1: maskrcnn_resnet50_fpn. "
        "A checkpoint's own 'version' key takes precedence.",
    )
    device: str = Field("auto", description="auto (CUDA when available, else CPU), cpu, cuda, cuda:N or mps.")
    score_threshold: float = Field(0.5, ge=0, le=1, description="Drop detections scoring at or below this.")
    classes: list[str] | None = Field(
        None, min_length=1, description="Keep only these class names (all classes when unset)."
    )
    max_detections: int = Field(100, ge=1, description="Most detections per frame, counted before the class filter.")
    min_size: int = Field(800, ge=32, description="Frames are resized so the short side is this many pixels...")
    max_size: int = Field(1333, ge=32, description="...unless the long side would then exceed this.")
    batch_size: int = Field(
        4, ge=1, description="Frames per forward pass; under serve's shared segmenter, frames of different cameras. "
        "Fewer than the cameras lets one batch compute while the other cameras' answers and frames travel.",
    )
    compile: bool = Field(False, description="torch.compile the backbone (CUDA; the first batches wait while it compiles).")
    precision: Literal["auto", "fp16", "bf16", "fp32"] = Field(
        "auto",
        description="Autocast of the forward pass. auto: fp16 on CUDA (fastest on tensor cores), fp32 elsewhere; "
        "bf16: fp32's range, for fine-tuned weights whose activations overflow fp16, and fast on CPUs with bf16 "
        "units; fp32: no autocast, torchvision's own numbers.",
    )
    pre_nms_top_k: int = Field(
        1000, ge=1, description="Best-scoring (box, class) candidates per image kept before NMS (bounds NMS cost)."
    )
    mask_threshold: float = Field(0.5, gt=0, lt=1, description="Mask probability above which a pixel is in the mask.")
    embeddings: bool = Field(
        False,
        description="Also return each detection's appearance (Detections.embeddings): the RoI features its mask "
        "head was given, averaged under its predicted mask and L2-normalised; nothing is computed twice.",
    )
    num_classes: int | None = Field(
        None, ge=2, description="Only with weights: none; classes including background (default 91, COCO)."
    )
    class_names: list[str] | None = Field(
        None,
        min_length=1,
        description="Override the class names: one per label, with or without the background at index 0.",
    )
    tiles: TilesConfig | None = Field(
        None,
        description="Small dense objects: cut each frame into overlapping size x size tiles, run the tiles through "
        "the model in batches of batch_size, and merge their masks into one per object (segmenter.tiles). None: off.",
    )

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", value):
            raise ValueError(f"device must be auto, cpu, cuda, cuda:N or mps, not {value!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> MaskRCNNConfig:
        if self.max_size < self.min_size:
            raise ValueError(f"max_size ({self.max_size}) must not be smaller than min_size ({self.min_size})")
        if self.num_classes is not None and self.weights.lower() != "none":
            raise ValueError(
                "num_classes applies only to weights: none (COCO weights and checkpoints define their own)"
            )
        return self


class MaskRCNNSegmenter:
    """The :class:`~segmenter.detections.Segmenter` backed by torchvision's Mask R-CNN.

    ``class_names[label]`` is the name of model label ``label`` (index 0: background);
    ``Detections.class_ids`` are those labels, so with COCO weights they are COCO
    category ids.
    """

    def __init__(self, config: MaskRCNNConfig | None = None) -> None:
        import torch

        self.config = config or MaskRCNNConfig()
        self.device = resolve_device(self.config.device)
        model, self.class_names = build_model(self.config)
        self.model = model.to(self.device).eval()
        if self.device.type == "cuda":  # NHWC convolutions: the tensor cores' native layout under fp16
            self.model.backbone.to(memory_format=torch.channels_last)
        if self.config.compile:
            self.model.backbone = torch.compile(self.model.backbone)
        self._names = np.array(self.class_names, dtype=object)
        keep = _class_keep(self.class_names, self.config.classes)
        self._keep = None if keep is None else torch.from_numpy(keep).to(self.device)
        self._host_frames: dict[int, torch.Tensor] = {}  # pinned buffers handed out by host_frame, by address
        self._copy_stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        self._mask_features: torch.Tensor | None = None  # the mask head's RoI features of the last forward pass
        if self.config.embeddings:
            self.model.roi_heads.mask_roi_pool.register_forward_hook(self._keep_mask_features)

    def host_frame(self, shape: tuple[int, ...]) -> np.ndarray:
        """An uninitialised uint8 array to decode a frame into, kept for reuse by the caller.

        On CUDA it is pinned memory that :meth:`segment` recognises and uploads as
        it is, without the staging copy an ordinary array needs; the segmenter keeps
        it allocated for as long as it lives.
        """
        import torch

        if self.device.type != "cuda":
            return np.empty(shape, np.uint8)
        buffer = torch.empty(shape, dtype=torch.uint8, pin_memory=True)
        self._host_frames[buffer.data_ptr()] = buffer
        return buffer.numpy()

    def segment(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        """One :class:`Detections` per BGR uint8 frame, run ``batch_size`` frames at a time.

        On CUDA each batch is uploaded while the one before it computes, so give it
        several batches per call. The frames may be overwritten once this returns.
        """
        if self.config.tiles is not None:
            return self._segment_tiled(frames)
        size = self.config.batch_size
        batches = [frames[start : start + size] for start in range(0, len(frames), size)]
        if self._copy_stream is None:
            return [det for batch in batches for det in self._segment_batch(_upload(batch, self.device))]
        return self._segment_overlapped(batches)

    def _segment_tiled(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        """Every frame cut into tiles (:func:`segmenter.tiles.tile_windows`), all tiles of the call run
        ``batch_size`` at a time, and each frame's tile masks merged (:func:`segmenter.tiles.merge_tiled`)."""
        from segmenter.tiles import merge_tiled, tile_windows

        tiles = self.config.tiles
        windows = [tile_windows(f.shape[0], f.shape[1], tiles.size, tiles.overlap) for f in frames]
        crops = [np.ascontiguousarray(f[y0:y1, x0:x1]) for f, ws in zip(frames, windows) for x0, y0, x1, y1 in ws]
        size = self.config.batch_size
        per_tile: list[Detections] = []
        for start in range(0, len(crops), size):
            per_tile.extend(self._segment_batch(_upload(crops[start : start + size], self.device)))
        out, start = [], 0
        for frame, ws in zip(frames, windows):
            out.append(merge_tiled(per_tile[start : start + len(ws)], ws, frame.shape[:2]))
            start += len(ws)
        return out

    def _segment_overlapped(self, batches: list[Sequence[np.ndarray]]) -> list[Detections]:
        """Batch k + 1 is copied to the GPU on the copy stream while batch k computes on the current stream."""
        import torch

        if not batches:
            return []
        compute = torch.cuda.current_stream(self.device)
        results: list[Detections] = []
        upload = self._copy(batches[0])
        try:
            for k in range(len(batches)):
                frames, copied = upload
                if k + 1 < len(batches):
                    upload = self._copy(batches[k + 1])  # queued before batch k's work, so the two overlap
                compute.wait_event(copied)
                for frame in frames:  # allocated on the copy stream: its memory is not reused before batch k is done
                    frame.record_stream(compute)
                results.extend(self._segment_batch([_model_input(frame) for frame in frames]))
        finally:
            self._copy_stream.synchronize()  # no copy left in flight: the caller may refill the frames
        return results

    def _copy(self, frames: Sequence[np.ndarray]) -> tuple[list[torch.Tensor], torch.cuda.Event]:
        """``frames`` as uint8 tensors on the GPU, copied on the copy stream, and the event that marks them there."""
        import torch

        with torch.cuda.stream(self._copy_stream):
            tensors = _to_device(frames, self.device, self._host_frames)
            copied = torch.cuda.Event()
            copied.record(self._copy_stream)
        return tensors, copied

    def _segment_batch(self, images: list[torch.Tensor]) -> list[Detections]:
        """One forward pass over ``images`` (RGB float, on the device); masks are pasted only inside their boxes.

        torchvision's own postprocess pastes every instance into a full-frame
        probability map, one at a time (50 instances at 1080p: 400 MB written and
        copied back); the stages are run here so that step can be replaced by
        :func:`paste_crops`.
        """
        model = self.model
        if not hasattr(model, "roi_heads"):  # another model with torchvision's interface (a stand-in in tests)
            return self._segment_by_call(images)
        import torch
        from torchvision.models.detection.transform import resize_boxes

        from segmenter.roi_inference import detect

        original_sizes = [(int(image.shape[-2]), int(image.shape[-1])) for image in images]
        on_cuda = self.device.type == "cuda"
        dtype = autocast_dtype(self.config.precision, self.device)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            batch, _ = model.transform(images)
            tensors = batch.tensors.contiguous(memory_format=torch.channels_last) if on_cuda else batch.tensors
            features = model.backbone(tensors)
            proposals, _ = model.rpn(batch, features)
            outputs = detect(model.roi_heads, features, proposals, batch.image_sizes, self.config.pre_nms_top_k)
            if self.config.embeddings:
                pooled, self._mask_features = self._mask_features.split([len(out["boxes"]) for out in outputs]), None
                for out, roi_features in zip(outputs, pooled):
                    out["embeddings"] = mask_embeddings(roi_features, out["masks"])
            results = []
            for out, resized, original in zip(outputs, batch.image_sizes, original_sizes):
                boxes = resize_boxes(out["boxes"].float(), resized, original)
                results.append(self._detections(out, boxes, original))
            return results

    def _segment_by_call(self, images: list[torch.Tensor]) -> list[Detections]:
        """``model(images)`` as torchvision's detection models answer in eval mode: per image a dict of boxes,
        labels, scores and full-image mask probabilities (N, 1, H, W); scores at or below the threshold dropped."""
        import torch

        with torch.inference_mode():
            outputs = self.model(images)
        results = []
        for out, image in zip(outputs, images):
            size = (int(image.shape[-2]), int(image.shape[-1]))
            keep = out["scores"] > self.config.score_threshold
            if self._keep is not None:
                keep &= self._keep[out["labels"]]
            probabilities = out["masks"][keep].reshape(-1, *size)
            masks = [CropMask.from_full(m) for m in (probabilities > self.config.mask_threshold).cpu().numpy()]
            nonempty = np.array([m.area > 0 for m in masks], dtype=bool)
            labels = out["labels"][keep].cpu().numpy()[nonempty]
            results.append(
                Detections.from_masks(
                    [m for m, ok in zip(masks, nonempty) if ok],
                    labels,
                    out["scores"][keep].float().cpu().numpy()[nonempty],
                    self._names[labels],
                    size,
                )
            )
        return results

    def _keep_mask_features(self, module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
        """Forward hook on ``roi_heads.mask_roi_pool``: its output is what embeddings are pooled from."""
        self._mask_features = output

    def _detections(self, output: dict[str, torch.Tensor], boxes: torch.Tensor, image_size: tuple[int, int]) -> Detections:
        keep = self._keep[output["labels"]] if self._keep is not None else slice(None)
        masks = paste_crops(output["masks"][keep], boxes[keep], image_size, self.config.mask_threshold)
        nonempty = np.array([m.area > 0 for m in masks], dtype=bool)

        def kept(values: torch.Tensor) -> np.ndarray:
            return values[keep].cpu().numpy()[nonempty]

        labels = kept(output["labels"])
        return Detections(
            boxes=kept(boxes),
            masks=[m for m, ok in zip(masks, nonempty) if ok],
            class_ids=labels,
            scores=kept(output["scores"].float()),
            class_names=self._names[labels],
            image_size=image_size,
            embeddings=kept(output["embeddings"]) if "embeddings" in output else None,
        )


def mask_embeddings(features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(N, C) float32: RoI features (N, C, S, S) averaged under mask probabilities (N, 1, M, M), L2-normalised.

    The probabilities are pooled down to the features' S x S grid, so pixels the
    mask head gives to the object weigh most and the background around it little.
    """
    import torch.nn.functional as F

    weights = F.adaptive_avg_pool2d(masks.float(), features.shape[-2:])
    pooled = (features.float() * weights).sum(dim=(2, 3)) / weights.sum(dim=(2, 3)).clamp_min(1e-6)
    return F.normalize(pooled, dim=1)


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; an unavailable CUDA is an input error, not a crash later."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"segmenter.maskrcnn.device is {name} but CUDA is not available here (use auto or cpu)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise InputError("segmenter.maskrcnn.device is mps but MPS is not available here (use auto or cpu)")
    return torch.device(name)


def build_model(config: MaskRCNNConfig) -> tuple[MaskRCNN, list[str]]:
    """The Mask R-CNN the config describes, with its weights loaded, and its class names by label."""
    settings: dict[str, Any] = {
        "weights_backbone": None,  # never download ImageNet weights: they are overwritten anyway
        "box_score_thresh": config.score_threshold,
        "box_detections_per_img": config.max_detections,
        "min_size": config.min_size,
        "max_size": config.max_size,
    }
    weights = config.weights
    if weights.upper() == "DEFAULT":
        builder, coco = _architecture(config.version)
        try:  # whatever fails while fetching or reading the file (offline, proxy, corrupt cache)
            model = builder(weights=coco, **settings)
        except Exception as exc:
            raise InputError(_coco_failure(config.version, exc)) from exc
        names = coco.meta["categories"]
    elif weights.lower() == "none":
        num_classes = config.num_classes or COCO_NUM_CLASSES
        model = _architecture(config.version)[0](weights=None, num_classes=num_classes, **settings)
        names = _default_names(num_classes)
    else:
        state, names, version = read_checkpoint(Path(weights))
        version = version or config.version
        num_classes = state[CLS_SCORE_KEY].shape[0]
        model = _architecture(version)[0](weights=None, num_classes=num_classes, **settings)
        _load_state(model, state, weights, version)
        names = names or _default_names(num_classes)
    num_classes = model.roi_heads.box_predictor.cls_score.out_features
    if config.class_names:
        return model, names_by_label(config.class_names, num_classes, "segmenter.maskrcnn.class_names")
    return model, names_by_label(names, num_classes, f"class_names of {weights}")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The dtype ``precision`` autocasts to on ``device``; None: no autocast (fp32)."""
    import torch

    if precision == "auto":
        precision = "fp16" if device.type == "cuda" else "fp32"
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], list[str] | None, str | None]:
    """``(state_dict, class_names or None, version or None)`` from a checkpoint file.

    Loaded with ``weights_only=True``: a checkpoint is tensors, lists and strings, and
    opening one must never run code from the file.
    """
    import torch

    check_weights_file(path)
    expected = "expected torch.save of a state_dict or of {'model': state_dict, 'class_names': [...], 'version': 'v2'}"
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # text, a foreign pickle, a truncated zip: all mean "not a checkpoint"
        raise InputError(f"{path} is not a Mask R-CNN checkpoint: torch.load cannot read it ({expected})") from exc
    state = data.get("model", data) if isinstance(data, dict) else None
    if not isinstance(state, dict) or not isinstance(state.get(CLS_SCORE_KEY), torch.Tensor):
        raise InputError(f"{path} is not a Mask R-CNN checkpoint: it has no {CLS_SCORE_KEY} ({expected})")
    names = data.get("class_names")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise InputError(f"{path}: class_names must be a list of strings")
    version = data.get("version")
    if version not in (None, "v1", "v2"):
        raise InputError(f"{path}: version must be 'v1' or 'v2', not {version!r}")
    return state, names, version


def names_by_label(names: Sequence[str], num_classes: int, source: str) -> list[str]:
    """Names indexed by model label; ``names`` may include the background at index 0 or leave it out."""
    if len(names) == num_classes:
        return list(names)
    if len(names) == num_classes - 1:
        return [BACKGROUND, *names]
    raise InputError(
        f"{source} has {len(names)} names but the model has {num_classes - 1} classes "
        f"(give {num_classes - 1} names, or {num_classes} with the background first)"
    )


def paste_crops(masks: torch.Tensor, boxes: torch.Tensor, image_size: tuple[int, int], threshold: float) -> list[CropMask]:
    """Mask-head outputs (N, 1, M, M) resized into their boxes and thresholded, as tight crops.

    The same pixels as torchvision's ``paste_masks_in_image`` followed by
    ``> threshold`` (same padding, box expansion and bilinear resize), but each
    mask is resized only to its own box, thresholded on the device, and all of
    them reach the host in one copy of packed booleans.
    """
    import torch
    import torch.nn.functional as F
    from torchvision.models.detection.roi_heads import expand_boxes, expand_masks

    if len(masks) == 0:
        return []
    height, width = image_size
    masks, scale = expand_masks(masks, padding=1)
    boxes = expand_boxes(boxes.float(), scale).to(dtype=torch.int64).tolist()  # one sync for all boxes
    pieces, windows = [], []
    for mask, (x0, y0, x1, y1) in zip(masks, boxes):
        w, h = max(x1 - x0 + 1, 1), max(y1 - y0 + 1, 1)
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1 + 1, width), min(y1 + 1, height)
        if cx1 <= cx0 or cy1 <= cy0:
            windows.append(None)
            continue
        resized = F.interpolate(mask[None].float(), size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        pieces.append((resized[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0] > threshold).reshape(-1))
        windows.append((cx0, cy0, cx1, cy1))
    flat = torch.cat(pieces).cpu().numpy() if pieces else np.zeros(0, bool)
    out, start = [], 0
    for window in windows:
        if window is None:
            out.append(CropMask(np.zeros((0, 0), bool), 0, 0))
            continue
        x0, y0, x1, y1 = window
        size = (x1 - x0) * (y1 - y0)
        crop = CropMask.from_full(flat[start : start + size].reshape(y1 - y0, x1 - x0))  # tight around its pixels
        start += size
        out.append(CropMask(crop.crop, crop.x0 + x0, crop.y0 + y0) if crop.area else crop)
    return out


def _architecture(version: str) -> tuple[Any, Any]:
    """``(builder, COCO weights enum)`` of a version."""
    from torchvision.models import detection

    if version == "v1":
        return detection.maskrcnn_resnet50_fpn, detection.MaskRCNN_ResNet50_FPN_Weights.DEFAULT
    return detection.maskrcnn_resnet50_fpn_v2, detection.MaskRCNN_ResNet50_FPN_V2_Weights.DEFAULT


def _default_names(num_classes: int) -> list[str]:
    """COCO names for a 91-class model (they ship with torchvision, offline), else ``class_<label>``."""
    if num_classes == COCO_NUM_CLASSES:
        return list(_architecture("v2")[1].meta["categories"])
    return [BACKGROUND, *(f"class_{label}" for label in range(1, num_classes))]


def _load_state(model: MaskRCNN, state: dict[str, torch.Tensor], path: str, version: str) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:  # missing/unexpected keys or shapes: another architecture
        other = "v1" if version == "v2" else "v2"
        raise InputError(
            f"{path} is not a Mask R-CNN {version} checkpoint: its weights do not fit "
            f"the {version} architecture (if it was trained as {other}, set segmenter.maskrcnn.version: {other})"
        ) from exc


def _coco_failure(version: str, exc: Exception) -> str:
    import torch

    cache = Path(torch.hub.get_dir()) / "checkpoints"
    return (
        f"cannot load torchvision's COCO weights for Mask R-CNN {version} "
        f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no details'}). "
        f"They are downloaded once through torchvision (needs internet the first time, then cached in {cache}); "
        "without internet, set segmenter.maskrcnn.weights: path/to/model.pth (or --weights path/to/model.pth)"
    )


def _class_keep(names: list[str], wanted: list[str] | None) -> np.ndarray | None:
    """Bool lookup by label of the classes to keep; ``None`` keeps all. Unknown names are input errors."""
    if wanted is None:
        return None
    unknown = sorted(set(wanted) - set(names[1:]))
    if unknown:
        known = ", ".join(n for n in dict.fromkeys(names[1:]) if n != "N/A")
        raise InputError(f"segmenter.maskrcnn.classes: unknown class {', '.join(map(repr, unknown))} (known: {known})")
    return np.isin(np.array(names, dtype=object), wanted) & (np.arange(len(names)) > 0)


# staging buffers by (shape, slot in batch), each with the event of its last copy: pinning costs more than copying
_PINNED: dict[tuple, tuple[torch.Tensor, torch.cuda.Event]] = {}


def _upload(frames: Sequence[np.ndarray], device: torch.device) -> list[torch.Tensor]:
    """BGR uint8 frames → RGB float (3, H, W) tensors in [0, 1] on ``device``."""
    return [_model_input(frame) for frame in _to_device(frames, device, {})]


def _to_device(
    frames: Sequence[np.ndarray], device: torch.device, pinned: Mapping[int, torch.Tensor]
) -> list[torch.Tensor]:
    """BGR uint8 frames → uint8 (H, W, 3) tensors on ``device``, copied on its current stream.

    Frames travel as uint8 (4x smaller than float) and are converted there. On a
    GPU the copy is a DMA transfer from pinned memory that does not block the
    host: straight from the frame when it is one of the ``pinned`` buffers (by
    address), else through a staging buffer.
    """
    import torch

    for frame in frames:
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected a BGR uint8 frame of shape (H, W, 3), got {frame.dtype} {frame.shape}")
    if device.type != "cuda":
        return [torch.from_numpy(np.ascontiguousarray(f)) for f in frames]
    out = []
    for slot, frame in enumerate(frames):
        own = pinned.get(frame.ctypes.data)
        if own is not None and own.shape == frame.shape and frame.flags.c_contiguous:
            out.append(own.to(device, non_blocking=True))
        else:
            out.append(_staged_copy(frame, slot, device))
    return out


def _staged_copy(frame: np.ndarray, slot: int, device: torch.device) -> torch.Tensor:
    """``frame`` copied to ``device`` through the pinned staging buffer of its slot.

    The buffer's previous copy may still be in flight (another batch uploads while
    this one computes), so it is waited for before the buffer is refilled.
    """
    import torch

    key = (frame.shape, slot)
    if key in _PINNED:
        staging, copied = _PINNED[key]
        copied.synchronize()
    else:
        staging = torch.empty(frame.shape, dtype=torch.uint8).pin_memory()
    staging.numpy()[...] = frame
    tensor = staging.to(device, non_blocking=True)
    copied = torch.cuda.Event()
    copied.record(torch.cuda.current_stream(device))
    _PINNED[key] = (staging, copied)
    return tensor


def _model_input(frame: torch.Tensor) -> torch.Tensor:
    """A uint8 BGR (H, W, 3) tensor → RGB float (3, H, W) in [0, 1], on its device."""
    return frame.flip(-1).permute(2, 0, 1).float().div_(255)
