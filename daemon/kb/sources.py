"""Reading knowledge-base sources: Markdown, plain text, HTML, PDF and JSONL, as files or folders.

Every reader returns ``SourceDocument``s whose text is either Markdown (headings and lists
kept, so chunking can follow the structure) or plain text (paragraphs separated by blank
lines). HTML is converted to Markdown for that reason.

The audience (``public``/``internal``) comes from, strongest first: the ``--internal`` flag
(``force_audience``), an ``audience:`` key in Markdown front matter or a JSONL entry, and
finally the path: a folder named ``internal`` or a file name containing ``.internal.``
(patterns configurable in ``[kb] internal_paths``). Internal text may guide a draft but is
never quoted in one, so when in doubt the flag is the explicit way to say so.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

TextFormat = Literal["markdown", "text"]

MARKDOWN_SUFFIXES = (".md", ".markdown")
TEXT_SUFFIXES = (".txt", ".text")
HTML_SUFFIXES = (".html", ".htm")
PDF_SUFFIXES = (".pdf",)
JSONL_SUFFIXES = (".jsonl",)
SUPPORTED_SUFFIXES = MARKDOWN_SUFFIXES + TEXT_SUFFIXES + HTML_SUFFIXES + PDF_SUFFIXES + JSONL_SUFFIXES
DEFAULT_INTERNAL_PATTERNS = ("*/internal/*", "*.internal.*")

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n---[ \t]*(?:\n|\Z)", re.DOTALL)
_H1 = re.compile(r"^#\s+(.+?)\s*#*\s*$", re.MULTILINE)
_HTML_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


class SourceError(ValueError):
    """A file that cannot be read as a KB source; the message names the file, never its text."""


@dataclass(frozen=True)
class SourceDocument:
    source: str  # resolved path of the file
    external_id: str  # entry id inside a multi-document file (JSONL), else ''
    title: str
    text: str
    format: TextFormat
    audience: str  # 'public' or 'internal'
    # A person said so (--internal/--public, an ``audience:`` key) rather than a default or the path:
    # only such a statement may make a stored internal document public again.
    audience_explicit: bool = False

    def checksum(self, salt: str = "") -> str:
        """What decides re-chunking: content, title, audience, and ``salt`` (the chunking parameters)."""
        h = hashlib.sha256()
        for part in (self.title, self.format, self.audience, salt, self.text):
            h.update(part.encode("utf-8", "surrogatepass"))
            h.update(b"\0")
        return h.hexdigest()


def iter_files(path: Path) -> Iterator[Path]:
    """A file as is; a folder recursively, sorted, skipping hidden entries and unsupported types."""
    if path.is_file():
        yield path
        return
    if not path.is_dir():
        raise SourceError(f"{path}: no such file or folder")
    for child in sorted(path.rglob("*")):
        rel = child.relative_to(path)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if child.is_file() and child.suffix.lower() in SUPPORTED_SUFFIXES:
            yield child


def read_path(
    path: Path,
    force_audience: str | None = None,
    internal_patterns: Sequence[str] = DEFAULT_INTERNAL_PATTERNS,
) -> Iterator[SourceDocument]:
    """All documents of a file or folder (errors of single files raise ``SourceError``)."""
    for file in iter_files(path):
        yield from read_file(file, force_audience, internal_patterns)


def read_file(
    path: Path,
    force_audience: str | None = None,
    internal_patterns: Sequence[str] = DEFAULT_INTERNAL_PATTERNS,
) -> list[SourceDocument]:
    path = path.resolve()
    suffix = path.suffix.lower()
    default_audience = force_audience or audience_from_path(path, internal_patterns)
    try:
        if suffix in MARKDOWN_SUFFIXES:
            docs = [_read_markdown(path, default_audience)]
        elif suffix in TEXT_SUFFIXES:
            docs = [_read_text(path, default_audience)]
        elif suffix in HTML_SUFFIXES:
            docs = [_read_html(path, default_audience)]
        elif suffix in PDF_SUFFIXES:
            docs = [_read_pdf(path, default_audience)]
        elif suffix in JSONL_SUFFIXES:
            docs = list(_read_jsonl(path, default_audience))
        else:
            raise SourceError(f"{path}: unsupported file type {suffix or '(none)'}; use one of {SUPPORTED_SUFFIXES}")
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror}") from None
    if force_audience:
        docs = [_with_audience(d, force_audience) for d in docs]
    return [d for d in docs if d.text.strip()]


def audience_from_path(path: Path, patterns: Iterable[str]) -> str:
    posix = path.as_posix()
    return "internal" if any(fnmatch.fnmatch(posix, p) for p in patterns) else "public"


def _with_audience(doc: SourceDocument, audience: str) -> SourceDocument:
    return replace(doc, audience=audience, audience_explicit=True)


def _check_audience(value: object, path: Path, fallback: str) -> str:
    if value is None or value == "":
        return fallback
    text = str(value).strip().lower()
    if text not in ("public", "internal"):
        raise SourceError(f"{path}: audience must be 'public' or 'internal', not {value!r}")
    return text


def _title_from_stem(path: Path) -> str:
    stem = re.sub(r"[-_]+", " ", path.stem.replace(".internal", "")).strip()
    return stem[:1].upper() + stem[1:] if stem else path.name


def _decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def split_front_matter(text: str) -> tuple[dict[str, str], str]:
    """``key: value`` lines between ``---`` fences (the subset of YAML that KB files use)."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, text
    meta: dict[str, str] = {}
    for line in match.group(1).splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() and not key.startswith((" ", "\t", "#")):
            meta[key.strip().lower()] = value.strip().strip("\"'")
    return meta, text[match.end() :]


