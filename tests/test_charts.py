"""How a chart shows in a notebook: the kmm renderer's PNG, Vega 5 form and text.

tests/test_browser.py draws the same outputs in JupyterLab under Chromium.
"""
import base64
import json
import re

import polars as pl
import pytest
import vl_convert as vlc

from kmm.suite import charts
from kmm.suite.charts import alt

DF = pl.DataFrame({"x": [1, 2, 4, 8] * 2, "y": [1.0, 3, 2, 5, 2, 4, 3, 6],
                   "g": ["a"] * 4 + ["b"] * 4, "f": ["p", "q"] * 4})


def zoo() -> dict[str, alt.TopLevelMixin]:
    """One chart for every altair feature the notebooks use."""
    base = alt.Chart(DF)
    line = base.mark_line(point=True).encode(
        x=alt.X("x:Q", scale=alt.Scale(type="log"), axis=alt.Axis(format="~s")),
        y=alt.Y("y:Q", scale=alt.Scale(type="symlog")),
        color=alt.Color("g:N", sort=["b", "a"]), strokeDash="f:N")
    return {
        "line, log/symlog, strokeDash": line.properties(title="t", width=200),
        "column facet, header, independent y": line.encode(
            column=alt.Column("f:N", header=alt.Header(title=None))).resolve_scale(y="independent"),
        "row facet": base.mark_point().encode(x="x:Q", y="y:Q", shape="g:N", row="f:N"),
        "stacked bar, order, calculate": base.mark_bar().encode(
            x="g:N", y="sum(y):Q", color=charts.verdict_color("f"), order=alt.Order("r:Q")
        ).transform_calculate(r="indexof(['p', 'q'], datum.f)"),
        "layer with a datum rule": base.mark_area().encode(x="x:Q", y="y:Q")
        + alt.Chart(DF).mark_rule().encode(y=alt.datum(3)),
        "concat, tick, rect, sort field": alt.vconcat(
            alt.hconcat(base.mark_tick().encode(x="y:Q", y="g:N"),
                        base.mark_rect().encode(x="g:N", y="f:N", color="mean(y):Q")),
            base.mark_bar().encode(x="y:Q", y=alt.Y("g:N", sort=alt.SortField("y")))),
    }


def svg(text: str) -> str:
    """An SVG without its gradient ids (vl-convert numbers them per process)."""
    return re.sub(r"gradient_\d+", "gradient", text)


@pytest.mark.parametrize("name", list(zoo()))
def test_the_vega_form_is_the_chart_the_png_shows(name):
    """JupyterLab draws the Vega form with its own Vega 5; it is compiled by the Vega-Lite that
    draws the PNG and SVG, so all three show one chart."""
    spec = zoo()[name].to_dict()
    assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/v6")
    vega = charts.to_vega(spec)
    assert vega["$schema"] == charts.VEGA5_SCHEMA
    drawn = vlc.vega_to_svg(vega, allowed_base_urls=[])
    assert svg(drawn) == svg(charts.render(spec, "svg").decode())
    data, metadata = charts.mimebundle(spec)
    assert data[charts.VEGA5_MIME] == vega
    png = base64.b64decode(data["image/png"])
    assert png == vlc.vega_to_png(vega, scale=charts.DISPLAY_SCALE, allowed_base_urls=[])


@pytest.mark.parametrize("name", list(zoo()))
def test_a_saved_png_is_the_one_drawn_from_the_spec(name, tmp_path):
    """charts.save draws the SVG once and rasterises it for the PNG: the same bytes as
    vl-convert's PNG of the spec, so the shortcut changes no chart."""
    chart = zoo()[name]
    spec = charts.fix_series_colours(chart.to_dict())
    direct = vlc.vegalite_to_png(spec, vl_version=charts._vl_version(), scale=2.0,
                                 allowed_base_urls=[])
    assert without_text(charts.render(spec, "png", 2.0, {"chart": "c"})) == direct
    paths = charts.save(chart, "c", tmp_path, formats=["svg", "png"])
    assert without_text(paths["png"].read_bytes()) == direct


