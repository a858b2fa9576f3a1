"""Mask R-CNN segmenter on the CPU with untrained weights: contract, batching, checkpoints, errors.

Untrained models still return detections with ``score_threshold=0`` and a fixed
``max_detections``; images are 120x160 and resized to at most 160 px so each
forward pass takes about a second on two cores.
"""

import pickle

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torchvision.models.detection import (
    MaskRCNN_ResNet50_FPN_V2_Weights,
    maskrcnn_resnet50_fpn,
    maskrcnn_resnet50_fpn_v2,
)

from common import InputError
from segmenter import maskrcnn
from segmenter.maskrcnn import MaskRCNNConfig, MaskRCNNSegmenter, autocast_dtype, paste_crops, resolve_device
from segmenter.masks import CropMask, mask_iou

SMALL = {"min_size": 128, "max_size": 160, "score_threshold": 0.0, "max_detections": 5}
cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def small_config(**overrides) -> MaskRCNNConfig:
    return MaskRCNNConfig(**{"weights": "none", **SMALL, **overrides})


def drawn_image(seed: int = 0) -> np.ndarray:
    """A 120x160 BGR frame: noise with a few filled shapes."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, (120, 160, 3), dtype=np.uint8)
    image[20:70, 15:60] = (40, 200, 40)
    image[60:110, 90:150] = (30, 30, 220)
    return image


def assert_same_detections(a, b) -> None:
    """The same instances up to float noise (sums differ with batch size and between CUDA kernels)."""
    assert len(a) == len(b)
    np.testing.assert_array_equal(a.class_ids, b.class_ids)
    np.testing.assert_allclose(a.boxes, b.boxes, atol=0.05)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
    assert all(mask_iou(m, n) > 0.98 for m, n in zip(a.masks, b.masks))


def untrained_state(builder, num_classes: int) -> dict:
    """An untrained model whose classifier scores every foreground class alike and whose masks fill their boxes.

    All detections then tie in score, so the top ``max_detections`` mix classes
    instead of repeating whichever class a random classifier happens to favour,
    and none is dropped for an empty mask.
    """
    torch.manual_seed(1)
    model = builder(weights=None, weights_backbone=None, num_classes=num_classes)
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.weight.zero_()
        model.roi_heads.box_predictor.cls_score.bias.copy_(torch.tensor([-5.0] + [0.0] * (num_classes - 1)))
        model.roi_heads.mask_predictor.mask_fcn_logits.weight.zero_()
        model.roi_heads.mask_predictor.mask_fcn_logits.bias.fill_(5.0)
    return model.state_dict()


@pytest.fixture(scope="module")
def pills_checkpoint(tmp_path_factory):
    """A checkpoint as ``maskwatch train`` writes it: two custom classes plus background."""
    path = tmp_path_factory.mktemp("weights") / "pills.pth"
    state = untrained_state(maskrcnn_resnet50_fpn_v2, 3)
    torch.save({"model": state, "class_names": ["pill", "bottle"], "version": "v2"}, path)
    return path, state


@pytest.fixture(scope="module")
def segmenter() -> MaskRCNNSegmenter:
    torch.manual_seed(0)
    return MaskRCNNSegmenter(small_config(batch_size=2))


def test_detections_follow_the_contract(segmenter):
    det = segmenter.segment([drawn_image()])[0]
    assert det.image_size == (120, 160)
    assert 0 < len(det) <= 5
    assert det.boxes.dtype == np.float32 and det.boxes.shape == (len(det), 4)
    assert det.scores.dtype == np.float32 and det.class_ids.dtype == np.int32
    assert np.all(det.boxes[:, 2] > det.boxes[:, 0]) and np.all(det.boxes[:, 3] > det.boxes[:, 1])
    for mask, box, cid, name in zip(det.masks, det.boxes, det.class_ids, det.class_names):
        assert isinstance(mask, CropMask) and mask.crop.dtype == bool and mask.area > 0
        assert 0 <= mask.x0 < mask.x1 <= 160 and 0 <= mask.y0 < mask.y1 <= 120
        assert mask.crop[0].any() and mask.crop[-1].any() and mask.crop[:, 0].any() and mask.crop[:, -1].any()  # tight
        assert isinstance(name, str) and name == segmenter.class_names[cid] and cid > 0
        # masks are pasted into their boxes grown by 1/28 of a side (torchvision's 28x28 mask + 1 px padding)
        pad_x, pad_y = (box[2] - box[0]) / 28 + 1, (box[3] - box[1]) / 28 + 1
        assert box[0] - pad_x <= mask.x0 and mask.x1 <= box[2] + pad_x
        assert box[1] - pad_y <= mask.y0 and mask.y1 <= box[3] + pad_y


def test_batches_give_one_result_per_frame_and_match_single_frames(segmenter):
    frames = [drawn_image(0), drawn_image(1), drawn_image(2)]
    batched = segmenter.segment(frames)  # batch_size=2: two forward passes
    assert len(batched) == 3
    assert_same_detections(segmenter.segment([frames[2]])[0], batched[2])
    assert segmenter.segment([]) == []


def host_frames(segmenter: MaskRCNNSegmenter, images: list[np.ndarray]) -> list[np.ndarray]:
    """``images`` copied into buffers from ``segmenter.host_frame``, as the pipeline decodes into them."""
    buffers = [segmenter.host_frame(image.shape) for image in images]
    for buffer, image in zip(buffers, images):
        assert buffer.shape == image.shape and buffer.dtype == np.uint8
        buffer[...] = image
    return buffers


def test_frames_in_host_frame_buffers_segment_like_any_frame(segmenter):
    images = [drawn_image(i) for i in range(3)]
    for hosted, plain in zip(segmenter.segment(host_frames(segmenter, images)), segmenter.segment(images)):
        assert_same_detections(hosted, plain)


@pytest.fixture(scope="module")
def cuda_segmenter() -> MaskRCNNSegmenter:
    torch.manual_seed(0)
    return MaskRCNNSegmenter(small_config(batch_size=2, device="cuda"))


@cuda_only
def test_overlapped_uploads_give_the_detections_of_one_batch_at_a_time(cuda_segmenter, monkeypatch):
    seg = cuda_segmenter
    images = [drawn_image(i) for i in range(7)]  # four batches, the last one short
    alone = [det for start in range(0, 7, 2) for det in seg.segment(images[start : start + 2])]
    staged = seg.segment(images)  # staging buffers refilled while the batch before may still be copied from them
    pinned = host_frames(seg, images)
    assert all(torch.from_numpy(buffer).is_pinned() for buffer in pinned)

    def staged_copy(*args):
        raise AssertionError("a host_frame buffer went through a staging buffer")

    monkeypatch.setattr(maskrcnn, "_staged_copy", staged_copy)
    direct = seg.segment(pinned)
    assert len(alone) == len(staged) == len(direct) == 7
    for reference, a, b in zip(alone, staged, direct):
        assert_same_detections(reference, a)
        assert_same_detections(reference, b)


@cuda_only
def test_each_batch_is_uploaded_on_the_copy_stream_before_the_batch_before_it_computes(cuda_segmenter, monkeypatch):
    seg = cuda_segmenter
    compute = torch.cuda.current_stream(seg.device).cuda_stream
    order = []
    to_device, segment_batch = maskrcnn._to_device, seg._segment_batch

    def copy(frames, device, pinned):
        assert torch.cuda.current_stream(device).cuda_stream != compute
        order.append("copy")
        return to_device(frames, device, pinned)

    def forward(images):
        order.append("compute")
        return segment_batch(images)

    monkeypatch.setattr(maskrcnn, "_to_device", copy)
    monkeypatch.setattr(seg, "_segment_batch", forward)
    assert len(seg.segment([drawn_image(i) for i in range(5)])) == 5
    assert order == ["copy", "copy", "compute", "copy", "compute", "compute"]


def test_paste_crops_equal_torchvisions_full_frame_paste():
    """Our per-box paste gives the very pixels of torchvision's full-frame paste, thresholded."""
    from torchvision.models.detection.roi_heads import paste_masks_in_image

    rng = np.random.default_rng(0)
    masks = torch.from_numpy(rng.random((6, 1, 28, 28), dtype=np.float32))
    masks[4] = 0.1  # nothing above the threshold: an empty crop
    boxes = torch.tensor([[10.2, 5.7, 60.1, 40.0], [0.0, 0.0, 159.9, 119.9], [-20.0, 30.0, 15.0, 70.0],
                          [150.0, 100.0, 190.0, 140.0], [30.0, 30.0, 50.0, 50.0], [70.0, 60.0, 71.0, 61.0]])
    crops = paste_crops(masks, boxes, (120, 160), 0.5)
    full = paste_masks_in_image(masks, boxes, (120, 160))[:, 0] > 0.5
    for crop, reference in zip(crops, full.numpy()):
        np.testing.assert_array_equal(crop.to_full(120, 160), reference)
        tight = CropMask.from_full(reference)
        assert crop.window == tight.window and np.array_equal(crop.crop, tight.crop)
    assert crops[4].area == 0 and crops[2].x0 == 0  # clipped at the left edge
    assert paste_crops(torch.zeros(0, 1, 28, 28), torch.zeros(0, 4), (120, 160), 0.5) == []


