"""The report's HTML page (`bfsdata.report.html`): self-contained, with every section.

The synthetic scores are made in scores.py, the shared report `done` in conftest.py."""

from __future__ import annotations

from html.parser import HTMLParser

from bfsdata.report.html import SECTIONS


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids, self.links, self.images, self.tags = set(), [], [], []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        self.ids |= {a["id"]} if "id" in a else set()
        self.links += [v for k, v in a.items() if k in ("src", "href") and v]
        self.images += [a["src"]] if tag == "img" else []


def test_html_is_self_contained_with_every_section(done) -> None:
    page = _Page()
    page.feed(done["html"])
    assert {k for k, _ in SECTIONS} <= page.ids
    # every link is a page anchor or an embedded image: nothing to fetch
    assert all(u.startswith(("#", "data:image/png;base64,")) for u in page.links)
    assert not [u for u in page.links if u.startswith("#") and u[1:] not in page.ids]
    assert "script" not in page.tags and "link" not in page.tags
    assert all(src.startswith("data:image/png;base64,") for src in page.images)
    n_gallery = len(done["metrics"]["gallery"])
    assert len(page.images) == 4 + 2 + n_gallery  # regions, Knapp + timing, gallery panels
    html = done["html"]
    texts = ["True positive ratio", "True negative ratio", "False reject rate", "Escape rate"]
    for text in [*texts, "Threshold R3 bottom", "FQA(7-10)", "PASS", "slot 500 ms"]:
        assert text in html, text
    r = done["metrics"]["strip_wise"]["accuracy"]
    assert f'{r["value"]:.4f} <span class="ci">[{r["lo"]:.4f}, {r["hi"]:.4f}]</span>' in html
    assert "IN-SAMPLE" not in html
    # per defect type: test strips D3 (scratch), D4 (spot), D5 (foam, not located)
    section = html[html.index('<section id="defect-types">') :]
    section = section[: section.index("</section>")]
    types = done["metrics"]["defect_types"]["types"]
    assert list(types) == ["foam", "scratch", "spot"]
    for name, t in types.items():
        r, at = t["recall"], t["at_defect"]
        assert f"<b>{name}</b>" in section
        assert f'{r["value"]:.4f} <span class="ci">[{r["lo"]:.4f}, {r["hi"]:.4f}]</span>' in section
        assert f"<td>{at['caught']} / {at['located']}</td>" in section
    assert types["foam"]["at_defect"]["located"] == 0 and types["spot"]["acquisitions"] == 10
    assert "R3 bottom" in section and "R0 flag" in section  # D3's and D4's regions
