"""The number formats of stats.render.numbers: the tables' and SUMMARY.txt's."""

import math

from stats.render import numbers as N


def test_points_in_tables_and_summary():
    assert N.pts(0.78123) == "78.1" and N.pts(0.03, signed=True) == "+3.0"
    assert N.pts(-0.0001, signed=True) == "0.0"  # a rounded zero has no sign
    assert N.points(0.030712) == "+3.07" and N.points(0.5, signed=False) == "50.00"
    assert N.points(None) == "n/a" and N.points(math.nan) == "n/a"
    assert N.interval(-0.01, 0.02) == "[-1.00, +2.00]" and N.interval(None, 0.1) == "n/a"


def test_p_values_and_stars():
    assert N.p_value(None) == "n/a" and N.p_value(5e-5) == "<0.0001"
    assert N.p_value(0.01234) == "0.0123"
    assert N.p_cell(0.0004) == "$<$0.001" and N.p_cell(0.0123) == "0.012"
    assert N.stars(0.0005, 0.05) == "$^{***}$" and N.stars(0.004, 0.05) == "$^{**}$"
    assert N.stars(0.03, 0.05) == "$^{*}$" and N.stars(0.06, 0.05) == "" and N.stars(None, 0.05) == ""


def test_fmt_and_the_others():
    assert N.fmt(None) == "n/a" and N.fmt(float("nan")) == "n/a"
    assert N.fmt(0.1234, 1, 100, True) == "+12.3" and N.fmt(0.0, 1, 100, True) == "+0.0"
    assert N.num(None, ".2f") == "n/a" and N.num(1234.5, ",.0f") == "1,234"
    assert N.millions(1_234_567) == "1.23" and N.count(12345) == "12{,}345"
    assert N.tokens(1_234_567.4) == "1,234,567" and N.percent(0.125) == "12.5%"
    assert N.coefficient(0.4213) == "+0.42" and N.coefficient(-0.5) == "-0.50"
    assert N.share(0.125) == "12.5\\%" and N.share(None) == "n/a"
    assert N.ok(0.0) and not N.ok(None) and not N.ok(math.inf)
