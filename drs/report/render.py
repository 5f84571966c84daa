"""Tables as markdown and as HTML pages."""

from __future__ import annotations

import html


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def markdown_table(header: list[str], cells: list[list[str]], align: list[str] | None = None) -> str:
    align = align or ["l"] * len(header)
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(esc(h) for h in header) + " |"]
    lines.append("|" + "|".join("---:" if a == "r" else "---" for a in align) + "|")
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in cells]
    return "\n".join(lines) + "\n"


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       margin: 1.2em; color: #1f2328; font-size: 14px; }
h1 { font-size: 1.35em; margin: 0 0 .5em; }
p, ul { max-width: 60em; line-height: 1.45; }
table { border-collapse: collapse; margin: .8em 0; }
th, td { padding: .35em .75em; border-bottom: 1px solid #d8dee4; }
th { background: #f3f5f7; text-align: left; font-weight: 600; }
td.r, th.r { text-align: right; font-variant-numeric: tabular-nums; }
tr.sep td { border-top: 2px solid #8c959f; }
tr.ref td { background: #f6f8fa; }
.note { color: #57606a; font-size: .92em; }
"""


def html_table(
    header: list[str], cells: list[list[str]], align: list[str] | None = None, separators=(), classes=None
) -> str:
    align = align or ["l"] * len(header)
    classes = classes or {}
    out = ["<table>", "<thead><tr>"]
    out += [f'<th class="{a}">{html.escape(h)}</th>' for h, a in zip(header, align)]
    out.append("</tr></thead><tbody>")
    for n, row in enumerate(cells):
        css = " ".join(c for c in (("sep" if n in separators else ""), classes.get(n, "")) if c)
        out.append(f'<tr class="{css}">' if css else "<tr>")
        out += [f'<td class="{a}">{html.escape(str(c))}</td>' for c, a in zip(row, align)]
        out.append("</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def html_page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n"
        f"<body>\n<h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n"
    )


def markdown_inline(text: str) -> str:
    """The few markdown marks the headline uses, as HTML."""
    return html.escape(text.removeprefix("- "))
