#!/usr/bin/env python3
"""Check every link inside the rendered documentation site, and the READMEs' links into the repository.

Usage: check-links.py SITE_DIR [MARKDOWN_FILE ...]

Walks every HTML page under SITE_DIR, collects the ids (and <a name>s) of each page, then checks each
relative href and src: the file it names must exist inside SITE_DIR, and its #fragment, if any, must
be an id of that page. A link to this repository on GitHub (REPOSITORY_URL/blob/main/PATH or
/tree/main/PATH) must name a file or folder of this checkout, and a #fragment of a Markdown file one
of its headings as GitHub names them. Other links with a scheme (https:, mailto:, ...) leave the site
and are not followed.

Each MARKDOWN_FILE (a README) is checked the same way for its relative links and its links to this
repository: the path must exist in this checkout and a #fragment must be a heading of the target.

Exits 1 and lists every broken link, or prints how many links it checked.
"""

import os
import re
import sys
import unicodedata
from html.parser import HTMLParser
from urllib.parse import unquote, urlsplit

REPOSITORY_URL = "https://github.com/ppio/ppio-gpu-operator"
CHECKOUT = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


class Page(HTMLParser):
    """The ids a page defines and the links it holds."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids = set()
        self.links = []  # (line, attribute value)
        self.base = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("name"):
            self.ids.add(attrs["name"])
        if tag == "base" and attrs.get("href") is not None:
            self.base = attrs["href"]
            return
        for attribute in ("href", "src"):
            value = attrs.get(attribute)
            if value is not None:
                self.links.append((self.getpos()[0], value))

    handle_startendtag = handle_starttag


def parse(path):
    page = Page()
    with open(path, encoding="utf-8") as f:
        page.feed(f.read())
    page.close()
    return page


def resolve(site, page, base, target):
    """The file a relative link of `page` names, the site's root standing for "/"."""
    if target.startswith("/"):
        return os.path.join(site, target.lstrip("/"))
    directory = os.path.dirname(page)
    if base is not None:  # <base href>: relative links start from there
        base = unquote(urlsplit(base).path)
        if not base.endswith("/"):
            base = os.path.dirname(base) + "/"
        directory = os.path.join(site, base.lstrip("/")) if base.startswith("/") else os.path.join(directory, base)
    return os.path.join(directory, target)


