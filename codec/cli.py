"""The ``codec`` command: its parser, and the commands encode, decode, pack, damage, info and models
(``codec train`` runs in :mod:`codec.cli_train`).

Every user-facing failure is a :class:`codec.errors.CodecError` (or an OS error) printed as one line
on stderr with exit status 1; usage errors exit with 2 (argparse).  No traceback, no partial file.
"""

from __future__ import annotations

import argparse
import json
import mmap
import sys
import warnings
from pathlib import Path

from . import container, fileio  # light: the standard library only; api (torch, models) loads per command
from .cli_train import cmd_train  # light: the training code (torch) loads per command
from .errors import CodecError, InputError
from .image.packets import is_erasable

EXIT_ERROR = 1


def _cmd_encode(args: argparse.Namespace) -> None:
    fileio.check_output(args.input, args.output, args.force)
    fileio.existing_file(args.input)
    from .video.summary import is_video_path

    if is_video_path(args.input):
        _encode_video(args)
        return
    if args.gop is not None or args.intra_only:
        raise InputError("--gop and --intra-only apply to video inputs")
    from . import api  # torch and the models load only now, after the cheap checks

    progress = not args.quiet and sys.stderr.isatty()
    data = api.encode(
        args.input,
        model=args.model,
        quality=args.quality,
        weights=args.weights,
        max_abs_error=args.max_abs_error,
        progress=progress,
        bpp=args.bpp,
        packet_rows=args.packet_rows,
        packet_lattice=args.packet_lattice,
        packet_parity=args.parity,
        scheduler=_scheduler(args.dask),
        workers=args.workers,
        effort=args.effort,
    )
    fileio.write_atomic(args.output, data)
    if not args.quiet:
        info = api.info(data)
        print(json.dumps(info if info["kind"] == "image" else {k: v for k, v in info.items() if k != "variables"}))


def _encode_video(args: argparse.Namespace) -> None:
    """Stream a clip's GOPs into the output (atomically), then print its description."""
    if args.max_abs_error is not None or args.packet_rows is not None or args.dask is not None or args.effort:
        raise InputError("--max-abs-error, --packet-rows, --dask and --effort do not apply to video")
    from .describe import info
    from .video import clip, io

    probe = io.probe(args.input)
    if probe.has_audio or probe.has_subtitles:
        print("codec: note: audio and subtitle streams are not kept", file=sys.stderr)
    bar = None
    if not args.quiet and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=probe.frame_count, unit="frame", desc="encode", leave=False)
    gops = clip.encode(args.input, args.model, args.quality, args.weights, args.gop or clip.file.DEFAULT_GOP, args.intra_only, bar.update if bar else None, args.bpp)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            for part in gops:
                f.write(part)

    try:
        fileio.write_atomic_with(args.output, write)
    finally:
        if bar is not None:
            bar.close()
    if not args.quiet:
        print(json.dumps(info(Path(args.output).read_bytes())))


def _scheduler(spec: str | None) -> object:
    """None, a dask scheduler name, or a ``distributed.Client`` for a ``tcp://`` scheduler address."""
    if spec is None or spec in ("threads", "processes", "synchronous"):
        return spec
    try:
        from distributed import Client
    except ImportError:
        raise InputError("--dask ADDRESS needs the 'distributed' package (pip install distributed)") from None
    try:
        return Client(spec, timeout=10)
    except (OSError, TimeoutError, ValueError) as exc:
        raise InputError(f"cannot reach the dask scheduler at {spec}: {exc}") from None


def _cmd_encode_many(args: argparse.Namespace) -> None:
    from . import batch  # dask, distributed and torch load inside, only where needed

    result = batch.encode_many(
        args.pattern, args.output, client=args.scheduler, workers=args.workers, steps_per_file=args.steps_per_file, force=args.force,
        progress=not args.quiet and sys.stderr.isatty(), model=args.model, quality=args.quality, weights=args.weights, max_abs_error=args.max_abs_error,
    )
    for name, message in result.failed:
        print(f"{name}: {message}", file=sys.stderr)
    if not args.quiet:
        print(result.summary())
    if not result.ok:
        raise InputError(f"{len(result.failed)} of {len(result.failed) + len(result.encoded) + len(result.skipped)} failed")


