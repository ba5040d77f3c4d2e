"""Overlay: unknown pixels keep the image, labelled ones are blended with their palette colour."""
import numpy as np
import pytest

from movseg_core.viz import colorize_labels, label_palette, overlay


def test_palette_is_distinct_and_unknown_is_black():
    pal = label_palette(40)
    assert pal.shape == (41, 3) and pal[0].tolist() == [0, 0, 0]
    assert len({tuple(c) for c in pal}) == 41


def test_overlay_blends_known_pixels_only():
    rgb = np.full((60, 80, 3), 100, np.uint8)
    labels = np.zeros((60, 80), np.uint16)
    labels[30:, 40:] = 2
    out = overlay(rgb, labels, ["a", "b"], alpha=0.5, legend=False)
    assert (out[:30] == 100).all()
    expected = np.round(0.5 * label_palette(2)[2].astype(float) + 50).astype(np.uint8)
    assert np.abs(out[45, 60].astype(int) - expected).max() <= 1
    assert np.array_equal(colorize_labels(labels, 2)[45, 60], label_palette(2)[2])


def test_legend_is_drawn_and_sizes_must_match():
    rgb = np.zeros((120, 160, 3), np.uint8)
    labels = np.ones((120, 160), np.uint16)
    with_legend = overlay(rgb, labels, ["chair"], legend=True)
    without = overlay(rgb, labels, ["chair"], legend=False)
    assert (with_legend[:20, :60] != without[:20, :60]).any()
    with pytest.raises(ValueError, match="differ in size"):
        overlay(rgb, labels[:10], ["chair"])


def test_draw_objects_outlines_things_in_their_class_colour_and_leaves_stuff_and_the_input_alone():
    from movseg_core.objects import ObjectInstance
    from movseg_core.viz import draw_objects

    img = np.full((120, 160, 3), 100, np.uint8)
    mug = ObjectInstance(1, 2, "mug", 0.8, False, (40, 50, 99, 89), 2400)
    wall = ObjectInstance(2, 1, "wall", 0.9, True, (0, 0, 159, 119), 19200)
    out = draw_objects(img, [mug, wall], n_classes=2)
    colour = label_palette(2)[2]
    assert (img == 100).all(), "the input image changed"
    for x, y in ((40, 70), (99, 70), (70, 89), (41, 50)):  # the box's four sides
        assert np.array_equal(out[y, x], colour), (x, y, out[y, x])
    assert (out[60:80, 50:90] == 100).all(), "the box's inside is not drawn over"
    assert (out[30:50, 40:100] != 100).any(), "no name above the box"
    assert (out[119, :] == 100).all() and (out[:, 0] == 100).all(), "a stuff box was drawn"
    assert (draw_objects(img, [wall], 2, stuff=True)[119, :] != 100).any()


def _overlay_opencv(rgb, labels, n, alpha):
    """The blend as OpenCV computes it (the compiled kernel must give the same bytes)."""
    import cv2

    labels = np.minimum(labels, n)
    colours = np.take(label_palette(n), labels, axis=0)
    blended = cv2.addWeighted(colours, alpha, rgb, 1.0 - alpha, 0.0)
    out = rgb.copy()
    out[labels > 0] = blended[labels > 0]
    return out


@pytest.mark.parametrize("alpha", [0.5, 0.3, 0.77, 1.0])
def test_overlay_blend_equals_opencv_and_legend_shares(alpha):
    from movseg_core.data.nyuv2 import NYUv2Folder, default_nyuv2_dir

    rgb = NYUv2Folder(default_nyuv2_dir())[0].rgb  # real colours: every rounding case occurs
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 9, size=rgb.shape[:2]).astype(np.uint16)  # 8 > n=6 names: coloured as 6
    labels[:40] = 0
    out = overlay(rgb, labels, ["a", "b", "c", "d", "e", "f"], alpha=alpha, legend=False)
    assert np.array_equal(out, _overlay_opencv(rgb, labels, 6, alpha))
    negative = overlay(rgb, labels.astype(np.int32) * -1, ["a"], alpha=alpha, legend=False)
    assert np.array_equal(negative, rgb), "negative ids are unknown: the image is kept"


def test_legend_lists_labels_by_share():
    rgb = np.zeros((200, 300, 3), np.uint8)
    labels = np.zeros((200, 300), np.uint16)
    labels[:, :200] = 2  # "b": two thirds, listed first
    labels[:, 200:290] = 1  # "a": 30 %
    names = ["a", "b", "c"]
    out = overlay(rgb, labels, names, legend=True)
    row_b = overlay(rgb, np.full_like(labels, 2), names, legend=True)
    # the first legend row carries b's colour swatch, the second a's
    assert np.array_equal(out[10, 8], label_palette(3)[2]) and np.array_equal(row_b[10, 8], label_palette(3)[2])
    second = out[30:45, 8]
    assert any(np.array_equal(px, label_palette(3)[1]) for px in second), second