FENCE = re.compile(r"^(```|~~~)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
MARKDOWN_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
# A reference definition (`[name]: target`) and an HTML link, the two other ways Markdown links.
REFERENCE_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?([^\s>]+)>?")
HTML_LINK = re.compile(r"<a\s[^>]*\bhref\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)


def markdown_lines(path):
    """The lines of a Markdown file outside fenced code blocks, with their numbers."""
    fenced = False
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if FENCE.match(line.lstrip()):
                fenced = not fenced
                continue
            if not fenced:
                yield number, line.rstrip("\n")


def heading_text(raw):
    """The text GitHub renders of a heading's Markdown: code spans as written (underscores and all),
    emphasis markers and link targets dropped."""
    out = []
    for part in re.split(r"(`[^`]*`)", raw):
        if len(part) >= 2 and part.startswith("`") and part.endswith("`"):
            out.append(part[1:-1])
        else:
            part = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", part)
            out.append(re.sub(r"\*\*|\*|(?<!\w)_+|_+(?!\w)", "", part))
    return "".join(out)


def github_anchors(path):
    """The anchors GitHub gives the headings of a Markdown file: the heading's text in lower case,
    letters, digits, spaces, hyphens and underscores kept, spaces turned into hyphens."""
    anchors, seen = set(), {}
    for _, line in markdown_lines(path):
        match = HEADING.match(line)
        if not match:
            continue
        text = heading_text(match.group(1))
        slug = "".join(c for c in text.lower() if c in " -_" or unicodedata.category(c)[0] in "LN").replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def check_in_checkout(path, fragment):
    """Why a link to `path` (and `fragment`) of this checkout is broken, or None."""
    path = os.path.realpath(path)
    if os.path.commonpath([CHECKOUT, path]) != CHECKOUT:
        return "leads outside the repository"
    if not os.path.exists(path):
        return f"no file {os.path.relpath(path, CHECKOUT)} in the repository"
    if fragment and path.endswith(".md") and fragment not in github_anchors(path):
        return f"no heading for #{fragment} in {os.path.relpath(path, CHECKOUT)}"
    return None


def repository_path(url):
    """The checkout path a link to this repository on GitHub names, or None for another address."""
    prefix = urlsplit(REPOSITORY_URL)
    if (url.scheme, url.netloc) != (prefix.scheme, prefix.netloc) or not url.path.startswith(prefix.path + "/"):
        return None
    parts = url.path[len(prefix.path) + 1:].split("/", 2)
    if len(parts) == 3 and parts[0] in ("blob", "tree", "edit") and parts[1] == "main":
        return os.path.join(CHECKOUT, unquote(parts[2]))
    return None


def check_site(site, broken):
    pages = {}
    for directory, _, files in os.walk(site):
        for name in files:
            if name.endswith(".html"):
                path = os.path.join(directory, name)
                pages[path] = parse(path)

    checked = 0
    for path, page in sorted(pages.items()):
        here = os.path.relpath(path, site)
        for line, value in page.links:
            url = urlsplit(value.strip())
            if url.scheme or url.netloc:
                in_checkout = repository_path(url)
                if in_checkout is not None and "{path}" not in value:  # not the edit-url template
                    checked += 1
                    reason = check_in_checkout(in_checkout, unquote(url.fragment))
                    if reason:
                        broken.append(f"{here}:{line}: {value}: {reason}")
                continue  # leaves the site
            checked += 1
            if url.path:
                target = os.path.realpath(resolve(site, path, page.base, unquote(url.path)))
                if os.path.isdir(target):
                    target = os.path.join(target, "index.html")
                if os.path.commonpath([site, target]) != site:
                    broken.append(f"{here}:{line}: {value}: leads outside the site")
                    continue
                if not os.path.isfile(target):
                    broken.append(f"{here}:{line}: {value}: no file {os.path.relpath(target, site)}")
                    continue
            else:
                target = path
            fragment = unquote(url.fragment)
            if fragment and target.endswith(".html"):
                ids = pages[target].ids if target in pages else parse(target).ids
                if fragment not in ids:
                    broken.append(f"{here}:{line}: {value}: no id {fragment!r} in {os.path.relpath(target, site)}")
    return checked, len(pages)


def check_markdown(path, broken):
    checked = 0
    here = os.path.relpath(os.path.realpath(path), CHECKOUT)
    for number, line in markdown_lines(path):
        line = re.sub(r"`[^`]*`", "", line)  # code spans hold no links
        links = MARKDOWN_LINK.findall(line) + HTML_LINK.findall(line) + REFERENCE_DEFINITION.findall(line)
        for value in links:
            url = urlsplit(value)
            if url.scheme or url.netloc:
                target = repository_path(url)
                if target is None:
                    continue
            elif url.path:
                target = os.path.join(os.path.dirname(os.path.abspath(path)), unquote(url.path))
            else:
                target = os.path.abspath(path)
            checked += 1
            reason = check_in_checkout(target, unquote(url.fragment))
            if reason:
                broken.append(f"{here}:{number}: {value}: {reason}")
    return checked


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    site = os.path.realpath(sys.argv[1])
    if not os.path.isfile(os.path.join(site, "index.html")):
        sys.exit(f"{site} holds no index.html: build the site first (make docs)")

    broken = []
    checked, pages = check_site(site, broken)
    for markdown in sys.argv[2:]:
        checked += check_markdown(markdown, broken)

    if broken:
        print(f"{len(broken)} broken link(s):", file=sys.stderr)
        for entry in broken:
            print(f"  {entry}", file=sys.stderr)
        sys.exit(1)
    print(f"docs links: {checked} links on {pages} pages and {len(sys.argv) - 2} READMEs, all lead somewhere")


if __name__ == "__main__":
    main()
