"""/v1/audio/transcriptions and /translations through the official openai SDK, and the video-summary route."""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
import srt
import webvtt

from tests import speech_media
from tests.envelopes import assert_envelope

ASR_MODEL = "tiny-whisper"
SECONDS = 8.0


@pytest.fixture(scope="module")
def voice():
    return speech_media.speech(SECONDS)


@pytest.fixture(scope="module")
def mp4(voice) -> bytes:
    return speech_media.encode(voice, "mp4", video=True)


@pytest.fixture(scope="module")
def webm(voice) -> bytes:
    return speech_media.encode(voice, "webm", video=True)


def assert_cue_times_valid(cues: list[tuple[float, float]], duration: float) -> None:
    assert cues, "no cues"
    previous_end = 0.0
    for start, end in cues:
        assert previous_end <= start < end <= duration + 1e-6, (start, end, previous_end, duration)
        previous_end = end


def test_translations_run_whispers_translate_task_in_openais_shapes(openai_client, mp4):
    def translate(**kw):
        return openai_client.audio.translations.create(model="whisper-1", file=("speech.mp4", mp4), **kw)

    assert isinstance(translate().text, str)
    assert isinstance(translate(response_format="text"), str)
    subtitles = list(srt.parse(translate(response_format="srt")))
    assert_cue_times_valid([(c.start.total_seconds(), c.end.total_seconds()) for c in subtitles], SECONDS + 0.1)
    verbose = translate(response_format="verbose_json")
    assert verbose.duration == pytest.approx(SECONDS, abs=0.1)


def test_every_response_format_parses_through_the_sdk(openai_client, mp4):
    def create(**kw):
        return openai_client.audio.transcriptions.create(model=ASR_MODEL, file=("speech.mp4", mp4), language="en", **kw)

    assert isinstance(create().text, str)
    assert isinstance(create(response_format="json").text, str)
    assert isinstance(create(response_format="text"), str)

    subtitles = list(srt.parse(create(response_format="srt")))
    assert [c.index for c in subtitles] == list(range(1, len(subtitles) + 1))
    assert_cue_times_valid([(c.start.total_seconds(), c.end.total_seconds()) for c in subtitles], SECONDS + 0.1)

    vtt = create(response_format="vtt")
    assert vtt.startswith("WEBVTT")
    captions = webvtt.from_buffer(io.StringIO(vtt))
    assert_cue_times_valid([(c.start_in_seconds, c.end_in_seconds) for c in captions], SECONDS + 0.1)

    verbose = create(response_format="verbose_json", timestamp_granularities=["word", "segment"])
    assert verbose.language == "english" and verbose.duration == pytest.approx(SECONDS, abs=0.1)
    assert verbose.segments and verbose.words
    for segment in verbose.segments:
        assert 0 <= segment.start <= segment.end <= verbose.duration + 1e-6
    for word in verbose.words:
        assert word.start <= word.end
    # Alignment ran (an English aligner is configured): every segment carries its words.
    extra = verbose.model_extra or {}
    assert extra.get("aligned") is True
    assert all(s.model_extra.get("words") for s in verbose.segments if s.text.strip())


def test_concurrent_files_are_transcribed_as_each_would_be_alone(openai_client, mp4, webm):
    """local.yaml's ASR has two lanes over one model: files side by side, each with its own prompt
    (its own decoding options and length bound on its lane), get what each gets alone."""

    def create(media: tuple[str, bytes], prompt: str | None) -> str:
        extra = {"prompt": prompt} if prompt else {}
        return openai_client.audio.transcriptions.create(
            model=ASR_MODEL, file=media, language="en", response_format="srt", temperature=0, **extra
        )

    files = [("a.mp4", mp4), ("b.webm", webm), ("c.mp4", mp4), ("d.webm", webm)]
    prompts = [None, "Minutes of a long meeting about the budget.", "A lecture.", None]
    alone = [create(f, p) for f, p in zip(files, prompts, strict=True)]
    with ThreadPoolExecutor(len(files)) as pool:
        together = list(pool.map(create, files, prompts))
    assert together == alone


def test_segment_granularity_only_has_no_words(openai_client, mp4):
    verbose = openai_client.audio.transcriptions.create(
        model=ASR_MODEL,
        file=("speech.mp4", mp4),
        language="en",
        response_format="verbose_json",
        timestamp_granularities=["segment"],
    )
    assert verbose.segments and verbose.words is None


@pytest.mark.parametrize(
    "name,container", [("a.wav", "wav"), ("a.mp3", "mp3"), ("a.flac", "flac"), ("a.ogg", "ogg"), ("a.m4a", "ipod")]
)
def test_audio_formats(openai_client, voice, name, container):
    data = speech_media.encode(voice[: 16_000 * 3], container)
    result = openai_client.audio.transcriptions.create(model="whisper-1", file=(name, data), language="en")
    assert isinstance(result.text, str)


