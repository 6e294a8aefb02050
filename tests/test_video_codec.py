"""Video coding: GOP files, the temporal prior's exact decode, GOP independence, CLI and API, bad input."""

from __future__ import annotations

import collections
import json
import shutil
from fractions import Fraction

import numpy as np
import pytest
import torch

import codec
from codec import catalog, container
from codec.errors import CodecError
from codec.video import file, io, summary
from codec.video.coding import INTER, INTRA
from codec.video.synthetic import make_test_clip
from tests.helpers import assert_one_line_error, run_cli
from tests.video_helpers import audio_only, av_clip

SHIPPED_PRIOR = catalog.CHECKPOINTS / file.PRIOR_FILE


@pytest.fixture()
def video_shipped(shipped):
    """The tiny McQuic ladder plus the shipped temporal prior, installed as the shipped checkpoints."""
    shutil.copy(SHIPPED_PRIOR, shipped / file.PRIOR_FILE)
    return shipped


@pytest.fixture()
def clips(tmp_path):
    """A panning and a static clip of 7 frames at an odd size, 30000/1001 fps."""
    return {
        motion: make_test_clip(tmp_path / f"{motion}.mkv", 7, 37, 29, Fraction(30000, 1001), motion=motion)
        for motion in ("pan", "static")
    }


def test_round_trip_keeps_frames_size_and_fps(video_shipped, clips):
    data = codec.encode(str(clips["pan"]), quality=2, gop=3)
    parts = container.split(data)
    assert len(parts) == 3  # 7 frames in GOPs of 3
    frames = codec.decode(data)
    assert len(frames) == 7 and frames.fps == Fraction(30000, 1001) and (frames.height, frames.width) == (29, 37)
    array = frames.to_array()
    assert array.shape == (7, 29, 37, 3) and array.dtype == np.uint8
    source = list(io.read_frames(clips["pan"]))
    for k in (0, 3, 6):  # the first frame of every GOP is coded as the image codec codes the frame
        assert np.array_equal(array[k], codec.decode(codec.encode(source[k], quality=2)))
    info = codec.info(data)
    assert info["kind"] == "video" and info["frames"] == 7 and info["gops"] == 3 and info["intra_frames"] == 3 and info["inter_frames"] == 4


def test_every_gop_decodes_on_its_own(video_shipped, clips):
    data = codec.encode(str(clips["pan"]), quality=2, gop=3)
    whole = codec.decode(data).to_array()
    parts = container.split(data)
    for k, part in enumerate(parts):
        alone = codec.decode(part).to_array()
        assert np.array_equal(alone, whole[3 * k : 3 * k + len(alone)])


def test_inter_frames_cost_less_on_a_static_clip_and_intra_only_has_no_inter_frames(video_shipped, clips):
    inter = codec.encode(str(clips["static"]), quality=2, gop=7)
    intra = codec.encode(str(clips["static"]), quality=2, gop=7, intra_only=True)
    assert len(inter) < len(intra)
    kinds = [p[:1] for _, p in container.unpack(intra).streams]
    assert kinds == [bytes([INTRA])] * 7
    assert [p[:1] for _, p in container.unpack(inter).streams][1:] == [bytes([INTER])] * 6
    assert "prior" not in container.unpack(intra).meta


def test_bytes_do_not_depend_on_the_callers_thread_count(video_shipped, clips):
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = codec.encode(str(clips["pan"]), quality=2, gop=4)
        torch.set_num_threads(2)
        two = codec.encode(str(clips["pan"]), quality=2, gop=4)
    finally:
        torch.set_num_threads(previous)
    assert one == two


