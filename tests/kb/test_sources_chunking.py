"""Reading sources and chunking them along their structure."""

import itertools
import json
from pathlib import Path

import pytest

from daemon.kb.chunking import ChunkParams, chunk_document, chunk_text, parse_blocks
from daemon.kb.sources import SourceError, read_file, read_path


def make_pdf(path: Path, lines: list[str], title: str = "") -> None:
    """A one-page PDF with Helvetica text lines (enough for pypdf's text extraction)."""
    stream = (
        "BT /F1 12 Tf 72 720 Td 14 TL "
        + " ".join(
            "(" + line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ") Tj T*" for line in lines
        )
        + " ET"
    )
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        "/Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        f"<< /Title ({title}) >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info 6 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(bytes(out))


def test_markdown_front_matter_title_and_audience(tmp_path: Path):
    f = tmp_path / "refunds.md"
    f.write_text("---\ntitle: Refund policy\naudience: internal\n---\n# Ignored H1\n\nRefunds take 5 days.\n")
    [doc] = read_file(f)
    assert (doc.title, doc.audience, doc.format) == ("Refund policy", "internal", "markdown")
    assert "Refunds take 5 days." in doc.text


def test_markdown_h1_title_and_path_audience(tmp_path: Path):
    (tmp_path / "internal").mkdir()
    f = tmp_path / "internal" / "escalation.md"
    f.write_text("# Escalation\n\nCall the on-call engineer.\n")
    [doc] = read_file(f)
    assert (doc.title, doc.audience) == ("Escalation", "internal")
    [forced] = read_file(tmp_path / "internal" / "escalation.md", force_audience="internal")
    assert forced.audience == "internal"


def test_bad_audience_is_an_error(tmp_path: Path):
    f = tmp_path / "x.md"
    f.write_text("---\naudience: secret\n---\ntext\n")
    with pytest.raises(SourceError, match="audience"):
        read_file(f)


def test_text_html_pdf_and_jsonl(tmp_path: Path):
    (tmp_path / "wifi.txt").write_text("Wifi troubleshooting\n\nRestart the router.\nThen reconnect.\n")
    (tmp_path / "battery.html").write_text(
        "<html><head><title>Battery tips</title></head><body><h1>Battery tips</h1><h2>Charging</h2>"
        "<p>Use the original charger.</p><ul><li>Avoid heat</li><li>Update the software</li></ul></body></html>"
    )
    make_pdf(tmp_path / "manual.pdf", ["Resetting the device", "Hold the power button for ten seconds."], "Manual")
    (tmp_path / "faq.jsonl").write_text(
        json.dumps({"id": "a1", "title": "Strikethrough", "text": "Use ~~tildes~~."})
        + "\n"
        + json.dumps({"id": "a2", "title": "Delete account", "text": "Go to settings.", "audience": "internal"})
        + "\n"
    )
    (tmp_path / ".hidden.md").write_text("# no\n")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    docs = {(Path(d.source).name, d.external_id): d for d in read_path(tmp_path)}
    assert set(docs) == {
        ("wifi.txt", ""),
        ("battery.html", ""),
        ("manual.pdf", ""),
        ("faq.jsonl", "a1"),
        ("faq.jsonl", "a2"),
    }
    assert docs["wifi.txt", ""].title == "Wifi troubleshooting"
    assert "Restart the router." in docs["wifi.txt", ""].text
    html = docs["battery.html", ""]
    assert html.title == "Battery tips" and "## Charging" in html.text and "- Avoid heat" in html.text
    pdf = docs["manual.pdf", ""]
    assert pdf.title == "Manual" and "Hold the power button" in pdf.text
    assert docs["faq.jsonl", "a2"].audience == "internal" and docs["faq.jsonl", "a1"].audience == "public"


def test_jsonl_errors_name_the_line(tmp_path: Path):
    f = tmp_path / "kb.jsonl"
    f.write_text('{"id": "1", "title": "t", "text": "x"}\nnot json\n')
    with pytest.raises(SourceError, match=r"kb.jsonl:2"):
        read_file(f)


def test_checksum_changes_with_content_audience_and_params(tmp_path: Path):
    f = tmp_path / "a.md"
    f.write_text("# A\n\ntext\n")
    [doc] = read_file(f)
    [internal] = read_file(f, force_audience="internal")
    assert doc.checksum() != internal.checksum()
    assert doc.checksum("chunk-v1:900:150") != doc.checksum("chunk-v1:500:150")
    assert doc.checksum() == read_file(f)[0].checksum()


def test_blocks_follow_markdown_structure():
    blocks = parse_blocks(
        "# T\n\nPara one\ncontinues.\n\n1. Step one\n2. Step two\n   wrapped\n\nSetext\n---\n\n```\ncode\n```\n",
        "markdown",
    )
    assert [(b.kind, b.text) for b in blocks] == [
        ("heading", "T"),
        ("paragraph", "Para one continues."),
        ("item", "1. Step one"),
        ("item", "2. Step two wrapped"),
        ("heading", "Setext"),
        ("code", "code"),
    ]


def test_plain_text_has_no_headings():
    assert [b.kind for b in parse_blocks("# not a heading\n\n- item", "text")] == ["paragraph", "item"]


def test_chunks_carry_title_and_heading_path():
    md = "# Phone\n\nIntro.\n\n## Wifi\n\nTurn wifi on.\n\n### Advanced\n\nSet a proxy.\n\n## Battery\n\nCharge it."
    chunks = chunk_text("Phone", md, "markdown")
    assert [c.heading for c in chunks] == [
        "Phone",
        "Phone > Wifi",
        "Phone > Wifi > Advanced",
        "Phone > Battery",
    ]
    assert chunks[2].embed_text == "Phone > Wifi > Advanced\nSet a proxy."
    assert [c.ordinal for c in chunks] == [0, 1, 2, 3]


def test_size_limit_and_overlap():
    sentences = [f"Sentence number {i} explains one more detail." for i in range(60)]
    chunks = chunk_text("Doc", " ".join(sentences), "text", ChunkParams(max_chars=400, overlap_chars=100))
    assert len(chunks) > 5
    assert all(len(c.text) <= 400 for c in chunks)
    for before, after in itertools.pairwise(chunks):
        last_sentence = before.text.replace("\n", " ").split(". ")[-1].rstrip(".")
        assert last_sentence in after.text  # the overlap repeats the end of the previous chunk
    joined = " ".join(c.text for c in chunks)
    assert all(s.rstrip(".") in joined for s in sentences)


def test_list_is_not_split_when_it_fits(tmp_path: Path):
    f = tmp_path / "steps.md"
    f.write_text("# Reset\n\n" + "\n".join(f"{i}. Do step {i}." for i in range(1, 8)) + "\n")
    [doc] = read_file(f)
    [chunk] = chunk_document(doc)
    assert chunk.text.count("\n") == 6 and chunk.heading == "Reset"
