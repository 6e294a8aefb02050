"""Scale-out over files: ``codec encode-many`` / :func:`encode_many` on dask.distributed.

Each input file becomes one output in OUTDIR: images ``<stem>.bin``, netCDF/GRIB files ``<stem>.cra``,
made by :func:`codec.api.encode` on a dask worker (the bytes are those ``codec.encode`` gives for that
file).  With ``steps_per_file=N`` a climate file is instead cut along its ``time`` dimension into
archives of N steps each, ``<stem>.t000000-000023.cra`` (first and last step, inclusive); the time
dimension is the one named ``time`` (any case) or whose coordinate has ``axis: T`` or ``standard_name: time``.

The work runs on a fresh ``distributed.LocalCluster`` (worker processes of one dask thread each; by
default as many as the CPUs hold at :func:`codec.runtime.codec_threads` torch threads per encode) or on
an existing cluster (a ``distributed.Client`` or a ``tcp://`` scheduler address, with the inputs, the
outputs and codec installed where its workers run).  A worker loads each model once: the registry
caches loaded models per process.

Outputs are written atomically (temporary file, then rename), so a run can be interrupted and
repeated: an output that exists and passes :func:`codec.container.unpack` (header and every stream
checksum) is skipped, a damaged one is encoded again, ``force`` encodes everything.  A file that
fails is recorded with its one-line message and the others go on.
"""

from __future__ import annotations

import glob
import logging
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import container, fileio
from .climate import GRIB_MAGIC, is_climate_file
from .errors import CodecError, InputError

if TYPE_CHECKING:
    import xarray as xr
    from distributed import Client, Future

CONNECT_TIMEOUT = 5.0
"""Seconds to wait for a dask scheduler given by address."""
IMAGE_ONLY = frozenset({"bpp", "packet_rows", "packet_lattice", "packet_parity"})
CLIMATE_ONLY = frozenset({"max_abs_error"})
"""Encode options left out for the other kind of file, so one set of options serves a mixed folder."""


@dataclass(frozen=True)
class Job:
    """One output to make: a whole input file, or the time steps ``steps`` (start, stop) of a climate file."""

    source: Path
    output: Path
    climate: bool
    bytes_in: int
    steps: tuple[int, int] | None = None

    @property
    def label(self) -> str:
        """How failures name this job: the input path, with the step range of a split file."""
        return str(self.source) if self.steps is None else f"{self.source}[steps {self.steps[0]}:{self.steps[1]}]"


@dataclass(frozen=True)
class Outcome:
    """What a worker did with a job: the size of the output it wrote, or the one-line error."""

    job: Job
    bytes_out: int = 0
    error: str | None = None


@dataclass
class BatchResult:
    """The result of :func:`encode_many`: outputs written and skipped, failures, bytes and wall time."""

    encoded: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    """(input, one-line message) of every job that failed."""
    bytes_in: int = 0
    """Input bytes of the encoded jobs (a split file's size shared out by its steps)."""
    bytes_out: int = 0
    """Output bytes of the encoded jobs."""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.failed

    def summary(self) -> str:
        """One line: counts and bytes."""
        return (
            f"encoded {len(self.encoded)}, skipped {len(self.skipped)}, failed {len(self.failed)}; "
            f"{self.bytes_in} bytes in, {self.bytes_out} bytes out, {self.seconds:.1f} s"
        )


def encode_many(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    outdir: str | os.PathLike,
    client: Client | str | None = None,
    workers: int | None = None,
    *,
    steps_per_file: int | None = None,
    force: bool = False,
    progress: bool = False,
    **encode_options: Any,
) -> BatchResult:
    """Encode many files into ``outdir`` (created if missing) on dask.distributed; see the module doc.

    ``paths``: a glob pattern (a string; ``**`` recurses), a path, or an iterable of paths.
    ``client``: a ``distributed.Client``, a scheduler address, or None for a fresh ``LocalCluster`` of
    ``workers`` processes (default :func:`default_workers`; ignored with a client).  ``encode_options``
    go to :func:`codec.api.encode` (``model``, ``quality``, ``weights``, ``max_abs_error``, ...).
    Per-file failures are in the result; bad arguments, no matching file, an ``outdir`` that is a file
    or an unreachable scheduler raise :class:`codec.errors.InputError`.  Processes of a LocalCluster
    are spawned: call it from under ``if __name__ == "__main__":`` in a script.
    """
    start = time.perf_counter()
    if steps_per_file is not None and steps_per_file < 1:
        raise InputError(f"steps per file must be >= 1, got {steps_per_file}")
    sources = expand(paths)
    out = prepare_outdir(outdir)
    options = _checked_options(encode_options)
    jobs, failed = plan(sources, out, steps_per_file)
    done = set() if force else {job for job in jobs if is_complete(job.output)}
    todo = [job for job in jobs if job not in done]
    outcomes: list[Outcome] = []
    if todo:
        with _client(client, workers) as c:
            outcomes = run_jobs(c, todo, options, progress, len(done))
    result = _collect(outcomes, failed, sorted(job.output for job in done))
    result.seconds = time.perf_counter() - start
    return result


