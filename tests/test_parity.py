"""Reed-Solomon parity packets of resilient VQGAN-cluster files (codec.parity)."""

from __future__ import annotations

import itertools
import json
import re
import warnings
import zlib

import numpy as np
import pytest
import xarray as xr
from PIL import Image

import codec
from codec import api, container
from codec.cli import main
from codec.errors import FormatError, InputError
from codec.image import parity, resilient
from codec.models.vqgan_cluster import VQGANCluster


@pytest.fixture(scope="module")
def image():
    y, x = np.mgrid[0:80, 0:72].astype(np.float32)
    return (np.stack([np.cos(x / 5) * 0.4 + 0.5, y / 80, (x * y) / 5760], 2) * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def protected(tiny_ladder, image):
    """A resilient file (12 packets) with ceil(0.25 * 12) = 3 parity packets."""
    return codec.encode(image, model="vqgan", quality=3, weights=tiny_ladder, packet_rows=2, packet_parity=0.25)


def test_parity_is_a_fixed_code():
    # known answer: files made today must rebuild with any later zfec release
    assert [p.hex() for p in parity.encode([b"codec", b"parity", b"rs"], 2)] == ["9d5791468cef", "d51f67a00458"]


def test_any_lost_packets_up_to_the_parity_count_are_rebuilt():
    rng = np.random.default_rng(0)
    packets = [rng.bytes(int(n)) for n in rng.integers(1, 40, size=6)]
    checks = parity.encode(packets, 2)
    assert len(checks) == 2 and all(len(c) == max(map(len, packets)) for c in checks)
    lengths, sums = [len(p) for p in packets], [zlib.crc32(p) for p in packets]
    for lost in itertools.chain.from_iterable(itertools.combinations(range(8), r) for r in range(3)):
        got = [None if i in lost else p for i, p in enumerate(packets + checks)]
        assert parity.rebuild(got[:6], got[6:], lengths, sums) == packets
    three = [None, None, None, *packets[3:]]
    assert parity.rebuild(three, checks, lengths, sums) == three  # more lost than parity: nothing rebuilt
    with pytest.raises(FormatError, match="fails its checksum"):
        parity.rebuild([None, *packets[1:]], parity.encode([b"x" * len(packets[0]), *packets[1:]], 2), lengths, sums)
    with pytest.raises(FormatError, match="differ in length"):
        parity.rebuild([None, *packets[1:]], [checks[0] + b"\0", None], lengths, sums)


def test_parity_count():
    assert [parity.parity_count(n, 0.25) for n in (1, 12, 16, 18)] == [1, 3, 4, 5]
    assert parity.parity_count(10, 1.0) == 10 and parity.parity_count(30, 0.1) == 3  # no float round-up
    for fraction in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(InputError, match=r"\(0, 1\]"):
            parity.parity_count(10, fraction)
    with pytest.raises(InputError, match="exceed 256"):
        parity.parity_count(200, 0.5)


def test_protected_file_decodes_like_the_plain_one_and_rebuilds_lost_packets(tiny_ladder, image, protected):
    info = codec.info(protected)
    assert info["packet_parity"] == 3 and [n for n in info["streams"] if n.startswith("f")] == ["f0", "f1", "f2"]
    clean = codec.decode(protected, weights=tiny_ladder)
    assert np.array_equal(clean, codec.decode(codec.encode(image, model="vqgan", quality=3, weights=tiny_ladder), weights=tiny_ladder))
    for lost in (["p0", "p5", "p11"], ["p3", "f0", "f2"], ["f1"]):
        damaged = resilient.erase(protected, lost)
        assert codec.info(damaged)["lost_packets"] == lost
        if any(n.startswith("p") for n in lost):
            with pytest.warns(api.LostPackets, match="rebuilt exactly"):
                assert np.array_equal(codec.decode(damaged, weights=tiny_ladder), clean)
        else:  # only parity lost: nothing to say
            with warnings.catch_warnings():
                warnings.simplefilter("error", api.LostPackets)
                assert np.array_equal(codec.decode(damaged, weights=tiny_ladder), clean)
    with pytest.warns(api.LostPackets, match="3 of 12 packets lost; their indices were filled"):
        codec.decode(resilient.erase(protected, ["p0", "p1", "p2", "f0"]), weights=tiny_ladder, recover=False)


def test_damage_loses_parity_packets_too(protected):
    lost = set().union(*(container.unpack(api.damage(protected, 0.2, seed=s), erasable=resilient.is_erasable).missing for s in range(8)))
    assert any(n.startswith("f") for n in lost) and any(n.startswith("p") for n in lost)
    assert all(len(container.unpack(api.damage(protected, 0.2, seed=s), erasable=resilient.is_erasable).missing) == 3 for s in range(3))


def test_independent_losses_vary_in_number_and_are_deterministic(protected):
    counts = [len(container.unpack(api.damage(protected, 0.2, seed=s, independent=True), erasable=resilient.is_erasable).missing)
              for s in range(40)]
    assert len(set(counts)) > 2 and 1.5 < np.mean(counts) < 4.5  # 15 packets, p = 0.2: 3 on average
    assert api.damage(protected, 0.2, seed=3, independent=True) == api.damage(protected, 0.2, seed=3, independent=True)
    assert api.damage(protected, 0.0, seed=3, independent=True) == protected
    assert len(container.unpack(api.damage(protected, 1.0, independent=True), erasable=resilient.is_erasable).missing) == 15


def test_truncation_eats_the_parity_first(tiny_ladder, protected):
    cut = protected[: container.unpack(protected).spans["f1"][0] + 5]
    assert codec.info(cut)["lost_packets"] == ["f1", "f2"]
    assert np.array_equal(codec.decode(cut, weights=tiny_ladder), codec.decode(protected, weights=tiny_ladder))


def test_inconsistent_parity_headers_fail(tiny_ladder, protected):
    c = container.unpack(protected)
    for meta, streams in (({**c.meta, "packet_parity": 2}, c.streams), ({**c.meta, "packet_parity": "3"}, c.streams),
                          (c.meta, [(n, s) for n, s in c.streams if n != "f1"]),
                          ({k: v for k, v in c.meta.items() if k != "packet_parity"}, c.streams)):
        bad = container.pack(container.Container(kind=c.kind, model=c.model, shape=c.shape, dtype=c.dtype, streams=streams, meta=meta))
        with pytest.raises(FormatError, match="parity packets"):
            codec.decode(bad, weights=tiny_ladder)


def test_absurd_parity_counts_fail_before_allocating(tiny_ladder, protected):
    c = container.unpack(protected)
    for count in (10**15, -1):
        bad = container.pack(container.Container(kind=c.kind, model=c.model, shape=c.shape, dtype=c.dtype, streams=c.streams,
                                                 meta={**c.meta, "packet_parity": count}))
        with pytest.raises(FormatError, match="parity packets"):
            codec.decode(bad, weights=tiny_ladder)


def test_more_blocks_than_the_code_allows_fail_cleanly():
    with pytest.raises(FormatError, match="not a valid parity code"):
        parity.rebuild([None] + [b"x"] * 255, [b"y"], [1] * 256, [zlib.crc32(b"x")] * 256)
    streams = [(f"p{i}", b"x") for i in range(300)] + [("f0", b"y")]
    forged = container.unpack(container.pack(container.Container(kind="image", model={}, shape=[8, 8, 3], dtype="uint8", streams=streams,
                                                                 meta={"packet_parity": 1})))
    with pytest.raises(FormatError, match="not a valid parity code"):
        resilient.received_packets(forged)


def test_too_many_packets_for_the_code_fail_before_coding(tiny_ladder, image, monkeypatch):
    tall = np.concatenate([image] * 7, 0)  # 560 x 72: 140 x 18 tokens, 140 packets of one row's worth
    monkeypatch.setattr(VQGANCluster, "compress", lambda *a, **k: pytest.fail("coded before checking the packet count"))
    with pytest.raises(InputError, match="exceed 256"):
        codec.encode(tall, model="vqgan", quality=2, weights=tiny_ladder, packet_rows=1, packet_parity=1.0)


def test_cli_parity_and_bad_arguments(tiny_ladder, image, tmp_path, capsys):
    src, out = tmp_path / "in.png", tmp_path / "a.bin"
    Image.fromarray(image).save(src)
    base = ["encode", str(src), "-o", str(out), "--model", "vqgan", "--level", "2", "--weights", str(tiny_ladder)]
    assert main([*base, "--packet-rows", "2", "--parity", "0.5"]) == 0
    assert json.loads(capsys.readouterr().out)["packet_parity"] == 6
    assert main(["damage", str(out), "-o", str(tmp_path / "d.bin"), "--drop", "0.3", "--seed", "1"]) == 0
    assert main(["damage", str(out), "-o", str(tmp_path / "i.bin"), "--drop", "0.3", "--seed", "1", "--iid"]) == 0
    assert (tmp_path / "i.bin").read_bytes() == api.damage(out.read_bytes(), 0.3, seed=1, independent=True)
    assert main(["decode", str(tmp_path / "d.bin"), "-o", str(tmp_path / "d.png"), "--weights", str(tiny_ladder)]) == 0
    assert "rebuilt exactly" in capsys.readouterr().err
    before = sorted(tmp_path.iterdir())
    for extra, message in ((["--parity", "0.2"], r"packet_parity \(--parity\) needs packet_rows \(--packet-rows\)"), (["--packet-rows", "2", "--parity", "0"], r"\(0, 1\]"),
                           (["--packet-rows", "2", "--parity", "2"], r"\(0, 1\]")):
        assert main([*base, "-f", *extra]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and re.search(message, err) and sorted(tmp_path.iterdir()) == before
    with pytest.raises(InputError, match="apply to images"):
        codec.encode(xr.Dataset({"t": (("lat", "lon"), np.zeros((4, 4), np.float32))}), packet_parity=0.25)
