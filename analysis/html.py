"""A self-contained HTML page: inline CSS, figures as base64 PNG data URIs, pandas tables.

Nothing on the page refers to another file or host, so report.html can be mailed on its
own.
"""

from __future__ import annotations

import base64
import html
import io
import math

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
h3 { font-size: 1.05em; margin-top: 1.4em; }
.meta { color: #666; font-size: 0.9em; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #444; font-size: 0.9em; margin-top: 0.3em; }
.table-wrap { overflow-x: auto; margin: 0.6em 0 1.2em; }
table.data { border-collapse: collapse; font-size: 0.82em; }
table.data th, table.data td { border: 1px solid #ddd; padding: 2px 6px; text-align: right; white-space: nowrap; }
table.data th { background: #f4f4f4; }
table.data tr:nth-child(even) td { background: #fafafa; }
ul.findings li { margin-bottom: 0.35em; }
.note { color: #7a4b00; }
"""


def figure_to_png_base64(figure: Figure, dpi: int = 110) -> str:
    """Render a figure to PNG and return it base64-encoded."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _format_cell(value) -> str:
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.4g}"
    return str(value)


class HtmlReport:
    """An HTML page built section by section, then rendered with :meth:`render`."""

    def __init__(self, title: str):
        self.title = title
        self.parts: list[str] = []
        self.figure_count = 0

    def heading(self, text: str, level: int = 2) -> None:
        self.parts.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def paragraph(self, text: str, css_class: str | None = None) -> None:
        attribute = f' class="{css_class}"' if css_class else ""
        self.parts.append(f"<p{attribute}>{html.escape(text)}</p>")

    def bullet_list(self, items: list[str], css_class: str = "findings") -> None:
        if not items:
            return
        entries = "".join(f"<li>{html.escape(item)}</li>" for item in items)
        self.parts.append(f'<ul class="{css_class}">{entries}</ul>')

    def figure(self, figure: Figure, caption: str, alt: str) -> None:
        """Embed a figure as a PNG data URI and close it."""
        data = figure_to_png_base64(figure)
        plt.close(figure)
        self.figure_count += 1
        self.parts.append(
            f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    def table(self, frame: pd.DataFrame, caption: str | None = None, max_rows: int = 200) -> None:
        """Add a table; NaN shows as "n/a" and floats with 4 significant digits."""
        if caption:
            self.parts.append(f"<p>{html.escape(caption)}</p>")
        if frame.empty:
            self.parts.append("<p><em>No rows.</em></p>")
            return
        head = frame.head(max_rows).copy()
        for column in head.columns:
            head[column] = head[column].map(_format_cell)
        table = head.to_html(index=False, escape=True, border=0, classes="data")
        self.parts.append(f'<div class="table-wrap">{table}</div>')
        if len(frame) > max_rows:
            self.parts.append(f"<p class=\"meta\">First {max_rows} of {len(frame)} rows; the CSV has all.</p>")

    def render(self, subtitle: str = "") -> str:
        body = "\n".join(self.parts)
        meta = f'<p class="meta">{html.escape(subtitle)}</p>' if subtitle else ""
        return (
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(self.title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            f"<h1>{html.escape(self.title)}</h1>\n{meta}\n{body}\n</body>\n</html>\n"
        )