def test_segments_equal_torchvisions_own_postprocess(segmenter):
    """The staged forward pass returns what the model's own forward returns, masks included."""
    assert_equals_own_forward(segmenter)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=cuda_only)])
def test_bf16_runs_the_network_in_bf16_and_returns_float32_detections(device):
    """Not compared with torchvision's own forward: untrained scores tie in bf16, and ties break differently."""
    torch.manual_seed(0)
    segmenter = MaskRCNNSegmenter(small_config(device=device, precision="bf16"))
    features = []
    hook = segmenter.model.backbone.register_forward_hook(lambda module, args, out: features.extend(out.values()))
    try:
        (det,) = segmenter.segment([drawn_image(3)])
    finally:
        hook.remove()
    assert features and all(f.dtype == torch.bfloat16 for f in features)
    assert det.boxes.dtype == np.float32 and det.scores.dtype == np.float32 and len(det) > 0
    for box, mask in zip(det.boxes, det.masks):
        assert mask.area > 0 and 0 <= mask.x0 and mask.x1 <= 160 and 0 <= mask.y0 and mask.y1 <= 120
        assert box[0] - 2 <= mask.x0 and mask.x1 <= box[2] + 2  # pasted inside its own box


def test_auto_precision_is_fp16_on_cuda_and_fp32_elsewhere():
    assert autocast_dtype("auto", torch.device("cuda")) == torch.float16
    assert autocast_dtype("auto", torch.device("cpu")) is None
    assert autocast_dtype("fp32", torch.device("cuda")) is None