def expand(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """The input files, absolute, sorted for a pattern, without folders or repeats; InputError when none."""
    if isinstance(paths, str):
        pattern = os.path.expanduser(paths)
        found = sorted(glob.glob(pattern, recursive=True))
        empty = f"no files match {paths}"
    else:
        found = [paths] if isinstance(paths, os.PathLike) else list(paths)
        empty = "no input files"
    files = [Path(os.path.abspath(p)) for p in found if not os.path.isdir(p)]
    if not files:
        raise InputError(empty)
    return list(dict.fromkeys(files))


def prepare_outdir(outdir: str | os.PathLike) -> Path:
    """``outdir`` as an absolute path, created if missing; InputError if it is a file."""
    out = Path(outdir)
    if out.exists() and not out.is_dir():
        raise InputError(f"output folder is a file: {out}")
    out.mkdir(parents=True, exist_ok=True)
    return Path(os.path.abspath(out))


def _checked_options(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with ``weights`` made absolute (workers may run elsewhere); one error now if it is missing."""
    if options.get("weights") is None:
        return options
    return {**options, "weights": str(fileio.existing_file(options["weights"]).absolute())}


def plan(sources: list[Path], outdir: Path, steps_per_file: int | None) -> tuple[list[Job], list[tuple[str, str]]]:
    """The jobs of ``sources``, and (input, message) for inputs that cannot even be planned or share an output name."""
    jobs: list[Job] = []
    failed: list[tuple[str, str]] = []
    for source in sources:
        try:
            jobs += jobs_of(source, outdir, steps_per_file)
        except Exception as exc:  # noqa: BLE001 - a bad input is recorded, never fatal
            failed.append((str(source), describe_error(exc)))
    by_output: dict[Path, Job] = {}
    for job in jobs:
        if job.output in by_output:
            failed.append((job.label, f"output {job.output} is already the output of {by_output[job.output].source}"))
        else:
            by_output[job.output] = job
    return list(by_output.values()), failed


def jobs_of(source: Path, outdir: Path, steps_per_file: int | None) -> list[Job]:
    """The jobs of one input: the whole file, or (``steps_per_file``) one per range of its time steps."""
    climate = is_climate_file(source)
    size = source.stat().st_size
    if steps_per_file is None:
        return [Job(source, outdir / f"{source.stem}{'.cra' if climate else '.bin'}", climate, size)]
    if not climate:
        raise InputError("steps_per_file (--steps-per-file) applies to netCDF and GRIB files, not images")
    count = time_steps(source)
    starts = range(0, count, steps_per_file)
    return [
        Job(source, outdir / f"{source.stem}.t{a:06d}-{b - 1:06d}.cra", True, size * b // count - size * a // count, (a, b))
        for a, b in ((a, min(a + steps_per_file, count)) for a in starts)
    ]


def open_climate(path: Path) -> xr.Dataset:
    """A netCDF file's root group or a GRIB file of one hypercube as one lazy ``xarray.Dataset``, opened as
    :mod:`codec.climate.dataset` opens sources (raw time numbers, NaN where missing)."""
    import xarray as xr

    from .climate.groups import OPEN, one_line

    with open(path, "rb") as f:
        grib = f.read(4) == GRIB_MAGIC
    backend = {"engine": "cfgrib", "backend_kwargs": {"indexpath": ""}} if grib else {"engine": "netcdf4"}
    try:
        return xr.open_dataset(path, **backend, **OPEN)
    except Exception as exc:  # noqa: BLE001 - netCDF4 / HDF5 / cfgrib errors come in many types
        raise InputError(f"cannot open {path} as one dataset: {one_line(exc)}") from None


def time_steps(path: Path) -> int:
    """The number of time steps of the climate file ``path``; InputError if it has no time dimension."""
    with open_climate(path) as ds:
        return ds.sizes[time_dim(ds)]


def time_dim(ds: xr.Dataset) -> str:
    """The dimension of ``ds`` named ``time`` (any case), or else whose coordinate says it is time (CF ``axis`` or ``standard_name``)."""
    dims = [str(d) for d in ds.dims]
    for dim in sorted(dims, key=lambda d: d.lower() != "time"):
        attrs = ds.variables[dim].attrs if dim in ds.variables else {}
        if dim.lower() == "time" or attrs.get("axis") == "T" or attrs.get("standard_name") == "time":
            return dim
    raise InputError(f"no time dimension to split (dimensions: {', '.join(dims)})")


def is_complete(path: Path) -> bool:
    """True when ``path`` exists and is an intact codec file (header and every stream checksum)."""
    try:
        container.unpack(path.read_bytes())
    except (CodecError, OSError):
        return False
    return True


def default_workers() -> int:
    """Worker processes for a LocalCluster: the CPUs this process may use over the codec's torch threads per encode."""
    from .runtime import codec_threads

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cpus // codec_threads())


def connect(address: str, timeout: float = CONNECT_TIMEOUT) -> Client:
    """A Client of the dask scheduler at ``address``; a one-line InputError when it cannot be reached in ``timeout`` s."""
    from distributed import Client

    try:
        return Client(address, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        raise InputError(f"cannot reach the dask scheduler at {address}: {exc}") from None


@contextmanager
def local_cluster(workers: int) -> Iterator[Client]:
    """A Client of a fresh LocalCluster of ``workers`` processes, one dask thread each; both closed on exit."""
    from distributed import Client, LocalCluster

    if workers < 1:
        raise InputError(f"workers must be >= 1, got {workers}")
    with (
        LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR) as cluster,
        Client(cluster) as client,
    ):
        yield client


@contextmanager
def _client(client: Client | str | None, workers: int | None) -> Iterator[Client]:
    """The caller's client as is, a connection to an address (closed on exit), or a fresh local cluster."""
    if client is None:
        with local_cluster(default_workers() if workers is None else workers) as c:
            yield c
    elif isinstance(client, str):
        c = connect(client, CONNECT_TIMEOUT)
        try:
            yield c
        finally:
            c.close()
    else:
        yield client


def run_jobs(client: Client, jobs: list[Job], options: dict[str, Any], progress: bool, skipped: int) -> list[Outcome]:
    """Run ``jobs`` on ``client``'s workers; a tqdm bar counts outputs (done or skipped) when ``progress``."""
    from distributed import as_completed
    from tqdm import tqdm

    futures = {client.submit(encode_job, job, options, pure=False): job for job in jobs}
    outcomes = []
    with tqdm(total=len(jobs) + skipped, initial=skipped, unit="file", desc="encode-many", disable=not progress) as bar:
        for future in as_completed(futures):
            outcomes.append(_outcome(future, futures[future]))
            bar.update()
    return outcomes


def _outcome(future: Future, job: Job) -> Outcome:
    """A finished future's outcome; a worker that died or a lost task becomes the job's error."""
    try:
        return future.result()
    except Exception as exc:  # noqa: BLE001 - e.g. KilledWorker: this job failed, the others go on
        return Outcome(job, error=describe_error(exc))


def encode_job(job: Job, options: dict[str, Any]) -> Outcome:
    """Encode one job and write its output atomically (runs on a dask worker); never raises for a bad input."""
    try:
        data = encode_bytes(job, options)
        fileio.write_atomic(job.output, data)
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop the others
        return Outcome(job, error=describe_error(exc))
    return Outcome(job, bytes_out=len(data))


def encode_bytes(job: Job, options: dict[str, Any]) -> bytes:
    """The compressed bytes of a job: :func:`codec.api.encode` of the file, or of its time-step slice."""
    from . import api

    kept = {k: v for k, v in options.items() if k not in (IMAGE_ONLY if job.climate else CLIMATE_ONLY)}
    if job.steps is None:
        return api.encode(job.source, **kept)
    with open_climate(job.source) as ds:
        return api.encode(ds.isel({time_dim(ds): slice(*job.steps)}), **kept)


def describe_error(exc: BaseException) -> str:
    """``exc`` as one line: a codec message as is, an OS error's strerror, anything else with its type."""
    from .climate.groups import one_line

    if isinstance(exc, CodecError):
        return one_line(exc)
    if isinstance(exc, OSError):
        return f"{exc.strerror or one_line(exc)}: {exc.filename or ''}".rstrip(": ")
    if isinstance(exc, MemoryError):
        return "out of memory"
    return f"{type(exc).__name__}: {one_line(exc)}"


def _collect(outcomes: list[Outcome], failed: list[tuple[str, str]], skipped: list[Path]) -> BatchResult:
    """The result of a run: outcomes summed, failures (planning ones included) sorted by input."""
    result = BatchResult(skipped=skipped, failed=list(failed))
    for outcome in outcomes:
        if outcome.error is not None:
            result.failed.append((outcome.job.label, outcome.error))
            continue
        result.encoded.append(outcome.job.output)
        result.bytes_in += outcome.job.bytes_in
        result.bytes_out += outcome.bytes_out
    result.encoded.sort()
    result.failed.sort()
    return result