def test_prior_precision_is_recorded_and_files_with_a_float32_prior_still_decode(video_shipped, clips):
    """New files run the prior in float64 and say so; files from before (no ``prior_dtype``) ran it in
    float32 and decode with it; a precision this version does not know is refused in one line."""
    from codec.video.clip import video_coder

    new = codec.encode(str(clips["pan"]), quality=2, gop=4)
    assert container.unpack(container.split(new)[0]).meta["prior_dtype"] == "float64"
    coder, mid, prior_hash = video_coder(None, 2, None, intra_only=False)
    coder = type(coder)(coder.net, coder.level, coder.prior, exact_prior=False)
    header = file.VideoHeader(Fraction(30000, 1001))
    old = b"".join(file.encode_gops(io.read_frames(clips["pan"]), coder, mid, header, 4, prior_hash=prior_hash))
    assert "prior_dtype" not in container.unpack(container.split(old)[0]).meta
    decoded_old, decoded_new = codec.decode(old).to_array(), codec.decode(new).to_array()
    assert decoded_old.shape == decoded_new.shape == (7, 29, 37, 3)
    assert np.abs(decoded_old.astype(int) - decoded_new.astype(int)).mean() < 2  # the same clip, decoded with its own prior
    c = container.unpack(container.split(new)[0])
    c.meta["prior_dtype"] = "float16"
    with pytest.raises(CodecError, match="float16"):
        codec.decode(container.pack(c))


def test_cli_encode_info_decode_to_lossless_video_and_png_folder(video_shipped, clips, tmp_path, capsys):
    out = tmp_path / "clip.bin"
    code, stdout, err = run_cli(capsys, "encode", clips["pan"], "-o", out, "--quality", "2", "--gop", "4")
    assert code == 0, err
    assert json.loads(stdout)["frames"] == 7
    code, stdout, _ = run_cli(capsys, "info", out)
    assert code == 0 and json.loads(stdout)["gop"] == 4
    expected = codec.decode(out.read_bytes()).to_array()
    code, _, err = run_cli(capsys, "decode", out, "-o", tmp_path / "back.mkv")
    assert code == 0, err
    assert np.array_equal(np.stack(list(io.read_frames(tmp_path / "back.mkv"))), expected)
    code, _, err = run_cli(capsys, "decode", out, "-o", f"{tmp_path}/frames/")
    assert code == 0, err
    assert np.array_equal(_pngs(tmp_path / "frames"), expected)


def _pngs(folder) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))])


def test_bad_video_inputs_give_one_line_errors(video_shipped, clips, tmp_path, capsys):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    code, _, err = run_cli(capsys, "encode", text, "-o", tmp_path / "x.bin")
    assert_one_line_error(code, err, "notes.mp4")
    assert not (tmp_path / "x.bin").exists()
    good = tmp_path / "good.bin"
    good.write_bytes(codec.encode(str(clips["pan"]), quality=2, gop=4))
    junk = tmp_path / "junk.bin"
    junk.write_bytes(container.MAGIC + bytes(64))
    code, _, err = run_cli(capsys, "decode", junk, "-o", tmp_path / "junk.mkv")
    assert_one_line_error(code, err, "")
    assert not (tmp_path / "junk.mkv").exists()
    code, _, err = run_cli(capsys, "decode", good, "-o", tmp_path / "out.xyz")
    assert_one_line_error(code, err, "xyz")
    code, _, err = run_cli(capsys, "encode", clips["pan"], "-o", tmp_path / "y.bin", "--max-abs-error", "1")
    assert_one_line_error(code, err, "do not apply to video")
    with pytest.raises(CodecError):
        codec.encode(str(clips["pan"]), gop=0)


def test_summary_reads_headers_only():
    assert not summary.is_video_file(b"\x89PNG\r\n\x1a\n")
    assert summary.is_video_path("a/b.MP4") and not summary.is_video_path("a/b.png")