@cuda_only
def test_fp32_on_cuda_equals_torchvisions_own_forward_without_autocast():
    torch.manual_seed(0)
    assert_equals_own_forward(MaskRCNNSegmenter(small_config(device="cuda", precision="fp32")))


def assert_equals_own_forward(segmenter: MaskRCNNSegmenter) -> None:
    image = drawn_image(3)
    (ours,) = segmenter.segment([image])
    tensor = (torch.from_numpy(image[..., ::-1].copy()).permute(2, 0, 1).float() / 255).to(segmenter.device)
    dtype = autocast_dtype(segmenter.config.precision, segmenter.device)  # the same autocast as the segmenter's
    with torch.inference_mode(), torch.autocast(segmenter.device.type, dtype=dtype, enabled=dtype is not None):
        (theirs,) = segmenter.model([tensor])
    theirs = {key: value.float().cpu() for key, value in theirs.items()}
    np.testing.assert_allclose(ours.boxes, theirs["boxes"].numpy(), atol=1e-3)
    np.testing.assert_allclose(ours.scores, theirs["scores"].numpy(), atol=1e-4)
    for mask, prob in zip(ours.masks, theirs["masks"][:, 0].numpy()):
        np.testing.assert_array_equal(mask.to_full(*image.shape[:2]), prob > 0.5)