def test_webm_video_and_language_without_aligner(openai_client, webm):
    verbose = openai_client.audio.transcriptions.create(
        model=ASR_MODEL,
        file=("clip.webm", webm),
        language="de",
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert verbose.language == "german"
    assert verbose.segments, "segment timings are still returned"
    assert not verbose.words
    assert "no aligner" in verbose.model_extra["alignment_note"]


def test_models_lists_asr_and_its_alias(openai_client):
    cards = {m.id: m for m in openai_client.models.list().data}
    assert cards[ASR_MODEL].model_extra["kind"] == "asr"
    assert cards["whisper-1"].model_extra["kind"] == "asr"


# -- bad input: each gets an OpenAI envelope, and a valid request right after still succeeds --


@pytest.fixture()
def http(local_app, mp4):
    with httpx.Client(base_url=local_app, timeout=120) as client:
        yield client
        after = client.post(
            "/v1/audio/transcriptions", data={"model": ASR_MODEL}, files={"file": ("ok.mp4", mp4, "video/mp4")}
        )
        assert after.status_code == 200, after.text


def transcribe(http, data: bytes, name: str = "clip.mp4", **fields):
    return http.post(
        "/v1/audio/transcriptions",
        data={"model": ASR_MODEL, **fields},
        files={"file": (name, data, "application/octet-stream")},
    )


def test_empty_file(http):
    assert_envelope(transcribe(http, b""), 400, param="file")


def test_truncated_mp4(http, mp4):
    assert_envelope(transcribe(http, mp4[: len(mp4) // 3]), 400, param="file")


def test_text_file_named_mp4(http):
    reply = transcribe(http, b"this is not a video\n" * 50, name="notes.mp4")
    assert_envelope(reply, 400, param="file")


def test_video_without_audio(http):
    reply = transcribe(http, speech_media.video_without_audio())
    assert_envelope(reply, 400, param="file")
    assert "no audio track" in reply.json()["error"]["message"]


def test_oversize_upload_is_413(http):
    assert_envelope(transcribe(http, b"\0" * (26 << 20)), 413)


def test_unknown_response_format(http, mp4):
    assert_envelope(transcribe(http, mp4, response_format="docx"), 400, param="response_format")


def test_granularities_need_verbose_json(http, mp4):
    reply = transcribe(http, mp4, **{"timestamp_granularities[]": "word"})
    assert_envelope(reply, 400, param="timestamp_granularities")


def test_unknown_language(http, mp4):
    assert_envelope(transcribe(http, mp4, language="xx"), 400, param="language")


def test_unknown_model_is_404(http, mp4):
    reply = http.post(
        "/v1/audio/transcriptions", data={"model": "whisper-9"}, files={"file": ("a.mp4", mp4, "video/mp4")}
    )
    assert_envelope(reply, 404, param="model")


def test_json_body_is_415(http):
    assert_envelope(http.post("/v1/audio/transcriptions", json={"model": ASR_MODEL}), 415)


def test_sdk_raises_bad_request(openai_client):
    with pytest.raises(openai.BadRequestError):
        openai_client.audio.transcriptions.create(model=ASR_MODEL, file=("empty.wav", b""))


# -- the video-summary pipeline over HTTP --


def test_video_summary_json(http, mp4):
    reply = http.post(
        "/v1/pipelines/video-summary",
        data={"language": "en", "max_summary_tokens": "16"},
        files={"file": ("talk.mp4", mp4, "video/mp4")},
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["language"] == "en"
    assert body["summary"].strip(), "the LLM wrote a summary"
    cues = list(srt.parse(body["srt"]))
    assert_cue_times_valid([(c.start.total_seconds(), c.end.total_seconds()) for c in cues], body["duration"])
    assert body["segments"] and all(s["words"] for s in body["segments"] if s["text"].strip())
    timings = body["timings"]
    assert {"decode", "transcribe", "align", "summarise", "total"} <= set(timings)
    assert timings["llm_calls"] == 1 and timings["chunks"] == 0


def test_video_summary_streams_events_in_order(http, webm):
    with http.stream(
        "POST",
        "/v1/pipelines/video-summary",
        data={"stream": "true", "language": "en", "max_summary_tokens": "16"},
        files={"file": ("talk.webm", webm, "video/webm")},
    ) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        lines = [line[len("data: ") :] for line in reply.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    events = [json.loads(line) for line in lines[:-1]]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "transcript" and kinds[-1] == "done"
    assert set(kinds[1:-1]) == {"summary.delta"}, kinds
    assert "".join(e["delta"] for e in events[1:-1]) == events[-1]["summary"]
    assert list(srt.parse(events[-1]["srt"]))
    assert events[-1]["timings"]["summarise"] >= 0


def test_video_summary_bad_media_is_400_even_when_streamed(http):
    reply = http.post(
        "/v1/pipelines/video-summary", data={"stream": "true"}, files={"file": ("x.mp4", b"garbage", "video/mp4")}
    )
    assert_envelope(reply, 400, param="file")
