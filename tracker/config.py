"""Every tracker parameter in one place, with the default and the reason for it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class TrackerConfig(BaseModel):
    """Parameters of :class:`tracker.MaskTracker` (few and named, as in SORT).

    Durations are in seconds and compared with frame timestamps, so one config
    serves a 10 fps file, a 30 fps camera and a stream that drops frames alike.
    """

    model_config = ConfigDict(extra="forbid")

    high_score: float = Field(0.5, ge=0, le=1, description="Detections at or above this score are matched first and may start tracks.")
    low_score: float = Field(0.1, ge=0, le=1, description="Detections between low_score and high_score only keep existing tracks alive (ByteTrack's second stage).")
    new_track_score: float = Field(0.6, ge=0, le=1, description="Minimum score for an unmatched detection to start a new track.")
    match_iou: float = Field(0.15, gt=0, le=1, description="Minimum mask IoU between a track's predicted mask and a high-score detection.")
    box_weight: float = Field(0.25, ge=0, le=1, description="In frames without appearance (no image, no embeddings), the share of box IoU blended into every mask IoU above: thin objects (people's legs) lose their mask overlap to a few pixels of prediction error, not their box overlap.")
    low_match_iou: float = Field(0.3, gt=0, le=1, description="Minimum mask IoU for the low-score stage, stricter than match_iou because low scores are often clutter.")
    tentative_match_iou: float = Field(0.3, gt=0, le=1, description="Minimum mask IoU to extend a tentative (not yet confirmed) track.")
    rescue_iou: float = Field(0.3, gt=0, le=1, description="Minimum buffered box IoU in the rescue stage, for tracks no mask matched.")
    rescue_buffer: float = Field(0.5, ge=0, description="How much each box grows per side (fraction of its size) in the rescue stage.")
    min_hits: int = Field(3, ge=1, description="Consecutive matched frames before a track is confirmed and gets its public id.")
    lost_seconds: float = Field(3.0, ge=0, description="Seconds a confirmed track may go unmatched (state 'lost') before removal; 0 removes it at its first unmatched frame.")
    class_consistent: bool = Field(True, description="Only match detections of the track's class.")
    camera_motion: Literal["auto", "on", "off"] = Field("auto", description="Move every track with the camera's motion between frames, estimated on background pixels (needs the frames). auto: estimated for a second every ten, and kept on while the camera moves; on: every frame; off: never.")
    appearance_weight: float = Field(0.3, ge=0, le=1, description="Share of appearance (colours under the mask, or the segmenter's embeddings) in the matching score; mask IoU still decides which pairs may match.")
    appearance_momentum: float = Field(0.9, ge=0, lt=1, description="How slowly a track's appearance follows new observations (exponential average).")
    partial_noise: float = Field(2.0, ge=1, description="Measurement variance multiplier for a mask that touches another mask or the image border (partly seen: its box is not the object's).")
    relink_speed: float = Field(1.5, ge=0, description="Re-linking: how far a lost object may have moved unseen, in its own heights per second; a new track found within reach of a lost one, of the same class and (with frames) the same look, takes the lost track's identity.")
    relink_appearance: float = Field(0.75, ge=0, le=1, description="Re-linking: minimum appearance similarity when appearance is known.")

    @model_validator(mode="after")
    def _ordered_scores(self) -> TrackerConfig:
        if self.low_score > self.high_score:
            raise ValueError(f"low_score ({self.low_score}) must not exceed high_score ({self.high_score})")
        return self

