"""Colour metrics (codec.metrics): CIELAB, delta-E, channel spread."""

from __future__ import annotations

import pytest
import torch

from codec.metrics import channel_spread, cielab, delta_e


@pytest.mark.parametrize(("rgb", "lab"), [((1.0, 1.0, 1.0), (100.0, 0.0, 0.0)), ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
                                          ((1.0, 0.0, 0.0), (53.24, 80.09, 67.20)), ((0.0, 0.0, 1.0), (32.30, 79.19, -107.86))])
def test_cielab_of_reference_colours(rgb, lab):
    got = cielab(torch.tensor(rgb, dtype=torch.float64).view(3, 1, 1)).flatten()
    assert torch.allclose(got, torch.tensor(lab, dtype=torch.float64), atol=0.02)


def test_delta_e_and_spread():
    grey = torch.full((1, 3, 4, 4), 0.5)
    red = torch.zeros(1, 3, 4, 4)
    red[:, 0] = 1.0
    assert delta_e(grey, grey) == 0.0 and delta_e(grey, red) > 50
    assert channel_spread(grey) == 0.0 and channel_spread(red) == pytest.approx(255.0)
