"""One self-contained HTML page: inline CSS, figures as base64 data URIs, no script, no
network. The page model is generic: the run report and the training report both fill it."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape

GREEN, RED, GREY = "#2e7d32", "#c62828", "#757575"


@dataclass(frozen=True)
class Status:
    ok: bool | None  # None: unknown (grey)
    text: str  # "OK", "FAILED", ...
    detail: str = ""  # one sentence under it


@dataclass(frozen=True)
class Tile:
    label: str
    value: str
    alarm: bool = False  # shown in red
    small: bool = False  # long values (model versions)


@dataclass(frozen=True)
class Figure:
    name: str  # the PNG's file name next to the page
    title: str
    caption: str  # how to read it
    png: bytes


@dataclass(frozen=True)
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]
    caption: str = ""
    empty: str = "nothing to show"


@dataclass(frozen=True)
class Page:
    title: str
    status: Status
    tiles: list[Tile]
    subtitle: str = ""
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    details: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


CSS = """
* { box-sizing: border-box; }
body { font-family: -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif;
       margin: 0; background: #f4f5f7; color: #222; }
main { max-width: 1280px; margin: 0 auto; padding: 16px 20px 40px; }
header.status { color: #fff; padding: 18px 24px; border-radius: 8px; display: flex;
                align-items: baseline; gap: 18px; flex-wrap: wrap; }
header.status .word { font-size: 34px; font-weight: 700; letter-spacing: 1px; }
header.status .detail { font-size: 17px; }
h1 { font-size: 20px; margin: 18px 0 2px; }
.subtitle { color: #555; font-size: 14px; margin-bottom: 12px; overflow-wrap: anywhere; }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(140px, 1fr)); gap: 10px;
         margin: 12px 0 8px; }
.tile { background: #fff; border-radius: 8px; padding: 10px 14px;
        box-shadow: 0 1px 2px rgba(0,0,0,.08); }
.tile .label { color: #666; font-size: 12px; text-transform: uppercase; letter-spacing: .5px; }
.tile .value { font-size: 26px; font-weight: 600; margin-top: 2px; }
.tile .value.small { font-size: 13px; font-family: "DejaVu Sans Mono", Menlo, monospace;
                     overflow-wrap: anywhere; font-weight: 500; padding-top: 6px; }
.tile .value.alarm { color: #c62828; }
.notes { background: #fff8e1; border-left: 4px solid #f9a825; padding: 8px 14px; margin: 10px 0; }
.grid { display: grid; gap: 14px; margin-top: 14px;
        grid-template-columns: repeat(auto-fit, minmax(min(560px, 100%), 1fr)); }
section { background: #fff; border-radius: 8px; padding: 12px 16px;
          box-shadow: 0 1px 2px rgba(0,0,0,.08); }
section h2 { font-size: 16px; margin: 2px 0 8px; }
section img { width: 100%; height: auto; display: block; }
section p.caption { color: #555; font-size: 13px; margin: 8px 0 2px; }
.tables section { margin-top: 14px; overflow-x: auto; }
table { border-collapse: collapse; font-size: 13px; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eee; vertical-align: top; }
th { background: #fafafa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td code, .details code { font-size: 12px; overflow-wrap: anywhere; }
footer { color: #888; font-size: 12px; margin-top: 20px; }
"""


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _status(s: Status) -> str:
    color = GREY if s.ok is None else GREEN if s.ok else RED
    return (
        f'<header class="status" style="background:{color}">'
        f'<span class="word">{escape(s.text)}</span>'
        f'<span class="detail">{escape(s.detail)}</span></header>'
    )


def _tile(t: Tile) -> str:
    cls = "value" + (" alarm" if t.alarm else "") + (" small" if t.small else "")
    return (
        f'<div class="tile"><div class="label">{escape(t.label)}</div>'
        f'<div class="{cls}">{escape(t.value)}</div></div>'
    )


def _figure(f: Figure) -> str:
    return (
        f'<section id="{escape(f.name)}"><h2>{escape(f.title)}</h2>'
        f'<img alt="{escape(f.title)}" src="{data_uri(f.png)}">'
        f'<p class="caption">{escape(f.caption)}</p></section>'
    )


def _cell(value: str) -> str:
    numeric = value.replace(".", "", 1).replace(",", "").replace(" s", "").strip().isdigit()
    return f'<td class="num">{escape(value)}</td>' if numeric else f"<td>{escape(value)}</td>"


def _table(t: Table) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in t.columns)
    if t.rows:
        body = "".join("<tr>" + "".join(_cell(str(v)) for v in row) + "</tr>" for row in t.rows)
    else:
        body = f'<tr><td colspan="{len(t.columns)}">{escape(t.empty)}</td></tr>'
    caption = f'<p class="caption">{escape(t.caption)}</p>' if t.caption else ""
    return (
        f"<section><h2>{escape(t.title)}</h2>{caption}"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></section>"
    )


def render(page: Page) -> str:
    details = "".join(
        f"<tr><th>{escape(k)}</th><td><code>{escape(v)}</code></td></tr>" for k, v in page.details
    )
    notes = "".join(f"<p>{escape(n)}</p>" for n in page.notes)
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(page.title)}</title><style>{CSS}</style></head><body><main>",
        _status(page.status),
        f"<h1>{escape(page.title)}</h1>",
        f'<div class="subtitle">{escape(page.subtitle)}</div>',
        '<div class="tiles">' + "".join(_tile(t) for t in page.tiles) + "</div>",
        f'<div class="notes">{notes}</div>' if notes else "",
        '<div class="grid">' + "".join(_figure(f) for f in page.figures) + "</div>",
        '<div class="tables">' + "".join(_table(t) for t in page.tables),
        (
            '<section class="details"><h2>Details</h2><table><tbody>'
            f"{details}</tbody></table></section>"
            if details
            else ""
        ),
        "</div>",
        f"<footer>Generated by reelay at {generated}. Self-contained: no scripts, no network."
        "</footer>",
        "</main></body></html>",
    ]
    return "\n".join(p for p in parts if p)