def test_train_video_prior_tiny_preset(shipped, tmp_path, capsys):
    from PIL import Image

    from codec.video.synthetic import scene

    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        Image.fromarray(scene(96, 80, seed=i)).save(images / f"{i}.png")
    clip = make_test_clip(tmp_path / "real.mkv", 4, 64, 48, 25)
    code, out, err = run_cli(capsys, "train", "video-prior", "--data", images, "--out", tmp_path / "run", "--preset", "tiny", "--clips", clip, "--no-progress")
    assert code == 0, err
    assert json.loads(out)["held_out_bits_per_index"] > 0
    prior, digest = file.load_prior(tmp_path / "run" / "model.safetensors")
    assert len(digest) == 16 and sum(p.numel() for p in prior.parameters()) > 0
    code, _, err = run_cli(capsys, "train", "video-prior", "--data", images, "--out", tmp_path / "run", "--resume")
    assert_one_line_error(code, err, "--resume")


def test_damaged_frames_are_concealed_and_named(video_shipped, clips, tmp_path, capsys):
    data = codec.encode(str(clips["pan"]), quality=2, gop=3)
    clean = codec.decode(data).to_array()
    parts = container.split(data)
    second = container.unpack(parts[1])
    start, _ = second.spans["f1"]
    flipped = bytearray(parts[1])
    flipped[start + 2] ^= 0xFF  # frame 4 (the second frame of the second GOP) is damaged
    damaged = parts[0] + bytes(flipped) + parts[2]
    with pytest.warns(file.DamagedFrames, match="damaged frames 4-5"):
        frames = codec.decode(damaged).to_array()
    assert np.array_equal(frames[:3], clean[:3]) and np.array_equal(frames[6:], clean[6:])
    # frame 3 is synthesized alone here and in a batch with 4-5 in the clean decode: float32 rounding may
    # move a pixel by one level (as across CPUs)
    assert np.abs(frames[3].astype(np.int16) - clean[3]).max() <= 1
    assert np.array_equal(frames[4], frames[3]) and np.array_equal(frames[5], frames[3])  # the last good frame
    header_hit = bytearray(damaged)
    header_hit[len(parts[0]) + 12] ^= 0xFF  # the second GOP's header: the whole GOP is lost
    with pytest.warns(file.DamagedFrames, match="damaged frames 3-5"):
        frames = codec.decode(bytes(header_hit)).to_array()
    assert len(frames) == 7 and np.array_equal(frames[6:], clean[6:])
    first_hit = bytearray(data)
    first_hit[12] ^= 0xFF  # the first GOP's header: still a video file, decoded from the second GOP on
    with pytest.warns(file.DamagedFrames, match="damaged frames 0-2"):
        frames = codec.decode(bytes(first_hit)).to_array()
    assert len(frames) == 7 and np.array_equal(frames[3:], clean[3:])
    assert codec.info(bytes(first_hit))["frames"] == 7 and codec.info(bytes(first_hit))["damaged_bytes"] > 0  # as decoding counts them
    cut = tmp_path / "cut.bin"
    cut.write_bytes(data[:-5])  # the last frame cut off
    code, _, err = run_cli(capsys, "decode", cut, "-o", tmp_path / "cut.mkv")
    assert code == 0 and "damaged frames 6" in err and len(err.strip().splitlines()) == 1, err
    assert len(list(io.read_frames(tmp_path / "cut.mkv"))) == 7
    code, out, _ = run_cli(capsys, "info", cut)  # described as decoding reads it: the cut frame is named damaged
    assert code == 0 and json.loads(out)["frames"] == 7 and json.loads(out)["damaged_frames"] == 1


def test_a_clip_without_frames_is_refused():
    class NoModel:
        level = 1
        exact_prior = True

    with pytest.raises(CodecError, match="no frames"):
        list(file.encode_gops(iter([]), NoModel(), {}, file.VideoHeader(Fraction(25))))


