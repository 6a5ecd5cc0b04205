"""Every figure's text lies inside the saved image at full-study scale (issue 27)."""

from matplotlib.figure import Figure

from tests.stats.conftest import FIGURE_TEXTS_OUTSIDE
from tests.stats.figtext import texts_outside


def test_the_check_sees_a_legend_that_runs_off_the_figure():
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], label="a long system name " * 6)
    ax.set_xlim(0.5, 1)  # the ticks at 0 and 0.25 are not drawn: they do not count
    assert texts_outside(fig) == []
    ax.legend()
    assert texts_outside(fig) == ["a long system name " * 6]
    ax.get_legend().remove()
    ax.set_title("a title far too long for this figure " * 3)
    assert texts_outside(fig) == ["a title far too long for this figure " * 3]


def test_no_figure_text_leaves_its_image_at_full_scale(full_scale_paper):
    expected = {"fig_strategy_bars", "fig_validation_curves", "fig_transfer_heatmap",
                "fig_rq5_transfer"}
    assert expected <= set(FIGURE_TEXTS_OUTSIDE)
    assert any(k.startswith("fig_rq4_gain_matrix") for k in FIGURE_TEXTS_OUTSIDE)
    outside = {k: v for k, v in FIGURE_TEXTS_OUTSIDE.items() if v}
    assert not outside, outside
    for stem in expected:
        assert (full_scale_paper / f"{stem}.png").stat().st_size > 1000
