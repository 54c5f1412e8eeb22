import numpy as np

from models.figures import confusion_figure, confusion_matrix, template_images, templates_figure


def test_confusion_matrix_counts_actual_by_predicted():
    matrix = confusion_matrix(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]


def test_templates_are_the_weight_rows_as_images_in_unit_range():
    weights = np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, -1)
    weights[1] *= -1
    images = template_images(weights, (4, 4, 3))
    assert images.shape == (2, 4, 4, 3)
    assert images.min() == 0 and images.max() == 1
    assert images[0, 0, 0, 0] == 0 and images[1, 0, 0, 0] == 1  # each stretched to its own range


def test_templates_figure_has_one_titled_panel_per_class():
    figure = templates_figure(np.random.default_rng(0).normal(size=(10, 8 * 8 * 3)), (8, 8, 3), [f"c{i}" for i in range(10)], "t")
    titled = [axis.get_title() for axis in figure.axes if axis.get_title()]
    assert titled == [f"c{i}" for i in range(10)]


def test_figures_are_plain_figures_that_save_a_png_of_their_size(tmp_path):
    """Drawn without pyplot (no figure manager to close or leak): savefig still writes the PNG MLflow logs."""
    from matplotlib.figure import Figure
    from PIL import Image

    figure = confusion_figure(np.eye(3, dtype=int), ["a", "b", "c"], "t")
    assert isinstance(figure, Figure) and figure.canvas.manager is None
    figure.savefig(tmp_path / "confusion.png")
    width, height = figure.get_size_inches() * figure.dpi
    assert Image.open(tmp_path / "confusion.png").size == (round(width), round(height))


def test_class_names_the_fonts_lack_draw_without_a_warning_per_glyph():
    import io
    import warnings

    from matplotlib.figure import Figure

    names = ["日本", "中国", "한국"]
    with warnings.catch_warnings(record=True) as plain:
        warnings.simplefilter("always")
        figure = Figure()
        figure.subplots().set_title(" ".join(names))
        figure.savefig(io.BytesIO(), format="png")
    if not any("missing from" in str(warning.message) for warning in plain):
        import pytest

        pytest.skip("this machine has a font with these glyphs: matplotlib has nothing to warn about")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        confusion_figure(np.eye(3, dtype=int), names, "t").savefig(io.BytesIO(), format="png")
    assert [str(warning.message) for warning in caught if "missing from" in str(warning.message)] == []