def test_cpu_is_chosen_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    segmenter = MaskRCNNSegmenter(small_config())
    assert segmenter.device == torch.device("cpu") and next(segmenter.model.parameters()).device.type == "cpu"
    with pytest.raises(InputError, match="CUDA is not available"):
        resolve_device("cuda")


def test_checkpoint_dict_with_class_names(pills_checkpoint):
    path, state = pills_checkpoint
    seg = MaskRCNNSegmenter(MaskRCNNConfig(weights=str(path), **SMALL))
    assert seg.class_names == ["__background__", "pill", "bottle"]
    for key, value in state.items():
        assert torch.equal(seg.model.state_dict()[key].cpu(), value), key  # on CUDA when the machine has it
    det = seg.segment([drawn_image()])[0]
    assert len(det) == 5 and set(det.class_names) <= {"pill", "bottle"}
    assert set(det.class_ids.tolist()) <= {1, 2}
    renamed = MaskRCNNSegmenter(MaskRCNNConfig(weights=str(path), **SMALL, class_names=["a", "b"]))
    assert renamed.class_names == ["__background__", "a", "b"]


def test_class_filter_keeps_only_named_classes(pills_checkpoint):
    path, _ = pills_checkpoint
    image = drawn_image()
    everything = MaskRCNNSegmenter(MaskRCNNConfig(weights=str(path), **SMALL)).segment([image])[0]
    assert set(everything.class_names) == {"pill", "bottle"}  # both, so the filter has something to remove
    only = MaskRCNNSegmenter(MaskRCNNConfig(weights=str(path), **SMALL, classes=["bottle"])).segment([image])[0]
    expected = everything[everything.class_names == "bottle"]
    assert 0 < len(only) < len(everything) and set(only.class_names) == {"bottle"}
    np.testing.assert_array_equal(only.boxes, expected.boxes)
    assert [m.window for m in only.masks] == [m.window for m in expected.masks]
    with pytest.raises(InputError, match="unknown class 'person'.*known: pill, bottle"):
        MaskRCNNSegmenter(MaskRCNNConfig(weights=str(path), **SMALL, classes=["bottle", "person"]))


def test_bare_state_dict_of_v1_loads_and_wrong_version_is_reported(tmp_path):
    path = tmp_path / "bare.pth"
    state = untrained_state(maskrcnn_resnet50_fpn, 3)
    # Checkpoints trained with frozen batch norm (torchvision's v1) carry no num_batches_tracked.
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, path)
    seg = MaskRCNNSegmenter(MaskRCNNConfig(weights=str(path), version="v1", **SMALL))
    assert seg.class_names == ["__background__", "class_1", "class_2"]
    assert len(seg.segment([drawn_image()])[0]) > 0
    with pytest.raises(InputError, match="not a Mask R-CNN v2 checkpoint.*version: v1"):
        MaskRCNNSegmenter(MaskRCNNConfig(weights=str(path), version="v2", **SMALL))