def _cmd_decode(args: argparse.Namespace) -> None:
    fileio.check_output(args.input, args.output, args.force)
    from .video.summary import mapped_video

    video = mapped_video(args.input) if args.entry is None else None
    if video is not None:
        _decode_video(video, args)  # mapped, not read: one GOP in memory at a time
        return
    source = _decode_source(args.input, args.entry)
    c = container.unpack(source, erasable=is_erasable)  # parsed once, decoded below
    if c.kind == "image":  # refuse an unwritable suffix before decoding
        from .image.io import output_format

        output_format(args.output)
    import numpy as np

    from . import api

    with warnings.catch_warnings(record=True) as notes:
        warnings.simplefilter("always", api.LostPackets)
        decoded = api.decode(c, weights=args.weights, recover=not args.no_recover, recovery_weights=args.recovery_weights)
    for note in notes:
        if issubclass(note.category, api.LostPackets):
            print(f"codec: note: {note.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(note.message, note.category, note.filename, note.lineno)
    if isinstance(decoded, np.ndarray):
        fileio.write_atomic(args.output, api.image_bytes(decoded, args.output))
        return
    from .climate import writer

    writer.write_netcdf(decoded, args.output)


def _decode_video(data: bytes | mmap.mmap, args: argparse.Namespace) -> None:
    """Decode a video file GOP by GOP into a video file or a folder of PNGs (by the output's suffix)."""
    from .video import io

    io.output_format(args.output)  # refuse an unwritable suffix before decoding
    from .video.clip import VideoFrames

    frames = VideoFrames(data, args.weights)
    bar = None
    if not args.quiet and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=len(frames), unit="frame", desc="decode", leave=False)
    from .video.file import DamagedFrames

    try:
        with warnings.catch_warnings(record=True) as notes, io.FrameWriter(args.output, frames.fps, frames.width, frames.height) as writer:
            warnings.simplefilter("always", DamagedFrames)
            for frame in frames:
                writer.write(frame)
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    for note in notes:
        print(f"codec: note: {note.message}", file=sys.stderr)


def _decode_source(path: str, entry: str | None) -> bytes:
    """The codec file to decode: ``path`` itself, or entry ``entry`` of the image pack at ``path``."""
    from .image import pack

    if not pack.is_pack(path):
        if entry is not None:
            raise InputError(f"--entry reads image packs (codec pack); {path} is not one")
        return fileio.read_input(path)
    if entry is None:
        raise InputError(f"{path} is an image pack: decode one image with --entry NAME (`codec info` lists them), or read them all with codec.ImageArchive")
    return pack.entry_bytes(path, entry)


def _cmd_pack(args: argparse.Namespace) -> None:
    from .image import packer

    def progress(done: int, total: int, name: str) -> None:
        print(f"\r[{done}/{total}] {name}\033[K", end="" if done < total else "\n", file=sys.stderr, flush=True)

    summary = packer.pack(
        args.input, args.output, model=args.model, quality=args.quality, bpp=args.bpp, weights=args.weights,
        append=args.append, force=args.force, progress=progress if not args.quiet and sys.stderr.isatty() else None,
    )
    if not args.quiet:
        print(json.dumps(summary))


def _cmd_damage(args: argparse.Namespace) -> None:
    fileio.check_output(args.input, args.output, args.force)
    data = fileio.read_input(args.input)
    container.require_magic(data)
    from . import api

    fileio.write_atomic(args.output, api.damage(data, args.drop, args.seed, args.iid))


def _cmd_info(args: argparse.Namespace) -> None:
    from .describe import info_file  # header and tables only: no torch, no model

    print(json.dumps(info_file(args.input), indent=2))


