"""Which of a figure's texts leave its saved image (issue 27): the texts the Agg renderer
actually draws (tick labels outside the view are not drawn, so they do not count), each
with its window extent against the figure's box."""

from __future__ import annotations

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

TOLERANCE = 1.0  # pixels


def texts_outside(fig: Figure) -> list[str]:
    """The drawn texts of ``fig`` whose extent is not inside the figure; [] when everything
    lies inside the image. (Text and figure scale together with the dpi, so the figure's own
    dpi answers for the report's too.)"""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    renderer = canvas.get_renderer()
    drawn = []
    plain = renderer.draw_text

    def spy(gc, x, y, s, prop, angle, ismath=False, mtext=None):
        if mtext is not None and s.strip():  # its extent now, where it is being drawn
            drawn.append((mtext.get_text(), mtext.get_window_extent(renderer)))
        return plain(gc, x, y, s, prop, angle, ismath=ismath, mtext=mtext)

    renderer.draw_text = spy
    try:
        canvas.draw()
    finally:
        del renderer.draw_text
    box = fig.bbox
    out = []
    for text, e in drawn:
        if (e.x0 < box.x0 - TOLERANCE or e.y0 < box.y0 - TOLERANCE
                or e.x1 > box.x1 + TOLERANCE or e.y1 > box.y1 + TOLERANCE):
            out.append(text)
    return out
