"""A natural-English corpus built from Debian packages' documentation (nothing else is
downloaded): Python's HTML documentation (`python3.X-doc`), the English man pages
and the README/text files under /usr/share/doc.

    python -m infinitecontext.trainer.corpus --out corpus --fetch-python-doc

writes `corpus/train.jsonl` and `corpus/heldout.jsonl`, one `{"text": …}` record a
line (chunks of about `chunk_chars` characters, whitespace collapsed, so that token
counts add up sentence by sentence, see data.py). Documents, not chunks, are split: a
document goes to the held-out file when a hash of its path says so, so held-out
perplexity and held-out haystacks never share a page with training. The output is a
pure function of the installed files: sources are read in sorted order.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import html.parser
import json
import re
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HELDOUT_SHARE = 20
"""One document in HELDOUT_SHARE goes to heldout.jsonl."""

_TEXT_TAGS = {"p", "li", "dt", "dd", "h1", "h2", "h3", "h4", "blockquote"}
_SKIP_TAGS = {"pre", "script", "style", "nav", "footer"}
_ROFF_TEXT_MACROS = {"B", "I", "BR", "IR", "RB", "RI", "BI", "IB", "SH", "SS", "SM"}
_ROFF_ESCAPE = re.compile(r"\\(\((..)|\[[^\]]*\]|f.|s[-+]?\d|\*.|[&|^~%e-])")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Document:
    name: str
    """The file it came from, relative to its source root (the split's hash key)."""
    text: str


class _HtmlText(html.parser.HTMLParser):
    """The paragraphs of an HTML page: text inside <p>, <li>, headings…, never code."""

    def __init__(self) -> None:
        super().__init__()
        self.paragraphs: list[str] = []
        self._depth = 0
        self._skip = 0
        self._parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skip += 1
        elif tag in _TEXT_TAGS:
            self._depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag in _TEXT_TAGS and self._depth:
            self._depth -= 1
            if not self._depth:
                self._flush()

    def handle_data(self, data: str) -> None:
        if self._depth and not self._skip:
            self._parts.append(data)

    def _flush(self) -> None:
        text = _SPACE.sub(" ", "".join(self._parts)).strip().replace("¶", "")
        if len(text.split()) >= 4:
            self.paragraphs.append(text)
        self._parts = []


def html_text(page: str) -> str:
    parser = _HtmlText()
    parser.feed(page)
    return " ".join(parser.paragraphs)


def roff_text(source: str) -> str:
    """The prose of a man page: macro lines dropped, font and character escapes removed."""
    lines = []
    for line in source.splitlines():
        if line.startswith((".", "'")):
            macro, _, rest = line[1:].strip().partition(" ")
            if macro not in _ROFF_TEXT_MACROS:
                continue
            line = rest.replace('"', "")
        line = _ROFF_ESCAPE.sub(lambda m: "-" if m.group(0) == "\\-" else "", line)
        lines.append(line)
    return _SPACE.sub(" ", " ".join(lines)).strip()


def python_docs(root: Path) -> Iterator[Document]:
    for path in sorted(root.glob("**/*.html")):
        if "_static" in path.parts or path.name in ("genindex.html", "search.html"):
            continue
        text = html_text(path.read_text(errors="replace"))
        if text:
            yield Document(f"python/{path.relative_to(root)}", text)


def man_pages(root: Path) -> Iterator[Document]:
    """English pages only (man1 … man8 at the top, not the translated ones), without the
    Google Cloud SDK's generated command reference (thousands of near-identical pages)."""
    for path in sorted(root.glob("man[1-8]/*.gz")):
        if path.name.startswith("gcloud"):
            continue
        try:
            source = gzip.decompress(path.read_bytes()).decode(errors="replace")
        except (OSError, EOFError):
            continue
        if source.startswith(".so "):
            continue  # a link to another page
        text = roff_text(source)
        if text:
            yield Document(f"man/{path.relative_to(root)}", text)


def package_docs(root: Path) -> Iterator[Document]:
    """README, NEWS-less text files of installed packages (no changelogs, no licences)."""
    for path in sorted(root.glob("*/*")):
        name = path.name.lower()
        if not path.is_file() or not re.match(r"(readme|.*\.txt|.*\.md)(\.gz)?$", name):
            continue
        raw = path.read_bytes()
        if name.endswith(".gz"):
            try:
                raw = gzip.decompress(raw)
            except (OSError, EOFError):
                continue
        text = _SPACE.sub(" ", raw.decode(errors="replace")).strip()
        if len(text) > 200:
            yield Document(f"doc/{path.relative_to(root)}", text)


def fetch_python_doc(cache: Path) -> Path:
    """Python's HTML docs from the Debian package, unpacked (not installed) under `cache`."""
    unpacked = cache / "python-doc"
    if not unpacked.exists():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            subprocess.run(["apt-get", "download", "python3-doc"], cwd=tmp, check=True)
            version = _depends_version(next(Path(tmp).glob("python3-doc_*.deb")))
            subprocess.run(["apt-get", "download", version], cwd=tmp, check=True)
            deb = next(Path(tmp).glob(f"{version}_*.deb"))
            subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
    return next(unpacked.glob("usr/share/doc/python3*/html"))


def _depends_version(deb: Path) -> str:
    """python3-doc depends on python3.X-doc: the package with the actual pages."""
    fields = subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Depends"], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"python3\.\d+-doc", fields)
    if not match:
        raise RuntimeError(f"{deb}: no python3.X-doc dependency in {fields!r}")
    return match.group(0)


def chunks(text: str, size: int) -> Iterator[str]:
    """Pieces of about `size` characters, cut after a sentence end where there is one."""
    start = 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            cut = text.rfind(". ", start + size // 2, end)
            end = cut + 1 if cut > 0 else end
        piece = text[start:end].strip()
        if piece:
            yield piece
        start = end


def is_heldout(document: Document) -> bool:
    digest = hashlib.blake2b(document.name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % HELDOUT_SHARE == 0


def build(
    out: Path,
    python_doc: Path | None,
    man_root: Path = Path("/usr/share/man"),
    doc_root: Path = Path("/usr/share/doc"),
    chunk_chars: int = 4000,
    max_bytes: int = 40_000_000,
) -> dict[str, int]:
    """Write train.jsonl and heldout.jsonl under `out`; return record counts and bytes."""
    sources: list[Iterator[Document]] = [man_pages(man_root), package_docs(doc_root)]
    if python_doc is not None:
        sources.insert(0, python_docs(python_doc))
    out.mkdir(parents=True, exist_ok=True)
    stats = {"documents": 0, "train_records": 0, "heldout_records": 0, "bytes": 0}
    with (out / "train.jsonl").open("w") as train, (out / "heldout.jsonl").open("w") as heldout:
        for source in sources:
            for document in source:
                if stats["bytes"] >= max_bytes:
                    break
                stats["documents"] += 1
                split = "heldout" if is_heldout(document) else "train"
                for piece in chunks(document.text, chunk_chars):
                    line = json.dumps({"text": piece}, ensure_ascii=False) + "\n"
                    (heldout if split == "heldout" else train).write(line)
                    stats[f"{split}_records"] += 1
                    stats["bytes"] += len(line.encode())
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--python-doc", type=Path, help="Python's html directory, if unpacked")
    parser.add_argument(
        "--fetch-python-doc", action="store_true", help="apt-get download python3-doc first"
    )
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "icx-corpus")
    parser.add_argument("--max-mb", type=float, default=40.0)
    args = parser.parse_args()
    python_doc = args.python_doc
    if python_doc is None and args.fetch_python_doc:
        python_doc = fetch_python_doc(args.cache)
    stats = build(args.out, python_doc, max_bytes=int(args.max_mb * 1e6))
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
