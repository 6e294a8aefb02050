"""Assertions and fixtures-by-import shared by several test modules."""

from __future__ import annotations

EXECUTED: list[str] = []
"""Calls made by unpickling a :class:`Payload`; loaders must leave it empty."""


def _record(tag: str) -> str:
    EXECUTED.append(tag)
    return tag


class Payload:
    """Pickles as a call to :func:`_record`: a safe loader must refuse it, never run it."""

    def __reduce__(self):
        return (_record, ("pwned",))


def assert_one_line_error(code: int, err: str, pattern: str) -> None:
    """The CLI failed with exit code 1 and one ``codec: error:`` line containing ``pattern``, no traceback."""
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("codec: error:"), err
    assert pattern in lines[0], lines[0]
    assert "Traceback" not in err


def tiny_vaeformer():  # noqa: ANN201 - keeps torch out of this module's import
    """An untrained tiny VAEformer (seed 0) with frozen entropy tables, in eval mode."""
    import torch

    from codec.models.vaeformer import TINY, VAEformer

    torch.manual_seed(0)
    net = VAEformer(TINY).eval()
    net.update()
    return net