@pytest.mark.parametrize("bpp", [None, 50.0], ids=["quality", "bpp"])
def test_a_frame_of_another_size_is_refused_with_its_index(video_shipped, bpp):
    """Frames are checked against the clip's size as they are read, in GOPs of either encoder path."""
    from codec.video import clip

    coder, mid, prior_hash = clip.video_coder(None, 1, None, False)
    frames = [np.full((29, 37, 3), 20 * i, np.uint8) for i in range(4)] + [np.zeros((31, 37, 3), np.uint8)]
    with pytest.raises(CodecError, match="frame 4 is 37x31, the clip 37x29"):
        list(file.encode_gops(iter(frames), coder, mid, file.VideoHeader(Fraction(25)), 3, prior_hash=prior_hash, bpp=bpp))


def test_audio_is_dropped_with_a_note_and_audio_only_files_are_refused(video_shipped, tmp_path, capsys):
    frames = [np.full((24, 32, 3), 40 * i, np.uint8) for i in range(3)]
    with_audio = av_clip(tmp_path / "talk.mkv", frames, audio=True, subtitles=True)
    code, _, err = run_cli(capsys, "encode", with_audio, "-o", tmp_path / "talk.bin", "--quality", "1")
    assert code == 0 and "audio and subtitle streams are not kept" in err
    assert len(codec.decode((tmp_path / "talk.bin").read_bytes())) == 3
    silent = audio_only(tmp_path / "music.mp4")
    code, _, err = run_cli(capsys, "encode", silent, "-o", tmp_path / "music.bin")
    assert_one_line_error(code, err, "no video stream")
    assert not (tmp_path / "music.bin").exists()


def test_frames_above_the_image_size_limit_are_refused_before_coding(video_shipped, clips, tmp_path, capsys, monkeypatch):
    from codec.image import io as image_io

    monkeypatch.setattr(image_io, "MAX_PIXELS", 30 * 30)
    code, _, err = run_cli(capsys, "encode", clips["pan"], "-o", tmp_path / "big.bin")
    assert_one_line_error(code, err, "exceeds the size limit")
    assert not (tmp_path / "big.bin").exists()


def test_encoding_streams_one_gop_at_a_time(video_shipped):
    """Memory does not grow with the clip: each GOP is out before the next GOP's frames are read."""
    from codec.video import clip
    from codec.video.synthetic import scene

    read = []

    def frames():
        for t in range(10):
            read.append(t)
            yield scene(48, 32, x0=3 * t)

    coder, model, prior_hash = clip.video_coder(None, 1, None, False)
    gops = file.encode_gops(frames(), coder, model, file.VideoHeader(Fraction(25)), gop=4, prior_hash=prior_hash)
    seen = [len(read) for _ in gops]
    assert seen == [4, 8, 10]  # frames read when each GOP came out


def test_decoding_reads_one_gop_at_a_time_from_a_memory_map(video_shipped, clips, tmp_path):
    """The GOP index keeps headers only; a memory-mapped file decodes exactly as its bytes do (what
    ``codec decode`` does, so memory does not grow with the clip)."""
    from codec import fileio
    from codec.video.clip import VideoFrames

    data = codec.encode(str(clips["pan"]), quality=2, gop=3)
    path = tmp_path / "pan.bin"
    path.write_bytes(data)
    mapped = VideoFrames(fileio.map_input(path))
    assert len(mapped.gops) == 3 and all(payload == b"" for g in mapped.gops for _, payload in g.head.streams)
    assert np.array_equal(mapped.to_array(), codec.decode(data).to_array())
    assert fileio.map_input(tmp_path / "empty.bin" if (tmp_path / "empty.bin").write_bytes(b"") == 0 else path) == b""


