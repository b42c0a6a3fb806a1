"""Structure-aware chunking: headings, paragraphs and list items, with a size limit and a small overlap.

Why structure first: a support answer usually lives under one heading, and a step list
split in the middle is useless to a reply. So a heading always starts a new chunk, blocks
(paragraphs, list items, code) are packed whole while they fit, and only a block larger
than the limit is cut, at sentence boundaries. A chunk that had to be continued starts with
the last sentence(s) of its predecessor (the overlap), so an answer straddling the cut is
still found.

Each chunk keeps its heading path with the document title first; ``embed_text`` puts that
path in front of the text, because a bare paragraph ("Tap Delete.") means nothing alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from daemon.kb.sources import SourceDocument, TextFormat

BlockKind = Literal["heading", "paragraph", "item", "code"]

PATH_SEPARATOR = " > "

_ATX = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_SETEXT = re.compile(r"^(=+|-+)\s*$")
_ITEM = re.compile(r"^\s{0,3}(?:[-*+•]|\d{1,3}[.)])\s+")
_FENCE = re.compile(r"^\s{0,3}(```|~~~)")
_SENTENCE_END = re.compile(r"(?<=[.!?:;])\s+(?=\S)")


@dataclass(frozen=True)
class Block:
    kind: BlockKind
    text: str
    level: int = 0  # heading level (1-6)


@dataclass(frozen=True)
class Chunk:
    ordinal: int
    heading_path: tuple[str, ...]  # document title first
    text: str

    @property
    def heading(self) -> str:
        return PATH_SEPARATOR.join(self.heading_path)

    @property
    def embed_text(self) -> str:
        return embed_text(self.heading, self.text)


@dataclass(frozen=True)
class ChunkParams:
    max_chars: int = 500
    overlap_chars: int = 150

    def salt(self) -> str:
        """Part of the document checksum: new parameters re-chunk on the next sync."""
        return f"chunk-v1:{self.max_chars}:{self.overlap_chars}"


def embed_text(heading: str, text: str) -> str:
    """What the embedding model sees for a chunk (also used when re-embedding stored chunks)."""
    return f"{heading}\n{text}" if heading else text


def parse_blocks(text: str, fmt: TextFormat) -> list[Block]:
    """Split text into blocks. Plain text has no headings; Markdown has ATX and Setext ones."""
    blocks: list[Block] = []
    lines: list[str] = []  # the paragraph or list item being collected
    kind: BlockKind = "paragraph"

    def flush() -> None:
        nonlocal lines
        joined = " ".join(line.strip() for line in lines if line.strip())
        if joined:
            blocks.append(Block(kind, joined))
        lines = []

    src = text.replace("\r\n", "\n").split("\n")
    i = 0
    while i < len(src):
        line = src[i]
        if fmt == "markdown" and (fence := _FENCE.match(line)):
            flush()
            marker, code = fence.group(1), []
            i += 1
            while i < len(src) and not src[i].lstrip().startswith(marker):
                code.append(src[i])
                i += 1
            if any(c.strip() for c in code):
                blocks.append(Block("code", "\n".join(code).strip("\n")))
            i += 1
            continue
        if not line.strip():
            flush()
            kind = "paragraph"
        elif fmt == "markdown" and (atx := _ATX.match(line)):
            flush()
            if atx.group(2):
                blocks.append(Block("heading", atx.group(2), len(atx.group(1))))
            kind = "paragraph"
        elif (
            fmt == "markdown"
            and kind == "paragraph"
            and len(lines) == 1
            and _SETEXT.match(line)
            and not _ITEM.match(lines[0])
        ):
            heading = lines[0].strip()
            lines = []
            blocks.append(Block("heading", heading, 1 if line.strip()[0] == "=" else 2))
        elif _ITEM.match(line):
            flush()
            kind = "item"
            lines = [line.strip()]
        else:
            lines.append(line)
        i += 1
    flush()
    return blocks


def split_sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text) if s]


def _split_long(text: str, limit: int) -> list[str]:
    """Cut an oversized block into pieces of at most ``limit`` characters, keeping sentences whole."""
    pieces: list[str] = []
    current = ""
    for sentence in split_sentences(text):
        while len(sentence) > limit:  # a "sentence" without punctuation: cut at a space
            cut = sentence.rfind(" ", 0, limit)
            cut = cut if cut > limit // 2 else limit
            head, sentence = sentence[:cut].strip(), sentence[cut:].strip()
            if current:
                pieces.append(current)
                current = ""
            pieces.append(head)
        if current and len(current) + 1 + len(sentence) > limit:
            pieces.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}" if current else sentence
    if current:
        pieces.append(current)
    return pieces


def _tail(text: str, limit: int) -> str:
    """The last whole sentences of ``text`` that fit in ``limit`` characters (the overlap)."""
    if limit <= 0:
        return ""
    tail = ""
    for sentence in reversed(split_sentences(text.replace("\n", " "))):
        candidate = f"{sentence} {tail}".strip()
        if len(candidate) > limit:
            break
        tail = candidate
    return tail


def chunk_document(doc: SourceDocument, params: ChunkParams | None = None) -> list[Chunk]:
    return chunk_text(doc.title, doc.text, doc.format, params)


def chunk_text(title: str, text: str, fmt: TextFormat, params: ChunkParams | None = None) -> list[Chunk]:
    params = params or ChunkParams()
    limit = max(params.max_chars, 100)
    chunks: list[Chunk] = []
    headings: list[tuple[int, str]] = []
    parts: list[str] = []  # blocks of the chunk being built
    size = 0

    def path() -> tuple[str, ...]:
        names = [h for _, h in headings]
        if names and names[0].strip().lower() == title.strip().lower():
            names = names[1:]  # the H1 that repeats the title
        return (title, *names) if title else tuple(names)

    def emit(continued: bool) -> None:
        """Close the current chunk; if the section goes on, seed the next with the overlap."""
        nonlocal parts, size
        if not parts:
            return
        body = "\n".join(parts)
        chunks.append(Chunk(len(chunks), path(), body))
        overlap = _tail(parts[-1], params.overlap_chars) if continued else ""
        parts = [overlap] if overlap else []
        size = len(overlap)

    def add(piece: str, separator: str) -> None:
        nonlocal size
        if parts and size + len(separator) + len(piece) > limit:
            emit(continued=True)
        if parts and separator == "\n\n":
            parts[-1] += "\n"  # keep paragraph breaks visible: "\n".join then gives a blank line
        parts.append(piece)
        size += len(separator) + len(piece)

    for block in parse_blocks(text, fmt):
        if block.kind == "heading":
            emit(continued=False)
            while headings and headings[-1][0] >= block.level:
                headings.pop()
            headings.append((block.level, block.text))
            continue
        separator = "\n" if block.kind == "item" else "\n\n"
        if len(block.text) > limit:
            for piece in _split_long(block.text, limit - params.overlap_chars):
                add(piece, separator)
        else:
            add(block.text, separator)
    emit(continued=False)
    return chunks
