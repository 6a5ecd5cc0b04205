"""The tables compile with pdflatex in a minimal document with booktabs; escaping is total."""

import shutil
import subprocess

import pytest

from stats.tables import latex_escape
from tests.stats.test_report import TABLES


def test_latex_escape_covers_every_special():
    assert latex_escape(r"a_b%c&d#e$f{g}h~i^j\k") == (
        r"a\_b\%c\&d\#e\$f\{g\}h\textasciitilde{}i\textasciicircum{}j\textbackslash{}k")


def compile_tables(folder, tmp_path):
    body = "\n".join(rf"\input{{{folder / t}}}" for t in TABLES)
    doc = tmp_path / "doc.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage[margin=1cm,landscape]{geometry}\n"
                   "\\usepackage{booktabs}\n\\begin{document}\n" + body + "\n\\end{document}\n")
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 0


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_full_study_tables_compile(full_paper, tmp_path):
    compile_tables(full_paper["out"], tmp_path)


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_degenerate_tables_compile(degenerate_paper, tmp_path):
    compile_tables(degenerate_paper, tmp_path)
