"""Figures drawn in child processes: placed whole, newest kept, failures left out."""

from __future__ import annotations

import logging
import os

import numpy as np

from vegard.analysis.figure_process import FigureDrawer


def test_a_figure_is_drawn_in_another_process_and_placed_whole(tmp_path):
    drawer = FigureDrawer()
    path = tmp_path / "figures" / "trace.npy"
    assert drawer.draw(np.save, path, np.arange(3)) == path
    assert drawer.finished() == [path]
    np.testing.assert_array_equal(np.load(path), np.arange(3))
    assert sorted(p.name for p in path.parent.iterdir()) == ["trace.npy"]  # no temporary


def test_a_figure_redrawn_keeps_the_newest_drawing(tmp_path):
    drawer = FigureDrawer()
    path = tmp_path / "live.npy"
    for value in range(6):  # the live plot after each map, faster than it is drawn
        drawer.draw(np.save, path, np.array([value]))
    assert drawer.finished() == [path]
    np.testing.assert_array_equal(np.load(path), [5])
    assert os.listdir(tmp_path) == ["live.npy"]


def test_a_failed_figure_is_logged_and_left_out(tmp_path, caplog):
    drawer = FigureDrawer()
    good, bad = tmp_path / "good.txt", tmp_path / "bad.txt"
    drawer.draw(np.savetxt, bad, "not an array")
    drawer.draw(np.savetxt, good, np.eye(2))
    with caplog.at_level(logging.ERROR):
        assert drawer.finished() == [good]
    assert "bad.txt failed" in caplog.text
    assert not bad.exists() and os.listdir(tmp_path) == ["good.txt"]
    assert drawer.finished() == [good]  # what was drawn stays listed
