"""The domain vocabulary is said once, and the wire's enums say the same words."""

from __future__ import annotations

from typing import get_args

import pytest

from alive_service import vocabulary as v
from alive_service.rpc import pb


def test_every_report_reason_on_the_wire_is_a_vocabulary_word_and_back() -> None:
    wire = {pb.ReportReason.Name(n) for n in pb.ReportReason.values() if n}
    assert wire == {reason.proto_name for reason in v.ReportReason}


def test_every_progress_stage_on_the_wire_is_a_vocabulary_word_and_back() -> None:
    wire = [pb.Stage.Name(n) for n in sorted(pb.Stage.values()) if n]
    assert wire == [stage.proto_name for stage in v.ProgressStage]  # in the same order


def test_a_child_at_risk_outranks_every_other_reason_and_spam_ranks_last() -> None:
    ranked = sorted(v.ReportReason, key=lambda r: -r.severity)
    assert ranked[0] is v.ReportReason.MINOR_SAFETY and ranked[-1] is v.ReportReason.SPAM


def test_policy_categories_flagged_for_review_become_report_reasons() -> None:
    assert v.review_reason(["unknown", "sexual_minors", "hate"]) is v.ReportReason.MINOR_SAFETY
    assert v.review_reason(["unknown"]) is v.ReportReason.OTHER


def test_the_verdicts_are_the_safety_packages_words() -> None:
    from safety.decision import Verdict

    assert set(get_args(Verdict)) == set(v.Verdict)


def test_stored_strings_read_back_as_the_same_words() -> None:
    assert v.VideoStatus("taken_down") == "taken_down"
    assert v.ReportStatus("escalated") is v.ReportStatus.ESCALATED
    assert f"{v.SafetyStage.OUTPUT}" == "output"


@pytest.mark.parametrize("value", ["0123456789abcdef", "ffffffffffffffff"])
def test_a_video_id_is_sixteen_lowercase_hex_characters(value: str) -> None:
    assert v.is_video_id(value) and v.video_id(value) == value


@pytest.mark.parametrize("value", ["", "0123456789ABCDEF", "0123456789abcde", "0123456789abcdef0",
                                   "0123456789abcdeg", "0123456789abcde\n", " 123456789abcdef"])
def test_anything_else_is_not_a_video_id(value: str) -> None:
    assert not v.is_video_id(value)
    with pytest.raises(ValueError):
        v.video_id(value)


def test_new_video_ids_are_video_ids_and_differ() -> None:
    ids = {v.new_video_id() for _ in range(100)}
    assert len(ids) == 100 and all(v.is_video_id(i) for i in ids)


def test_every_option_a_request_may_ask_for_the_model_accepts() -> None:
    from dataclasses import fields

    from alive_service.motion import MotionOptions
    from alive_service.motion.interface import MODEL_BOUNDS, REQUEST_BOUNDS

    numeric = {f.name for f in fields(MotionOptions)} - {"seed", "hints"}
    assert set(REQUEST_BOUNDS) == set(MODEL_BOUNDS) == numeric
    for name, asked in REQUEST_BOUNDS.items():
        model = MODEL_BOUNDS[name]
        assert model.low <= asked.low <= asked.high <= model.high, name
        assert float("nan") not in asked and float("inf") not in model
    defaults = MotionOptions()
    assert all(getattr(defaults, name) in bound for name, bound in REQUEST_BOUNDS.items())