def test_frames_with_unchanged_indices_skip_the_synthesis(video_shipped, clips, monkeypatch):
    """A static scene's inter frames repeat their predecessor's indices: the decoder reuses that frame
    (exactly what the synthesis would give again) instead of running the synthesis transform."""
    from codec.video.coding import VideoCoder

    data = codec.encode(str(clips["static"]), quality=2, gop=7)
    calls = []
    original = VideoCoder.synthesize_many
    monkeypatch.setattr(VideoCoder, "synthesize_many", lambda self, frames: calls.extend(frames) or original(self, frames))
    listed = list(codec.decode(data))
    frames = np.stack(listed)
    assert 1 <= len(calls) < len(frames) == 7
    assert all(a is not b for a, b in zip(listed[:-1], listed[1:], strict=True))  # a repeated frame is a copy, not the same array
    monkeypatch.setattr(VideoCoder, "synthesize_many", original)
    coder = codec.decode(data)._coder
    m = coder.net.pad_multiple
    shapes = coder.net.latent_shapes(-(-29 // m) * m, -(-37 // m) * m)
    prev = None
    with torch.inference_mode():
        for k, (_, payload) in enumerate(container.unpack(data).streams):  # every frame synthesized, as before
            prev = coder.decode_indices(payload, prev, shapes)
            alone = codec.image.coding.pixels_of(coder.synthesize(prev), 29, 37)
            diff = np.abs(frames[k].astype(np.int16) - alone)  # (batched synthesis: float32 rounding may move a pixel one level)
            assert diff.max() <= 1 and np.count_nonzero(diff) <= diff.size // 1000


def test_frames_are_synthesized_a_few_at_a_time_in_order(video_shipped, clips, monkeypatch):
    """The decoder synthesizes up to SYNTHESIS_BATCH frames of a GOP in one batch and yields them in order:
    the same frames (up to float rounding) as one frame at a time."""
    from codec.video import file
    from codec.video.coding import VideoCoder

    data = codec.encode(str(clips["pan"]), quality=2, gop=6)
    sizes = []
    original = VideoCoder.synthesize_many
    monkeypatch.setattr(VideoCoder, "synthesize_many", lambda self, frames: sizes.append(len(frames)) or original(self, frames))
    batched = codec.decode(data).to_array()
    assert max(sizes) == file.SYNTHESIS_BATCH and sum(sizes) <= len(batched)
    monkeypatch.setattr(file, "SYNTHESIS_BATCH", 1)
    sizes.clear()
    single = codec.decode(data).to_array()
    assert set(sizes) == {1} and single.shape == batched.shape
    diff = np.abs(batched.astype(np.int16) - single)
    assert diff.max() <= 1 and np.count_nonzero(diff) <= diff.size // 1000


def _gop_bits(data: bytes) -> list[tuple[int, int, int]]:
    """(level, bits, pixels) of every GOP container of a video file."""
    out = []
    for part in container.split(data):
        c = container.unpack(part)
        out.append((c.meta["level"], 8 * len(part), c.shape[0] * c.shape[1] * c.shape[2]))
    return out


def _prefix_bpp(gops: list[tuple[int, int, int]]) -> list[float]:
    """Bits per pixel of the file up to and including each GOP."""
    return [sum(g[1] for g in gops[: i + 1]) / sum(g[2] for g in gops[: i + 1]) for i in range(len(gops))]


def test_bpp_codes_each_gop_at_the_highest_level_within_the_target(video_shipped, clips, tmp_path, capsys):
    """``--bpp`` (rate control): the file up to every GOP stays within the target, the first GOP at the
    highest level that does; the file decodes; a target even level 1 cannot meet is a one-line error
    with no output."""
    fixed = {q: _gop_bits(codec.encode(str(clips["pan"]), quality=q, gop=4)) for q in (1, 2)}
    first = [fixed[q][0][1] / fixed[q][0][2] for q in (1, 2)]
    target = 1.001 * max(_prefix_bpp(fixed[1]))  # all of level 1 fits...
    assert target < first[1]  # ... and level 2 is too much for the first GOP (this clip)
    data = codec.encode(str(clips["pan"]), bpp=target, gop=4)
    gops = _gop_bits(data)
    assert gops[0][0] == 1 and max(_prefix_bpp(gops)) <= target
    assert codec.decode(data).to_array().shape == (7, 29, 37, 3)
    assert codec.info(data)["levels"] == {str(k): v for k, v in sorted(collections.Counter(g[0] for g in gops).items())}
    roomy = _gop_bits(codec.encode(str(clips["pan"]), bpp=10 * max(first), gop=4))
    assert [g[0] for g in roomy] == [2, 2]
    code, _, err = run_cli(capsys, "encode", clips["pan"], "-o", tmp_path / "tiny.bin", "--bpp", str(first[0] / 2), "--gop", "4")
    assert_one_line_error(code, err, "above the target")
    assert not (tmp_path / "tiny.bin").exists()
    with pytest.raises(CodecError, match="not both"):
        codec.encode(str(clips["pan"]), bpp=target, quality=2)


def test_gops_of_different_levels_decode_each_at_its_own(video_shipped, clips):
    """A file whose GOPs were coded at different levels (rate control) decodes each GOP with its own level."""
    one, two = (codec.encode(str(clips["pan"]), quality=q, gop=3) for q in (1, 2))
    mixed = container.split(one)[0] + b"".join(container.split(two)[1:])
    frames = codec.decode(mixed).to_array()
    np.testing.assert_array_equal(frames[:3], codec.decode(one).to_array()[:3])
    np.testing.assert_array_equal(frames[3:], codec.decode(two).to_array()[3:])
    assert codec.info(mixed)["levels"] == {"1": 1, "2": 2} and "quality" not in codec.info(mixed)["model"]
    for bad in ([1], 0, True, 99):  # a forged level: one-line errors from info and decode, no traceback
        c = container.unpack(container.split(one)[0])
        c.meta["level"] = bad
        forged = container.pack(c)
        with pytest.raises(CodecError, match="level"):
            codec.info(forged) if bad != 99 else codec.decode(forged).to_array()
    other = make_test_clip(clips["pan"].parent / "wide.mkv", 3, 41, 29, Fraction(30000, 1001), motion="pan")
    foreign = container.split(one)[0] + container.split(codec.encode(str(other), quality=1, gop=3))[0]
    with pytest.raises(CodecError, match="disagree"):
        codec.decode(foreign)


def test_stage1_codes_probability_arrays_of_any_memory_layout():
    """McQuic levels with one codebook group (q1) hand the stage-1 coder a transposed (non-contiguous)
    probability array; it must code as the contiguous copy does (it raised 'not normalizable' before)."""
    from codec.video import coding

    rng = np.random.default_rng(0)
    p = rng.random((10, 50))
    p /= p.sum(0)
    layout = p.T  # [50 symbols, 10], not C-contiguous
    assert not layout.flags["C_CONTIGUOUS"]
    symbols = rng.integers(0, 10, 50)
    data = coding._encode_stage1(symbols, layout)
    assert data == coding._encode_stage1(symbols, np.ascontiguousarray(layout))
    np.testing.assert_array_equal(coding._decode_stage1(data, layout), symbols)


@pytest.fixture()
def vqgan_video(video_shipped, tiny_ladder):
    """The tiny VQGAN-cluster ladder installed as the shipped vqgan, beside the tiny McQuic and the shipped prior."""
    shutil.copy(tiny_ladder, video_shipped / "vqgan.safetensors")
    return video_shipped


def test_vqgan_video_round_trip_gop_independence_and_intra_frames_as_images(vqgan_video, clips):
    data = codec.encode(str(clips["pan"]), model="vqgan", quality=2, gop=4)
    parts = container.split(data)
    assert len(parts) == 2 and container.unpack(parts[0]).model["name"] == "vqgan"
    frames = codec.decode(data)
    whole = frames.to_array()
    assert whole.shape == (7, 29, 37, 3) and frames.fps == Fraction(30000, 1001)
    source = list(io.read_frames(clips["pan"]))
    for k in (0, 4):  # every GOP's first frame (indices and tone) decodes as the image codec decodes the frame coded alone
        alone = codec.decode(codec.encode(source[k], model="vqgan", quality=2))
        assert np.abs(whole[k].astype(np.int16) - alone).max() <= 1  # (synthesized in a batch here: float rounding)
    assert np.array_equal(codec.decode(parts[1]).to_array(), whole[4:])
    c = container.unpack(parts[0])
    assert [p[:1] for name, p in c.streams if name != "tone"] == [bytes([INTRA])] + [bytes([INTER])] * 3
    assert c.meta["tone"] == list(catalog.CATALOG["vqgan"].tone_settings(2)) and codec.info(data)["tone_bpp"] > 0


def test_vqgan_inter_frames_cost_less_on_a_static_clip(vqgan_video, clips):
    inter = codec.encode(str(clips["static"]), model="vqgan", quality=3, gop=7)
    intra = codec.encode(str(clips["static"]), model="vqgan", quality=3, gop=7, intra_only=True)
    assert len(inter) < len(intra)
    a, b = codec.decode(inter).to_array(), codec.decode(intra).to_array()
    assert np.array_equal(a[0], b[0])


def test_vqgan_video_bytes_do_not_depend_on_the_thread_count_and_bpp_picks_levels(vqgan_video, clips):
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = codec.encode(str(clips["pan"]), model="vqgan", quality=3, gop=4)
        torch.set_num_threads(2)
        two = codec.encode(str(clips["pan"]), model="vqgan", quality=3, gop=4)
    finally:
        torch.set_num_threads(previous)
    assert one == two
    top = codec.encode(str(clips["pan"]), model="vqgan", quality=3, gop=4)
    budget = 8 * len(top) / (7 * 29 * 37)
    assert codec.encode(str(clips["pan"]), model="vqgan", bpp=budget, gop=4) == top  # the top level fits: the same file
    lower = codec.encode(str(clips["pan"]), model="vqgan", bpp=budget * 0.8, gop=4)
    assert 8 * len(lower) / (7 * 29 * 37) <= budget * 0.8
    parts = container.split(lower)
    heads = [container.unpack(p).meta for p in parts]
    assert len({h["level"] for h in heads}) > 1 and len({tuple(h["tone"]) for h in heads}) > 1  # levels and tone settings change
    whole = codec.decode(lower).to_array()
    alone = np.concatenate([codec.decode(p).to_array() for p in parts])  # each GOP decoded with its own level and tone
    assert whole.shape == (7, 29, 37, 3) and np.array_equal(whole, alone)


def test_vqgan_video_through_the_cli_and_damaged_vqgan_frames_are_named(vqgan_video, clips, tmp_path, capsys):
    out = tmp_path / "clip.bin"
    code, stdout, err = run_cli(capsys, "encode", clips["pan"], "-o", out, "--model", "vqgan", "--level", "2", "--gop", "7")
    assert code == 0, err
    assert json.loads(stdout)["frames"] == 7
    c = container.unpack(out.read_bytes())
    k = [name for name, _ in c.streams].index("f3")
    c.streams[k] = ("f3", c.streams[k][1][:2])  # an inter frame cut short
    with pytest.warns(file.DamagedFrames, match="3-6"):
        frames = codec.decode(container.pack(c)).to_array()
    assert frames.shape == (7, 29, 37, 3) and np.array_equal(frames[3], frames[2])


def test_models_without_indices_are_refused_for_video(video_shipped, vf_weights, clips, tmp_path, capsys):
    code, _, err = run_cli(capsys, "encode", clips["pan"], "-o", tmp_path / "x.bin", "--model", "vaeformer", "--weights", vf_weights)
    assert_one_line_error(code, err, "mcquic or vqgan")
    assert not (tmp_path / "x.bin").exists()


def test_vqgan_frames_repeat_their_synthesis_under_their_own_tone(vqgan_video, clips, monkeypatch):
    """VQGAN-cluster frames carry tone codes: a frame whose indices repeat reuses the last synthesis (no decoder run)
    but still gets its own tone, so every frame equals its indices' synthesis under its tone codes."""
    from codec.image import tone
    from codec.video.coding import VideoCoder

    fade = clips["static"].parent / "fade.mkv"  # a still scene growing brighter: the tone changes, the indices need not
    still = next(io.read_frames(clips["static"])).astype(np.float64)
    with io.FrameWriter(fade, 25, 37, 29) as writer:
        for k in range(7):
            writer.write(np.clip(still * (0.8 + 0.06 * k), 0, 255).round().astype(np.uint8))
    data = codec.encode(str(fade), model="vqgan", quality=3, gop=7)
    calls = []
    original = VideoCoder.synthesize_many
    monkeypatch.setattr(VideoCoder, "synthesize_many", lambda self, frames: calls.extend(frames) or original(self, frames))
    frames = codec.decode(data).to_array()
    assert 1 <= len(calls) < len(frames) == 7
    monkeypatch.setattr(VideoCoder, "synthesize_many", original)
    coder = codec.decode(data)._coder
    c = container.unpack(data)
    codes = tone.decode_sequence(c.stream("tone"), 7, 29, 37, coder.tone)
    m = coder.net.pad_multiple
    shapes = coder.net.latent_shapes(-(-29 // m) * m, -(-37 // m) * m)
    prev, tone_only = None, 0
    with torch.inference_mode():
        for k, (_, payload) in enumerate(s for s in c.streams if s[0] != "tone"):
            indices = coder.decode_indices(payload, prev, shapes)
            same = prev is not None and all(torch.equal(a, b) for a, b in zip(indices, prev, strict=True))
            tone_only += same and not np.array_equal(codes[k], codes[k - 1])
            prev = indices
            image = tone.apply_means(coder.synthesize(prev), tone.means(codes[k], coder.tone), 29, 37, coder.tone)
            assert np.abs(frames[k].astype(np.int16) - codec.image.coding.pixels_of(image, 29, 37)).max() <= 1
    assert tone_only >= 1  # (the case under test: repeated indices, a new tone)


def test_vqgan_damage_a_cut_file_and_a_lost_tone_layer_name_their_frames(vqgan_video, clips):
    data = codec.encode(str(clips["pan"]), model="vqgan", quality=2, gop=4)
    clean = codec.decode(data).to_array()
    with pytest.warns(file.DamagedFrames, match="damaged frames 6 "):  # the last frame cut off: the GOP keeps frames 4-5
        cut = codec.decode(data[:-8]).to_array()
    assert cut.shape == clean.shape and np.array_equal(cut[:6], clean[:6])
    parts = container.split(data)
    c = container.unpack(parts[1])
    assert c.streams[0][0] == "tone"
    c.streams = c.streams[1:]  # the second GOP without its tone layer: all its frames are damaged, the first GOP's are not
    with pytest.warns(file.DamagedFrames, match="damaged frames 4-6"):
        frames = codec.decode(parts[0] + container.pack(c)).to_array()
    assert np.array_equal(frames[:4], clean[:4]) and all(np.array_equal(f, clean[3]) for f in frames[4:])
    start, _ = container.unpack(parts[1]).spans["tone"]
    flipped = bytearray(parts[1])
    flipped[start + 1] ^= 0xFF  # the tone layer fails its checksum: the GOP stays, its frames are named damaged
    damaged = parts[0] + bytes(flipped)
    with pytest.warns(file.DamagedFrames, match="damaged frames 4-6"):
        frames = codec.decode(damaged).to_array()
    assert np.array_equal(frames[:4], clean[:4]) and len(frames) == 7
    info = codec.info(damaged)
    assert info["frames"] == 7 and info["damaged_frames"] == 3 and info["damaged_bytes"] == 0