def _read_markdown(path: Path, audience: str) -> SourceDocument:
    meta, body = split_front_matter(_decode(path.read_bytes()).replace("\r\n", "\n"))
    title = meta.get("title") or ""
    if not title and (h1 := _H1.search(body)):
        title = h1.group(1)
    return SourceDocument(
        source=str(path),
        external_id="",
        title=title or _title_from_stem(path),
        text=body,
        format="markdown",
        audience=_check_audience(meta.get("audience"), path, audience),
        audience_explicit=meta.get("audience") not in (None, ""),
    )


def _read_text(path: Path, audience: str) -> SourceDocument:
    text = _decode(path.read_bytes()).replace("\r\n", "\n")
    title = _title_from_stem(path)
    first, sep, rest = text.lstrip().partition("\n\n")
    if sep and "\n" not in first and len(first) <= 120:
        # A short first line on its own is the title, as in most hand-written notes.
        title, text = first.strip(), rest
    return SourceDocument(str(path), "", title, text, "text", audience)


def html_to_markdown(html: str) -> str:
    import html2text

    converter = html2text.HTML2Text()
    converter.body_width = 0
    converter.ignore_images = True
    converter.ignore_emphasis = True
    converter.ignore_links = True
    converter.ul_item_mark = "-"
    return converter.handle(html)


def _read_html(path: Path, audience: str) -> SourceDocument:
    html = _decode(path.read_bytes())
    body = html_to_markdown(html)
    title = ""
    if match := _HTML_TITLE.search(html):
        import html as html_lib

        title = " ".join(html_lib.unescape(match.group(1)).split())
    if not title and (h1 := _H1.search(body)):
        title = h1.group(1)
    return SourceDocument(str(path), "", title or _title_from_stem(path), body, "markdown", audience)


def _read_pdf(path: Path, audience: str) -> SourceDocument:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        pages = [page.extract_text() or "" for page in reader.pages]
        meta_title = (reader.metadata.title if reader.metadata else None) or ""
    except (PdfReadError, ValueError, KeyError) as exc:
        raise SourceError(f"{path}: not a readable PDF ({type(exc).__name__})") from None
    # Pages are separated by a blank line so that a paragraph never spans two pages' noise.
    text = "\n\n".join(p.strip() for p in pages if p.strip())
    return SourceDocument(str(path), "", meta_title.strip() or _title_from_stem(path), text, "text", audience)


def _read_jsonl(path: Path, audience: str) -> Iterator[SourceDocument]:
    seen: set[str] = set()
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            line = _decode(raw).strip()
            if not line:
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                raise SourceError(f"{path}:{lineno}: not a JSON object") from None
            if not isinstance(entry, dict) or "text" not in entry:
                raise SourceError(f'{path}:{lineno}: expected {{"id", "title", "text"}}')
            entry_id = str(entry.get("id") or lineno)
            if entry_id in seen:
                raise SourceError(f"{path}:{lineno}: duplicate id {entry_id!r}")
            seen.add(entry_id)
            yield SourceDocument(
                source=str(path),
                external_id=entry_id,
                title=str(entry.get("title") or entry_id),
                text=str(entry["text"]),
                format="text",
                audience=_check_audience(entry.get("audience"), path, audience),
                audience_explicit=entry.get("audience") not in (None, ""),
            )