def _cmd_models(args: argparse.Namespace) -> None:
    from .catalog import list_models  # file sizes and safetensors headers only: no torch, no model

    rows = list_models()
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        levels = ", ".join(f"q{q['quality']} {q['size_mb']:.1f} MB" for q in row["qualities"])
        if row["ladder"] and row["qualities"]:
            q = row["qualities"]
            levels = f"levels {q[0]['quality']}..{q[-1]['quality']} in one {q[0]['size_mb']:.1f} MB file"
        if "recovery_mb" in row:
            levels += f", lost-index recovery {row['recovery_mb']:.1f} MB"
        print(f"{row['name']:<10} {row['kind']:<6} {row['description']}  [{levels or 'no shipped weights'}]")


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``codec`` command."""
    parser = argparse.ArgumentParser(prog="codec", description="Learned compression for images and climate data (netCDF, GRIB).")
    sub = parser.add_subparsers(dest="command", required=True)

    enc = sub.add_parser("encode", help="compress an image, a video or a climate dataset")
    enc.add_argument("input", help="8-bit PNG/JPEG/WebP/TIFF image, a video (.mp4/.mkv/.webm/.avi/.y4m), or a netCDF/GRIB climate file")
    enc.add_argument("-o", "--output", required=True, help="compressed file to write")
    enc.add_argument("--model", default=None, help="model name (default: mcquic for images and video, vaeformer for climate; video: mcquic or vqgan); see `codec models`")
    enc.add_argument(
        "--quality", "--level", dest="quality", type=_positive_int, default=None,
        help="quality level 1..N (higher = better, more bits); for vqgan the ladder level (1 = 8 codewords ... 9 = 2048)",
    )
    enc.add_argument(
        "--bpp",
        type=float,
        default=None,
        help="ladder models (mcquic, vqgan): the highest level whose file is at most this many bits per pixel "
        "(video: each GOP at the highest level that keeps the file so far within it)",
    )
    enc.add_argument(
        "--weights", default=None,
        help="weights to use instead of the shipped ones: codec safetensors, or an official McQuic .mcquic or CRA5 .pth checkpoint",
    )
    enc.add_argument(
        "--max-abs-error",
        default=None,
        help="climate only: guaranteed pointwise bound, one number for all variables or NAME=E,... (e.g. t=0.1,z=10)",
    )
    enc.add_argument(
        "--packet-rows", type=_positive_int, default=None,
        help="vqgan: resilient file of independently decodable packets of about N token rows worth of indices each (interleaved 2 x 2)",
    )
    enc.add_argument(
        "--packet-lattice", type=_positive_int, default=None,
        help="with --packet-rows: interleave packets N x N (default 2; 1 = packets of whole token rows, the layout of older files)",
    )
    enc.add_argument(
        "--parity", type=float, default=None, metavar="FRACTION",
        help="with --packet-rows: add Reed-Solomon parity packets, FRACTION of the packet count (rounded up); "
        "any that many lost packets are rebuilt exactly (0.25 covers 20%% loss)",
    )
    enc.add_argument(
        "--dask", default=None,
        help="climate: code fields in parallel with dask: threads, processes, or a distributed scheduler address (tcp://...)",
    )
    enc.add_argument("--workers", type=_positive_int, default=2, help="climate with --dask: fields coded at a time")
    enc.add_argument("--gop", type=_positive_int, default=None, help="video: intra period in frames (default 32); decoding can start at every GOP")
    enc.add_argument("--intra-only", action="store_true", help="video: code every frame on its own (no temporal prior)")
    enc.add_argument(
        "--effort", type=_non_negative_int, default=0, metavar="N",
        help="mcquic images: search the indices against the decoder for N steps (slower encode, better PSNR at about "
        "the same size; decode unchanged; default 0)",
    )
    enc.add_argument("-f", "--force", action="store_true", help="overwrite OUTPUT if it exists")
    enc.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    enc.set_defaults(func=_cmd_encode)

    many = sub.add_parser(
        "encode-many", help="compress many files on dask.distributed: images to OUTDIR/<stem>.bin, netCDF/GRIB to OUTDIR/<stem>.cra (resumable)"
    )
    many.add_argument("pattern", metavar="GLOB", help="quoted glob of input files, e.g. 'data/**/*.nc' (** recurses)")
    many.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder of the outputs (created if missing)")
    many.add_argument("--workers", type=_positive_int, default=None, help="local worker processes (default: CPUs / CODEC_THREADS)")
    many.add_argument("--scheduler", default=None, metavar="ADDRESS", help="run on an existing dask cluster (tcp://...) instead of a local one")
    many.add_argument("--model", default=None, help="model name, as for encode")
    many.add_argument("--quality", "--level", dest="quality", type=_positive_int, default=None, help="quality level, as for encode")
    many.add_argument("--max-abs-error", default=None, help="climate files: guaranteed pointwise bound, as for encode (images ignore it)")
    many.add_argument("--weights", default=None, help="weights to use instead of the shipped ones, as for encode")
    many.add_argument(
        "--steps-per-file", type=_positive_int, default=None, metavar="N",
        help="cut each climate file along its time dimension into archives of N steps: OUTDIR/<stem>.t000000-000023.cra",
    )
    many.add_argument("-f", "--force", action="store_true", help="encode again outputs that exist (default: skip intact ones)")
    many.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no summary (failures are still listed)")
    many.set_defaults(func=_cmd_encode_many)

    dec = sub.add_parser("decode", help="decompress: images to the suffix's format (PNG recommended), climate data to netCDF")
    dec.add_argument("input")
    dec.add_argument("-o", "--output", required=True)
    dec.add_argument("--weights", default=None, help="the weights the file was encoded with, if not shipped ones")
    dec.add_argument("--no-recover", action="store_true", help="resilient vqgan files: fill lost indices naively, no recovery transformer")
    dec.add_argument("--recovery-weights", default=None, help="recovery transformer weights (default: the shipped one)")
    dec.add_argument("--entry", default=None, metavar="NAME", help="image packs (codec pack): the entry to decode")
    dec.add_argument("-f", "--force", action="store_true", help="overwrite OUTPUT if it exists")
    dec.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    dec.set_defaults(func=_cmd_decode)

    pk = sub.add_parser("pack", help="compress a folder or glob of images into one indexed pack (a PyTorch dataset: codec.ImageArchive)")
    pk.add_argument("input", help="folder (searched recursively), quoted glob such as 'photos/**/*.jpg', or one image")
    pk.add_argument("-o", "--output", required=True, help="pack to write (e.g. images.cpk)")
    pk.add_argument("--model", default=None, help="image model (default mcquic); see `codec models`")
    pk.add_argument("--quality", "--level", dest="quality", type=_positive_int, default=None, help="quality level, as for encode")
    pk.add_argument("--bpp", type=float, default=None, help="ladder models: per image, the highest level of at most this many bits per pixel")
    pk.add_argument("--weights", default=None, help="weights to use instead of the shipped ones (ImageArchive then needs them too)")
    again = pk.add_mutually_exclusive_group()
    again.add_argument("--append", action="store_true", help="add the images the pack does not hold yet (resumes an interrupted pack, repairs a torn one)")
    again.add_argument("-f", "--force", action="store_true", help="overwrite OUTPUT if it exists")
    pk.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    pk.set_defaults(func=_cmd_pack)

    dmg = sub.add_parser("damage", help="simulate a lossy channel: erase a fraction of a resilient file's packets")
    dmg.add_argument("input")
    dmg.add_argument("-o", "--output", required=True)
    dmg.add_argument("--drop", type=float, required=True, help="fraction of the intact packets (index and parity) to lose, 0..1, rounded to the nearest count")
    dmg.add_argument("--seed", type=int, default=0, help="which packets (deterministic per seed)")
    dmg.add_argument("--iid", action="store_true", help="lose each packet independently with probability --drop (the count varies by seed)")
    dmg.add_argument("-f", "--force", action="store_true", help="overwrite OUTPUT if it exists")
    dmg.set_defaults(func=_cmd_damage)

    inf = sub.add_parser("info", help="describe a compressed file (JSON)")
    inf.add_argument("input")
    inf.set_defaults(func=_cmd_info)

    mod = sub.add_parser("models", help="list models, quality levels and checkpoint sizes")
    mod.add_argument("--json", action="store_true")
    mod.set_defaults(func=_cmd_models)

    tr = sub.add_parser("train", help="train a model (resumable; runs under torchrun for multi-GPU)")
    tr.add_argument(
        "model",
        help="mcquic, hyperprior (the benchmark baseline), vaeformer (climate), vqgan (base network) "
        "vqgan-ladder (K-means levels + priors from --init, a trained vqgan or an official taming .ckpt) "
        "recovery (the lost-index transformer of a vqgan ladder) or video-prior (the temporal prior of video indices)",
    )
    tr.add_argument("--clips", default=None, help="video-prior: comma-separated real clips to learn from besides the synthetic ones")
    tr.add_argument("--sizes", default=None, help="vqgan-ladder: codebook sizes, e.g. 8,16,32 (default 8..2048)")
    tr.add_argument("--ladder", default=None, help="recovery: the vqgan (ladder) weights whose indices it learns (default: shipped)")
    tr.add_argument("--data", required=True, help="folder of training images; for vaeformer a folder of netCDF/GRIB files or a field pack (.npz)")
    tr.add_argument("--val", default=None, help="folder of validation images (default: ../validation next to a training/ folder)")
    tr.add_argument("--out", required=True, help="run folder: last.safetensors (resume), model.safetensors, log.jsonl")
    tr.add_argument("--preset", default="full", help="full (default) or tiny (seconds on a CPU)")
    tr.add_argument("--quality", type=_positive_int, default=None, help=argparse.SUPPRESS)  # refused with a hint: every model trains all its levels
    tr.add_argument("--config", default=None, help='JSON file: {"train": {...}, "model": {...}, "loss": {...}} overriding the preset (loss: recovery pixel_weight)')
    tr.add_argument("--lmbda", type=float, default=None, help="rate-distortion trade-off (hyperprior, vaeformer)")
    tr.add_argument("--vq-weight", type=float, default=None, help="weight of the codebook/commitment loss (mcquic only)")
    tr.add_argument(
        "--only-levels", type=_positive_int, nargs="+", default=None,
        help="mcquic: train only these quality levels' codebooks, the shared network and other levels unchanged (e.g. a level new to --init)",
    )
    tr.add_argument(
        "--steps", type=_non_negative_int, default=None,
        help="total steps (vqgan-ladder: per level, 0 = no fine-tuning; other models: 0 = export --init after the data-dependent initialization, validated)",
    )
    tr.add_argument("--batch-size", type=_positive_int, default=None)
    tr.add_argument("--crop", type=_positive_int, default=None)
    tr.add_argument("--lr", type=float, default=None)
    tr.add_argument("--seed", type=int, default=None)
    tr.add_argument("--val-every", type=_positive_int, default=None)
    tr.add_argument("--resume", action="store_true", help="continue from OUT/last.safetensors")
    tr.add_argument("--stop-after", type=_positive_int, default=None, help="stop this invocation after N steps (continue with --resume)")
    tr.add_argument("--init", default=None, help="start from these weights (tensors of matching shape)")
    tr.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    tr.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")
    tr.set_defaults(func=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except CodecError as exc:
        print(f"codec: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:
        print(f"codec: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return EXIT_ERROR
    except MemoryError:
        print("codec: error: out of memory", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("codec: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