def without_text(png: bytes) -> bytes:
    """``png`` without the ``tEXt`` chunk kmm puts after its IHDR chunk (at byte 33)."""
    assert png[37:41] == b"tEXt"
    return png[:33] + png[33 + 12 + int.from_bytes(png[33:37], "big"):]


def test_a_chart_displays_as_png_vegalite5_and_text_and_no_script():
    from IPython.core.formatters import DisplayFormatter

    assert alt.renderers.active == charts.RENDERER
    chart = zoo()["line, log/symlog, strokeDash"]
    data, metadata = DisplayFormatter().format(chart)
    assert set(data) == {"image/png", charts.VEGA5_MIME, "text/plain"}
    png = base64.b64decode(data["image/png"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = charts._png_size(png)
    assert metadata["image/png"] == {"width": round(width / charts.DISPLAY_SCALE),
                                     "height": round(height / charts.DISPLAY_SCALE)}
    assert data["text/plain"] == "<kmm chart: t>"
    assert any(d.get("values") for d in data[charts.VEGA5_MIME]["data"])  # the data inline
    text = json.dumps(data)
    assert "<script" not in text and "text/html" not in text
    assert re.findall(r"https?://[^\"]+", text) == [charts.VEGA5_SCHEMA]


def test_renderer_is_enabled_once_and_stays():
    charts.enable_renderer()
    charts.enable_renderer()
    assert alt.renderers.names().count(charts.RENDERER) == 1
    assert alt.renderers.active == charts.RENDERER


def test_a_chart_that_reads_a_url_is_text_saying_why():
    chart = alt.Chart("https://example.com/x.csv").mark_point().encode(x="x:Q")
    data, metadata = charts.mimebundle(chart.to_dict())
    assert set(data) == {"text/plain"} and metadata == {}
    assert "not drawn" in data["text/plain"] and "example.com" in data["text/plain"]


def test_embed_options_reach_jupyterlab():
    _, metadata = charts.mimebundle(zoo()["row facet"].to_dict(), actions=False)
    assert metadata[charts.VEGA5_MIME] == {"embed_options": {"actions": False}}


def test_a_policy_has_one_colour_in_every_chart():
    """The same bbml2 policy names in two charts with different subsets and orders get the
    same colours; a field with names outside the table keeps the theme's palette."""
    import altair as alt
    import polars as pl

    from kmm.suite import charts

    table = charts.series_colours()
    a = alt.Chart(pl.DataFrame({"policy": ["rodata=on", "rodata=full"], "y": [1, 2]})) \
        .mark_bar().encode(x="policy:N", y="y:Q", color="policy:N").to_dict()
    b = alt.Chart(pl.DataFrame({"policy": ["rodata=full+BBML2", "rodata=full"], "y": [1, 2]})) \
        .mark_line().encode(x="y:Q", y="y:Q", color=alt.Color("policy:N")).properties(
            title="t").to_dict()
    ca = charts.fix_series_colours(a)["encoding"]["color"]["scale"]
    cb = charts.fix_series_colours(b)["encoding"]["color"]["scale"]
    colour = {**dict(zip(ca["domain"], ca["range"])), **dict(zip(cb["domain"], cb["range"]))}
    assert dict(zip(ca["domain"], ca["range"]))["rodata=full"] == \
        dict(zip(cb["domain"], cb["range"]))["rodata=full"] == table["rodata=full"]
    assert len(set(colour.values())) == 3  # three policies, three colours
    # a layered chart is reached too; unknown names are left alone
    layered = (alt.Chart(pl.DataFrame({"policy": ["1 RFC", "0 no ASI"], "y": [1, 2]}))
               .mark_point().encode(x="y:Q", y="y:Q", color="policy:N")
               + alt.Chart(pl.DataFrame({"who": ["x", "y"], "y": [1, 2]}))
               .mark_point().encode(x="y:Q", y="y:Q", color="who:N")).to_dict()
    fixed = charts.fix_series_colours(layered)
    assert fixed["layer"][0]["encoding"]["color"]["scale"]["range"] == \
        [table["0 no ASI"], table["1 RFC"]]
    assert "scale" not in fixed["layer"][1]["encoding"]["color"]
