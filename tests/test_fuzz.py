"""Fuzzing decode and request validation: any input gives a typed value or a precise refusal."""

from __future__ import annotations

import grpc
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alive_service import validate
from alive_service.decode import DecodeError, DecodeLimits, decode_photo
from alive_service.rpc import RpcError, pb
from tests.conftest import jpeg

SEED_JPEG = jpeg(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8))
LIMITS = DecodeLimits(max_bytes=1_000_000, max_pixels=4_000_000)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decodes_or_refuses(data: bytes) -> None:
    try:
        photo = decode_photo(data, LIMITS)
    except DecodeError as refused:
        assert refused.reason and str(refused)
        return
    assert photo.rgb.ndim == 3 and photo.rgb.shape[2] == 3 and photo.rgb.dtype == np.uint8


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_never_crash_the_decoder(data: bytes) -> None:
    decodes_or_refuses(data)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(SEED_JPEG) - 1), st.integers(0, 255)),
                min_size=1, max_size=12),
       st.integers(16, len(SEED_JPEG)))
def test_mutated_and_truncated_jpegs_decode_or_are_refused(
    edits: list[tuple[int, int]], cut: int,
) -> None:
    data = bytearray(SEED_JPEG)
    for offset, value in edits:
        data[offset] = value
    decodes_or_refuses(bytes(data[:cut]))


@FUZZ
@given(st.text(max_size=700))
def test_any_caption_is_accepted_or_refused_as_invalid_argument(text: str) -> None:
    try:
        cleaned = validate.caption(text, 500)
    except RpcError as refused:
        assert refused.code == grpc.StatusCode.INVALID_ARGUMENT
        return
    assert len(cleaned) <= 500


@FUZZ
@given(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6),
       st.integers(-10**6, 10**6), st.one_of(st.none(), st.floats(allow_nan=True)))
def test_any_options_are_accepted_in_range_or_refused(
    duration: float, fps: int, long_side: int, sky: float | None,
) -> None:
    message = pb.AnimateOptions(duration_s=duration, fps=fps, long_side=long_side)
    if sky is not None:
        message.sky = sky
    try:
        options = validate.options(message)
    except RpcError as refused:
        assert refused.code == grpc.StatusCode.INVALID_ARGUMENT
        return
    assert 1 <= options.duration_s <= 6 and 12 <= options.fps <= 30
    assert 256 <= options.long_side <= 1920 and 0 <= options.sky <= 2


@FUZZ
@given(st.text(max_size=40))
def test_any_video_id_is_accepted_only_in_its_exact_form(value: str) -> None:
    try:
        assert validate.video_id(value) == value and len(value) == 16
    except RpcError as refused:
        assert refused.code == grpc.StatusCode.INVALID_ARGUMENT