def test_files_that_are_not_checkpoints_are_input_errors(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("these are not weights\n")
    foreign = tmp_path / "foreign.pth"
    foreign.write_bytes(pickle.dumps({"a": 1, "b": [1, 2, 3]}, protocol=2))
    hostile = tmp_path / "hostile.pth"
    hostile.write_bytes(pickle.dumps(np.arange(3), protocol=2))  # needs a global: refused by weights_only loading
    unrelated = tmp_path / "optimizer.pth"
    torch.save({"epoch": 3, "lr": torch.tensor(0.1)}, unrelated)  # readable, but no Mask R-CNN weights
    for path in (text, foreign, hostile, unrelated):
        with pytest.raises(InputError, match=f"{path} is not a Mask R-CNN checkpoint"):
            MaskRCNNSegmenter(MaskRCNNConfig(weights=str(path)))
    missing = tmp_path / "nope.pth"
    with pytest.raises(InputError, match=f"weights not found: {missing}"):
        MaskRCNNSegmenter(MaskRCNNConfig(weights=str(missing)))


def test_default_weights_load_from_torchvisions_cache_with_coco_names(coco_cached):
    seg = MaskRCNNSegmenter(MaskRCNNConfig(**SMALL))  # weights: DEFAULT
    assert seg.class_names == list(MaskRCNN_ResNet50_FPN_V2_Weights.DEFAULT.meta["categories"])
    assert seg.class_names[1] == "person" and len(seg.class_names) == 91
    state = seg.model.state_dict()
    assert all(torch.equal(state[key].cpu(), value) for key, value in coco_cached.items())  # the model may be on CUDA
    (det,) = seg.segment([drawn_image()])
    assert len(det) == SMALL["max_detections"] and set(det.class_names) <= set(seg.class_names[1:])


def test_coco_weights_that_cannot_be_fetched_name_both_options(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(MaskRCNN_ResNet50_FPN_V2_Weights, "get_state_dict", offline)
    with pytest.raises(InputError) as info:
        MaskRCNNSegmenter(MaskRCNNConfig(**SMALL))
    message = str(info.value)
    assert "internet" in message and "weights: path/to/model.pth" in message and "\n" not in message


def test_config_rejects_bad_values():
    for bad in (
        {"score_threshold": 1.5},
        {"device": "gpu"},
        {"min_size": 900, "max_size": 800},
        {"num_classes": 3},  # only meaningful for weights: none
        {"classes": []},
        {"batch_size": 0},
        {"unknown": 1},
    ):
        with pytest.raises(ValidationError):
            MaskRCNNConfig(**bad)
    config = MaskRCNNConfig(weights="none", num_classes=3)
    with pytest.raises(ValidationError):
        config.weights = "model.pth"  # assignments (the CLI's --weights) are validated too
    with pytest.raises(InputError, match="has 4 names but the model has 2 classes"):
        MaskRCNNSegmenter(small_config(num_classes=3, class_names=["a", "b", "c", "d"]))


@pytest.fixture(scope="module")
def embedding_segmenter() -> MaskRCNNSegmenter:
    torch.manual_seed(0)  # the weights of the ``segmenter`` fixture
    return MaskRCNNSegmenter(small_config(batch_size=2, embeddings=True))


def test_embeddings_are_normalised_mask_pooled_features_and_absent_by_default(segmenter, embedding_segmenter):
    frames = [drawn_image(0), drawn_image(1), drawn_image(2)]
    plain, pooled = segmenter.segment(frames), embedding_segmenter.segment(frames)
    for without, det in zip(plain, pooled):
        assert without.embeddings is None
        assert_same_detections(without, det)  # the same forward pass, only read further
        assert det.embeddings.dtype == np.float32 and det.embeddings.shape == (len(det), 256)
        assert np.isfinite(det.embeddings).all()
        np.testing.assert_allclose(np.linalg.norm(det.embeddings, axis=1), 1.0, atol=1e-5)
    alone = embedding_segmenter.segment([frames[1]])[0]  # second image of the first batch: split in order
    np.testing.assert_allclose(alone.embeddings, pooled[1].embeddings, atol=1e-4)
    det = pooled[0]
    copy = pickle.loads(pickle.dumps(det))  # as the shared segmenter sends it
    np.testing.assert_array_equal(copy.embeddings, det.embeddings)
    np.testing.assert_array_equal(det[[1, 0]].embeddings, det.embeddings[[1, 0]])


def test_mask_embeddings_weigh_features_by_mask_probability():
    features = torch.zeros(2, 3, 14, 14)
    features[:, 0, :7] = 1.0  # channel 0 lives in the top half, channel 2 in the bottom half
    features[:, 2, 7:] = 1.0
    masks = torch.zeros(2, 1, 28, 28)
    masks[0, :, :14] = 0.9  # the first mask covers the top half, the second the bottom half
    masks[1, :, 14:] = 0.9
    embeddings = maskrcnn.mask_embeddings(features, masks)
    np.testing.assert_allclose(embeddings.numpy(), [[1, 0, 0], [0, 0, 1]], atol=1e-6)
