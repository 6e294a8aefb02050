"""Resilient VQGAN-cluster files: packets, the lossy-channel simulator, naive fill and recovery."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import safetensors.torch
import torch
import xarray as xr
from PIL import Image

import codec
from codec import api, catalog, container, registry
from codec.checkpoint import read_metadata, save_weights
from codec.cli import main
from codec.errors import CorruptStreamError, FormatError, InputError, ModelError
from codec.image import resilient
from codec.models.recovery import TINY, RecoveryTransformer, interpolate_holes, load_recovery
from codec.training.recovery import PIXEL_WEIGHT, IndexCrops, RecoveryTask, packet_loss_mask, random_mask


@pytest.fixture(scope="module")
def image():
    y, x = np.mgrid[0:80, 0:72].astype(np.float32)
    return (np.stack([np.sin(x / 7) * 0.4 + 0.5, y / 80, (x + y) / 152], 2) * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def recovery_weights(tiny_ladder, tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("rec") / "recovery.safetensors"
    loaded = registry.load("vqgan", 1, tiny_ladder)
    net = RecoveryTransformer.for_ladder(loaded.model.ladder, TINY)
    torch.nn.init.normal_(net.head.weight, std=0.1)  # as if trained: not just the interpolation
    save_weights(net, path, {"model": "recovery", "config": TINY.to_dict(), "ladder_hash": loaded.weights_hash})
    return path


def test_clean_resilient_file_decodes_like_the_plain_one(tiny_ladder, image):
    plain = codec.encode(image, model="vqgan", quality=3, weights=tiny_ladder)
    packed = codec.encode(image, model="vqgan", quality=3, weights=tiny_ladder, packet_rows=3)
    info = codec.info(packed)
    assert info["packet_rows"] == 3 and info["packet_lattice"] == 2 and "lost_packets" not in info
    # 20 x 18 tokens: 2 x 2 sub-grids of 10 rows, in bands of 6 of their rows (2 bands x 4 sub-grids)
    assert sorted(info["streams"]) == sorted([f"p{i}" for i in range(8)] + ["tone"])
    assert np.array_equal(codec.decode(plain, weights=tiny_ladder), codec.decode(packed, weights=tiny_ladder))


def test_row_layout_files_from_before_the_dispersed_layout_still_decode(tiny_ladder, image):
    rows = codec.encode(image, model="vqgan", quality=3, weights=tiny_ladder, packet_rows=3, packet_lattice=1)
    info = codec.info(rows)
    assert "packet_lattice" not in info and sorted(info["streams"]) == sorted([f"p{i}" for i in range(7)] + ["tone"])  # 20 rows / 3
    plain = codec.encode(image, model="vqgan", quality=3, weights=tiny_ladder)
    assert np.array_equal(codec.decode(plain, weights=tiny_ladder), codec.decode(rows, weights=tiny_ladder))
    with pytest.warns(api.LostPackets, match="2 of 7"):
        assert codec.decode(api.damage(rows, 0.3, seed=0), weights=tiny_ladder, recover=False).shape == image.shape


@pytest.mark.parametrize(("height", "width", "rows", "lattice"), [(20, 18, 2, 2), (7, 5, 1, 2), (9, 1, 2, 3), (5, 6, 4, 1), (1, 1, 1, 2)])
def test_packet_layout_covers_every_position_once(height, width, rows, lattice):
    layout = resilient.PacketLayout(rows, lattice)
    count = torch.zeros(height, width, dtype=torch.long)
    for r, c in layout.slices(height, width):
        assert count[r, c].numel() > 0
        count[r, c] += 1
    assert bool((count == 1).all())
    assert resilient.PacketLayout.from_meta(layout.meta()) == layout


def test_packet_layout_rejects_bad_headers_and_arguments():
    for meta in ({}, {"packet_rows": 0}, {"packet_rows": 2, "packet_lattice": 0}, {"packet_rows": True}, {"packet_rows": 2, "packet_lattice": "2"},
                 {"packet_rows": 2, "packet_lattice": resilient.MAX_LATTICE + 1}):
        with pytest.raises(FormatError, match="packet layout"):
            resilient.PacketLayout.from_meta(meta)
    for rows, lattice in ((0, 1), (1, 0), (1, resilient.MAX_LATTICE + 1)):
        with pytest.raises(InputError, match="packet rows must be >= 1"):
            resilient.PacketLayout(rows, lattice)
    for rows, lattice in ((True, 1), (2.5, 1), ("2", 1), (2, 2.0)):
        with pytest.raises(InputError, match="must be an integer"):
            resilient.PacketLayout(rows, lattice)
    layout = resilient.PacketLayout(np.int64(2), np.int32(3))  # numpy integers are plain ints in the header
    assert layout.meta() == {"packet_rows": 2, "packet_lattice": 3} and type(layout.rows) is int
    assert [n for n in ("p0", "p12", "p01", "p", "p\u0663", "f0") if resilient.is_packet(n)] == ["p0", "p12"]


def test_packet_settings_through_the_api(tiny_ladder, image):
    with pytest.raises(InputError, match="must be an integer"):
        codec.encode(image, model="vqgan", quality=2, weights=tiny_ladder, packet_rows=True)
    assert codec.encode(image, model="vqgan", quality=2, weights=tiny_ladder, packet_rows=np.int64(2)) == \
        codec.encode(image, model="vqgan", quality=2, weights=tiny_ladder, packet_rows=2)
    with pytest.raises(InputError, match=r"\(0, 1\]"):
        codec.encode(image, model="vqgan", quality=2, weights=tiny_ladder, packet_rows=2, packet_parity=True)


def test_packet_header_on_a_model_without_packets_fails(tiny_weights, image):
    c = container.unpack(codec.encode(image, weights=tiny_weights))  # McQuic: no resilient packets
    streams = [(f"p{i}", data) for i, (_, data) in enumerate(c.streams)]
    forged = container.pack(dataclasses.replace(c, streams=streams, meta={**c.meta, "packet_rows": 2}))
    with pytest.raises(FormatError, match="has none"):
        codec.decode(forged, weights=tiny_weights)


def test_packet_lattice_is_chosen_by_the_caller(tiny_ladder, image, tmp_path, capsys):
    data = codec.encode(image, model="vqgan", quality=3, weights=tiny_ladder, packet_rows=2, packet_lattice=3)
    assert codec.info(data)["packet_lattice"] == 3
    plain = codec.encode(image, model="vqgan", quality=3, weights=tiny_ladder)
    assert np.array_equal(codec.decode(data, weights=tiny_ladder), codec.decode(plain, weights=tiny_ladder))
    with pytest.raises(InputError, match=r"packet_lattice \(--packet-lattice\) needs packet_rows"):
        codec.encode(image, model="vqgan", quality=3, weights=tiny_ladder, packet_lattice=2)
    climate = xr.Dataset({"t": (("lat", "lon"), np.zeros((4, 4), np.float32))})
    with pytest.raises(InputError, match="apply to images"):
        codec.encode(climate, packet_lattice=2)
    src, out, bad = tmp_path / "in.png", tmp_path / "rows.bin", tmp_path / "bad.bin"
    Image.fromarray(image).save(src)
    args = ["encode", str(src), "--model", "vqgan", "--level", "3", "--packet-rows", "2", "--weights", str(tiny_ladder), "-q"]
    assert main([*args, "-o", str(out), "--packet-lattice", "1"]) == 0
    assert "packet_lattice" not in codec.info(out.read_bytes())
    capsys.readouterr()
    assert main([*args, "-o", str(bad), "--packet-lattice", "99"]) == 1
    err = capsys.readouterr().err
    assert "lattice in 1..16" in err and err.count("\n") == 1 and not bad.exists()


def test_damage_is_deterministic_and_only_touches_packets(tiny_ladder, image):
    data = codec.encode(image, model="vqgan", quality=2, weights=tiny_ladder, packet_rows=2)
    a, b, c = api.damage(data, 0.3, seed=4), api.damage(data, 0.3, seed=4), api.damage(data, 0.3, seed=5)
    assert a == b and a != c and len(a) == len(data)
    lost = container.unpack(a, erasable=resilient.is_packet).missing
    assert len(lost) == 4  # round(0.3 * 12)
    assert api.damage(data, 0.0, seed=1) == data
    assert len(container.unpack(api.damage(data, 1.0), erasable=resilient.is_packet).missing) == 12
    with pytest.raises(CorruptStreamError):
        container.unpack(a)  # a strict reader still refuses the damaged file
    with pytest.raises(InputError, match="no index packets"):
        api.damage(codec.encode(image, model="vqgan", quality=2, weights=tiny_ladder), 0.1)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        api.damage(data, 1.5)


def test_damaging_a_damaged_file_loses_more_and_never_heals(tiny_ladder, image):
    data = codec.encode(image, model="vqgan", quality=2, weights=tiny_ladder, packet_rows=2)
    once = api.damage(data, 0.3, seed=4)
    first = container.unpack(once, erasable=resilient.is_packet).missing
    for seed in (4, 5):  # a second hop loses round(0.3 x the 8 intact packets) more, whatever the seed
        second = container.unpack(api.damage(once, 0.3, seed=seed), erasable=resilient.is_packet).missing
        assert first < second and len(second) == 4 + 2
    assert resilient.erase(once, sorted(first)) == once  # erasing a lost packet again keeps it lost
    assert api.damage(api.damage(data, 1.0), 0.5, seed=1) == api.damage(data, 1.0)  # nothing left to lose
    with pytest.raises(InputError, match="no packet named"):
        resilient.erase(data, ["p99"])


def test_lost_packets_are_filled_and_clean_rows_kept(tiny_ladder, recovery_weights, image):
    data = codec.encode(image, model="vqgan", quality=3, weights=tiny_ladder, packet_rows=2)
    damaged = api.damage(data, 0.4, seed=0)
    with pytest.warns(api.LostPackets, match="most frequent codeword"):
        naive = codec.decode(damaged, weights=tiny_ladder, recover=False)
    with pytest.warns(api.LostPackets, match="recovery transformer"):
        recovered = codec.decode(damaged, weights=tiny_ladder, recovery_weights=recovery_weights)
    assert naive.shape == recovered.shape == image.shape
    # indices of intact packets are untouched: recovered index maps agree on every known row
    net = registry.load("vqgan", 3, tiny_ladder).model
    c = container.unpack(damaged, erasable=resilient.is_packet)
    strings = [None if n in c.missing else c.stream(n) for n, _ in c.streams if resilient.is_packet(n)]
    idx, known = resilient.decode_packets(net.level(3), strings, 20, 18, resilient.PacketLayout(2, 2))
    assert 0 < int((~known).sum()) < known.numel()
    rec, ladder_hash = load_recovery(recovery_weights)
    assert ladder_hash == registry.load("vqgan", 1, tiny_ladder).weights_hash
    out, points = rec.recover(idx, known, 3)
    assert torch.equal(out[known], idx[known]) and int(out.max()) < 16
    assert torch.equal(points[known], rec.words(3)[idx[known]])
    # the decoder input: received codewords exactly as the ladder gives them, restored points elsewhere
    latent = rec.restore(idx, known, 3)
    assert torch.allclose(latent[0].permute(1, 2, 0)[known], net.level(3).latent(idx[None])[0].permute(1, 2, 0)[known], atol=1e-5)
    filled = resilient.naive_fill(net.level(3), idx, known)
    assert torch.equal(filled[known], idx[known]) and len(filled[~known].unique()) == 1


def test_recovered_decode_ignores_the_callers_thread_count(tiny_ladder, recovery_weights, image):
    # 160 x 144 pixels, 40 x 36 tokens: large enough that running the networks with 1 or 2 threads
    # changes last bits of the decode (measured: CODEC_THREADS=1 vs 2 differ by 1 level), so only the
    # codec's own fixed thread count makes these equal
    big = np.concatenate([np.concatenate([image, image[::-1]], 0)] * 2, 1)
    damaged = api.damage(codec.encode(big, model="vqgan", quality=3, weights=tiny_ladder, packet_rows=2), 0.3, seed=2)
    previous, decodes = torch.get_num_threads(), []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            with pytest.warns(api.LostPackets):
                decodes.append(codec.decode(damaged, weights=tiny_ladder, recovery_weights=recovery_weights))
    finally:
        torch.set_num_threads(previous)
    assert np.array_equal(*decodes)


def test_shipped_recovery_is_listed_and_used_by_default(tiny_ladder, recovery_weights, image, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(catalog, "CHECKPOINTS", tmp_path)
    (tmp_path / "vqgan.safetensors").write_bytes(tiny_ladder.read_bytes())
    damaged = api.damage(codec.encode(image, model="vqgan", quality=2, packet_rows=2), 0.3, seed=1)
    with pytest.warns(api.LostPackets, match="most frequent codeword"):  # no recovery weights shipped
        codec.decode(damaged)
    (tmp_path / registry.get_spec("vqgan").recovery).write_bytes(recovery_weights.read_bytes())
    with pytest.warns(api.LostPackets, match="recovery transformer"):
        recovered = codec.decode(damaged)
    with pytest.warns(api.LostPackets):
        assert np.array_equal(recovered, codec.decode(damaged, recovery_weights=recovery_weights))
    assert main(["models"]) == 0 and "lost-index recovery" in capsys.readouterr().out


def test_recovery_weights_must_match_the_ladder(tiny_ladder, recovery_weights, tmp_path, image):
    other = tmp_path / "other.safetensors"
    save_weights(RecoveryTransformer(TINY), other, {"model": "recovery", "config": TINY.to_dict(), "ladder_hash": "0" * 16})
    damaged = api.damage(codec.encode(image, model="vqgan", quality=1, weights=tiny_ladder, packet_rows=4), 0.5)
    with pytest.raises(ModelError, match="trained for vqgan weights"):
        codec.decode(damaged, weights=tiny_ladder, recovery_weights=other)
    for data in (damaged, codec.encode(image, model="vqgan", quality=1, weights=tiny_ladder)):  # checked on clean files too
        with pytest.raises(ModelError, match="not found"):
            codec.decode(data, weights=tiny_ladder, recovery_weights=tmp_path / "none.safetensors")


def test_forged_recovery_config_fails_before_building(recovery_weights, tmp_path, monkeypatch):
    tensors = safetensors.torch.load_file(str(recovery_weights))
    meta = read_metadata(recovery_weights)

    def refuse(*args, **kwargs):
        raise AssertionError("network built from a config that does not match the stored tensors")

    monkeypatch.setattr(RecoveryTransformer, "__init__", refuse)
    for change in ({"dim": 1 << 20, "heads": 1}, {"depth": 100_000}, {"sizes": [4, 8, 1 << 30]}):
        forged = tmp_path / "forged.safetensors"
        safetensors.torch.save_file(tensors, str(forged), {**meta, "config": json.dumps({**TINY.to_dict(), **change})})
        with pytest.raises(ModelError, match="do not load"):
            load_recovery(forged)


def test_cli_damage_decode_and_bad_input(tiny_weights, tiny_ladder, recovery_weights, tmp_path, image, capsys):
    src = tmp_path / "in.png"
    Image.fromarray(image).save(src)
    enc, dmg = tmp_path / "a.bin", tmp_path / "d.bin"
    assert main(["encode", str(src), "-o", str(enc), "--model", "vqgan", "--level", "2", "--packet-rows", "2", "--weights", str(tiny_ladder), "-q"]) == 0
    assert main(["damage", str(enc), "-o", str(dmg), "--drop", "0.2", "--seed", "3"]) == 0
    assert main(["info", str(dmg)]) == 0
    assert len(json.loads(capsys.readouterr().out)["lost_packets"]) == 2
    out = tmp_path / "d.png"
    assert main(["decode", str(dmg), "-o", str(out), "--weights", str(tiny_ladder), "--recovery-weights", str(recovery_weights)]) == 0
    assert "2 of 12 packets lost" in capsys.readouterr().err and out.exists()
    assert main(["decode", str(dmg), "-o", str(tmp_path / "n.png"), "--weights", str(tiny_ladder), "--no-recover"]) == 0
    assert "most frequent" in capsys.readouterr().err
    # a damaged header fails cleanly, with no output
    broken = bytearray(dmg.read_bytes())
    broken[12] ^= 0xFF
    (tmp_path / "h.bin").write_bytes(bytes(broken))
    assert main(["decode", str(tmp_path / "h.bin"), "-o", str(tmp_path / "h.png"), "--weights", str(tiny_ladder)]) == 1
    err = capsys.readouterr().err
    assert "header" in err and err.count("\n") == 1 and not (tmp_path / "h.png").exists()
    assert main(["encode", str(src), "-o", str(tmp_path / "m.bin"), "--weights", str(tiny_weights), "--packet-rows", "2"]) == 1
    assert "resilient packets (vqgan), not mcquic" in capsys.readouterr().err
    assert main(["damage", str(enc), "-o", str(enc), "--drop", "0.1"]) == 1  # never overwrites the input
    assert "overwrite the input" in capsys.readouterr().err


def test_truncated_and_fully_lost_files(tiny_ladder, image):
    data = codec.encode(image, model="vqgan", quality=2, weights=tiny_ladder, packet_rows=2)
    c = container.unpack(data)
    cut = c.spans["p9"][0] + 3  # the file ends inside packet 9: packets 9-11 are lost
    with pytest.warns(api.LostPackets, match="3 of 12 packets lost"):
        out = codec.decode(data[:cut], weights=tiny_ladder, recover=False)
    assert out.shape == image.shape
    assert codec.info(data[:cut])["lost_packets"] == ["p9", "p10", "p11"]
    with pytest.raises(CorruptStreamError, match="all 12 packets are lost"):
        codec.decode(api.damage(data, 1.0), weights=tiny_ladder)
    with pytest.raises(CorruptStreamError):
        codec.decode(data[: c.spans["p0"][0] - 2], weights=tiny_ladder)  # cut inside the header


def test_masks_and_batches():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        known = random_mask(8, 8, g)
        assert known.dtype == torch.bool and not known.all()
    known = packet_loss_mask(10, 4, 0.0, resilient.PacketLayout(2), g)  # always at least one packet lost
    assert (~known).sum() in (4, 8) and all(bool(known[r].all()) or not bool(known[r].any()) for r in range(10))
    known = packet_loss_mask(10, 4, 0.0, resilient.PacketLayout(2, 2), g)  # a dispersed packet: every other token
    lost = (~known).nonzero()
    assert len(lost) in (8, 2) and len({(int(r) % 2, int(c) % 2) for r, c in lost}) == 1
    maps = {2: [torch.randint(8, (5, 7))], 3: [torch.randint(16, (9, 9))]}
    crops = IndexCrops(maps, 6, seed=0)
    batch = crops.batch(3)
    assert batch.shape == (3, 3, 6, 6) and set(batch[:, 2].unique().tolist()) <= {2, 3}
    assert len(batch[:, 2].unique()) == 1


def test_recovery_holds_the_ladder_codewords_and_scores_by_distance(tiny_ladder):
    ladder = registry.load("vqgan", 1, tiny_ladder).model.ladder
    net = RecoveryTransformer.for_ladder(ladder, TINY).eval()
    lv = ladder[1]
    all_words = torch.cat([v.post_quant_conv(v.codebook[:, :, None, None])[:, :, 0, 0].detach() for v in ladder])
    held = net.codewords[4:12]  # level 2 follows level 1's 4 codewords
    words = lv.post_quant_conv(lv.codebook[:, :, None, None])[:, :, 0, 0].detach()
    assert torch.allclose(held, words / all_words.std(), atol=1e-5)  # the decoder's codewords, at unit scale
    # logits are negative squared distances (times the level's sharpness) up to a per-position constant
    net.head.bias.data.copy_(held[5])
    net.head.weight.data.zero_()
    logits = net(torch.zeros(1, 3, 3, dtype=torch.long), torch.zeros(1, 3, 3, dtype=torch.bool), 2)[0]
    expected = -(held - held[5]).square().sum(1) / held.shape[1]
    assert torch.allclose(logits[0, 1, 1] - logits[0, 1, 1, 5], expected, atol=1e-4) and int(logits[0, 0, 0].argmax()) == 5
    with pytest.raises(ValueError, match="codebook sizes"):
        RecoveryTransformer.for_ladder(ladder[:2], TINY)
    with pytest.raises(ValueError, match="channels"):
        RecoveryTransformer.for_ladder(ladder, dataclasses.replace(TINY, code_dim=4))


def test_interpolate_holes_fills_from_received_neighbours_inwards():
    values = torch.arange(6 * 5, dtype=torch.float32).view(1, 6, 5, 1) * torch.tensor([1.0, -2.0])  # [1, 6, 5, 2]
    known = torch.ones(1, 6, 5, dtype=torch.bool)
    known[0, 1, 1] = False  # an isolated hole: the mean of its 8 neighbours
    known[0, 3:6, 2:5] = False  # a 3 x 3 hole in the corner: its inner corner only sees filled positions
    out = interpolate_holes(values, known)
    assert torch.equal(out[known], values[known])
    assert torch.allclose(out[0, 1, 1], values[0, 0:3, 0:3].reshape(-1, 2)[[0, 1, 2, 3, 5, 6, 7, 8]].mean(0))
    ring = [(2, 1), (2, 2), (2, 3), (3, 1), (4, 1)]  # received neighbours of (3, 2)
    assert torch.allclose(out[0, 3, 2], torch.stack([values[0, r, c] for r, c in ring]).mean(0))
    assert torch.allclose(out[0, 5, 4], torch.stack([out[0, 4, 3], out[0, 4, 4], out[0, 5, 3]]).mean(0))  # second pass
    assert torch.equal(interpolate_holes(values, torch.zeros_like(known)), torch.zeros_like(values))


def test_fresh_network_starts_from_the_interpolation(tiny_ladder):
    ladder = registry.load("vqgan", 1, tiny_ladder).model.ladder
    net = RecoveryTransformer.for_ladder(ladder, TINY).eval()
    idx = torch.randint(16, (1, 6, 4))
    known = torch.rand(1, 6, 4) > 0.4
    known[0, 2:4] = False  # a lost packet of two rows
    logits, point = net(idx, known, 3)
    guess = interpolate_holes(net.words(3)[idx], known)
    assert torch.allclose(point, guess, atol=1e-6)
    distance = torch.cdist(guess[~known], net.words(3))  # midpoints of two codewords tie: compare distances
    best = distance.gather(1, logits[~known].argmax(-1, keepdim=True))[:, 0]
    assert torch.allclose(best, distance.min(1).values, atol=1e-5)  # most probable = nearest to the interpolation


def test_recover_keeps_known_and_fills_all():
    torch.manual_seed(0)
    net = RecoveryTransformer(TINY).eval()
    net.codewords.normal_()
    idx = torch.randint(8, (7, 5))
    known = torch.rand(7, 5) > 0.5
    out, points = net.recover(idx, known, 2, steps=4)
    assert torch.equal(out[known], idx[known]) and int(out.max()) < 8 and int(out.min()) >= 0
    assert points.shape == (7, 5, TINY.code_dim) and torch.equal(points[known], net.words(2)[idx[known]])
    nearest = torch.cdist(points[~known], net.words(2)).argmin(-1)
    assert torch.equal(out[~known], nearest)
    with pytest.raises(ValueError, match="level"):
        net.recover(idx, known, 4)
    # any map size (fixed sinusoidal positions), e.g. far larger than the training windows
    big = net.recover(torch.zeros(70, 3, dtype=torch.long), torch.rand(70, 3) > 0.3, 1, steps=2)[0]
    assert big.shape == (70, 3) and int(big.max()) < 4


def test_large_maps_are_restored_window_by_window(monkeypatch):
    torch.manual_seed(0)
    net = RecoveryTransformer(TINY).eval()
    net.codewords.normal_()
    torch.nn.init.normal_(net.head.weight, std=0.1)
    idx, known = torch.randint(16, (30, 27)), torch.rand(30, 27) > 0.2
    known[:8, :8] = True  # one block with nothing to restore
    whole = net.recover(idx, known, 3)
    windows, single = [], net._recover_window
    monkeypatch.setattr(net, "_recover_window", lambda i, k, level, steps: windows.append(tuple(i.shape)) or single(i, k, level, steps))
    net.window_tokens, net.tile, net.margin = 144, 8, 2
    got, points = net.recover(idx, known, 3)
    busy = sum(not bool(known[r : r + 8, c : c + 8].all()) for r in range(0, 30, 8) for c in range(0, 27, 8))
    assert len(windows) == busy < 16 and max(h * w for h, w in windows) <= 144  # 8 x 8 blocks, 12 x 12 windows at most
    assert torch.equal(got[known], idx[known]) and torch.equal(points[known], net.words(3)[idx[known]])
    with torch.no_grad():  # as recover() runs it
        assert torch.equal(points[8:16, 8:16], single(idx[6:18, 6:18], known[6:18, 6:18], 3, 8)[1][2:10, 2:10])
    assert not torch.equal(points, whole[1])  # windows see less context than the single pass
    net.tile = 32  # one block covering the map: the single pass exactly
    assert all(torch.equal(a, b) for a, b in zip(net.recover(idx, known, 3), whole, strict=True))


def test_pixel_term_compares_decodes_of_restored_and_true_inputs(tiny_ladder):
    task = RecoveryTask(TINY, tiny_ladder)
    net = task.build()
    torch.nn.init.normal_(net.head.weight, std=0.1)
    idx = torch.randint(16, (3, 6, 6))
    known = torch.ones(3, 6, 6, dtype=torch.bool)
    truth = net.words(3)[idx]
    exact = task.pixel_loss(net, truth, truth + 1.0, known)  # every position known: the truth is decoded
    assert float(exact) == 0.0
    known[:, 2:4] = False
    _, point = net(idx, known, 3)
    pixel = task.pixel_loss(net, truth, point, known)
    pixel.backward()
    assert float(pixel) > 0 and net.head.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in task._decoder.parameters())  # the ladder's decoder stays frozen
    loss, metrics = task.loss(net, torch.stack([idx, known.long(), torch.full_like(idx, 3)], 1))
    assert metrics["pixel"] > 0 and torch.isfinite(loss)
    assert RecoveryTask(TINY, tiny_ladder, pixel_weight=0.0).loss(net, torch.stack([idx, known.long(), torch.full_like(idx, 3)], 1))[1]["pixel"] == 0


def test_train_recovery_tiny(tiny_ladder, tmp_path, capsys):
    data = tmp_path / "imgs"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(data / f"{i}.png")
    out = tmp_path / "run"
    args = ["train", "recovery", "--preset", "tiny", "--ladder", str(tiny_ladder), "--data", str(data), "--val", str(data),
            "--out", str(out), "--no-progress", "--threads", "1"]
    assert main(args) == 0
    meta = read_metadata(out / "model.safetensors")
    assert meta["model"] == "recovery" and meta["ladder_hash"] == registry.load("vqgan", 1, tiny_ladder).weights_hash
    assert 0.0 <= json.loads(meta["validation"])["index_acc"] <= 1.0
    assert json.loads(meta["loss"])["pixel_weight"] == PIXEL_WEIGHT
    config = tmp_path / "loss.json"
    for weight, code in ((0, 0), (-1, 1), ("x", 1)):  # no pixel term; invalid weights are refused in one line
        config.write_text(json.dumps({"loss": {"pixel_weight": weight}}))
        assert main(args[:-5] + ["--out", str(tmp_path / f"run{weight}"), "--config", str(config), "--no-progress", "--threads", "1", "--steps", "2"]) == code
    assert json.loads((tmp_path / "run0" / "log.jsonl").read_text().splitlines()[0])["pixel"] == 0
    assert json.loads(read_metadata(tmp_path / "run0" / "model.safetensors")["loss"])["pixel_weight"] == 0
    assert "pixel_weight must be a number >= 0" in capsys.readouterr().err
    # the full configuration does not fit a tiny ladder: one line, before any data is read
    assert main(args[:2] + args[4:] + ["--steps", "1"]) == 1
    assert "codebook sizes" in capsys.readouterr().err


def test_recovery_init_from_another_ladder_takes_the_new_ladders_codewords(tiny_ladder, tmp_path):
    """``--init`` from a recovery network of one ladder, ``--ladder`` another: the trained weights carry over,
    the codeword buffers are the new ladder's (a copy of the old ones would point at the wrong codewords)."""
    from codec.training.recovery import LADDER_BUFFERS
    from tests.conftest import make_ladder

    data = tmp_path / "imgs"
    data.mkdir()
    rng = np.random.default_rng(1)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(data / f"{i}.png")
    common = ["--preset", "tiny", "--data", str(data), "--val", str(data), "--no-progress", "--threads", "1", "--steps", "2"]
    assert main(["train", "recovery", "--ladder", str(tiny_ladder), "--out", str(tmp_path / "a"), *common]) == 0
    other = make_ladder(tmp_path / "other.safetensors", seed=5)
    old = tmp_path / "a" / "model.safetensors"
    assert main(["train", "recovery", "--ladder", str(other), "--init", str(old), "--out", str(tmp_path / "b"), "--lr", "1e-12", *common]) == 0
    first, second = safetensors.torch.load_file(old), safetensors.torch.load_file(tmp_path / "b" / "model.safetensors")
    fresh = RecoveryTransformer.for_ladder(registry.load("vqgan", 1, other).model.ladder, TINY).state_dict()
    for name in LADDER_BUFFERS:
        assert torch.equal(second[name], fresh[name]) and not torch.equal(second[name], first[name])
    assert first["head.weight"].abs().max() > 1e-4  # trained away from its zero initialization ...
    assert torch.allclose(second["head.weight"], first["head.weight"], atol=1e-6)  # ... and carried over
    assert read_metadata(tmp_path / "b" / "model.safetensors")["ladder_hash"] == registry.load("vqgan", 1, other).weights_hash
