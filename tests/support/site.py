"""A generated web site served by a real nginx: the ground the discovery tests stand on.

``build_site(root, base, dead)`` writes the site into ``root`` for the URL ``base`` and
returns a :class:`Site` that says what is in it (every page, every broken link, what a
sitemap lists), so a test asserts against the manifest, never against a second copy of
the same knowledge. ``serve_site(workdir, pages=N)`` builds it and starts nginx on it (a
context manager); the crawl's tests and ``scripts/bench-crawl`` use the same two.

What the site holds:

* pages linking to each other: ``/index.html``, ``/about.html``, ``/docs/`` (relative links,
  ``../``), ``/blog/post-N.html`` (a chain of ``pages`` posts, each to the next and back);
* broken links: a missing page (``/missing.html``, ``/docs/nothere.html``, ``/blog/post-0.html``),
  a broken image (``/img/missing.png``), a dead host (``dead``: a closed port on loopback,
  so nothing leaves the machine);
* links that are not checked: ``mailto:``, ``tel:``, ``javascript:``, ``data:`` and fragments;
* ``/robots.txt`` disallowing ``/private/`` (whose pages link on to more pages);
* ``/sitemap.xml``, a sitemap index over ``/sitemaps/pages.xml`` (plain; nginx sends it
  with ``Content-Encoding: gzip`` to a client that accepts it) and ``/sitemaps/blog.xml.gz``;
* sitemaps that must be refused: ``/sitemaps/bomb.xml.gz`` (5 GiB of whitespace in 5 MiB of
  gzip members), ``/sitemaps/huge.xml`` (the same bytes sent as ``Content-Encoding: gzip``:
  a 5 GiB file as the reader sees it), ``/sitemaps/errors.xml`` (bad entries),
  ``/sitemaps/deep.xml`` (indexes nested four levels deep);
* ``/docs/README.md``, a Markdown document with links of every kind;
* ``/moved/`` (301 to ``/docs/``) and ``/busy.xml`` (503 with ``Retry-After: 1``).
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.conformance import servers
from tests.support import services

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
       b"\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35\x81\x84\x00\x00\x00\x00IEND\xaeB`\x82")
BOMB_MEMBER = 16 * 1024 * 1024  # bytes of whitespace per gzip member of the bomb
BOMB_MEMBERS = 320              # 320 x 16 MiB = 5 GiB uncompressed


@dataclass
class Site:
    """What the generated site holds, as absolute URLs."""

    base: str                      # http://127.0.0.1:PORT
    root: Path
    dead: str                      # a URL on a host that refuses connections
    log: Path | None = None        # nginx's access log: "msec status path content-encoding"
    pages: list[str] = field(default_factory=list)      # every HTML page reachable by links
    private: list[str] = field(default_factory=list)    # pages under /private/ (robots.txt)
    broken: set[str] = field(default_factory=set)       # link targets that fail (404 or dead)
    assets: set[str] = field(default_factory=set)       # images, CSS, scripts that exist
    sitemap_urls: list[str] = field(default_factory=list)  # what /sitemap.xml lists, in order
    lastmod: dict[str, str] = field(default_factory=dict)  # URL -> its <lastmod>

    def url(self, path: str) -> str:
        return self.base + path

    def requests(self) -> list[tuple[float, int, str, str]]:
        """What nginx served so far: (time, status, path, Content-Encoding or "-")."""
        if self.log is None or not self.log.exists():
            return []
        rows = []
        for line in self.log.read_text().splitlines():
            when, status, path, encoding = line.split(" ", 3)
            rows.append((float(when), int(status), path, encoding))
        return rows


def _page(title: str, body: str, head: str = "") -> str:
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>\n'
            f'<link rel="stylesheet" href="/css/site.css">{head}</head>\n<body>\n<h1 id="top">{title}</h1>\n'
            f"{body}\n</body></html>\n")


def build_site(root: Path, base: str, dead: str, *, pages: int = 20) -> Site:
    """Write the site into ``root`` (served as ``base``); ``pages``: blog posts in the chain."""
    site = Site(base, root, dead)
    u = site.url
    for sub in ("docs", "blog", "private", "img", "css", "js", "sitemaps"):
        (root / sub).mkdir(parents=True, exist_ok=True)

    def write(path: str, text: str | bytes) -> None:
        target = root / path.lstrip("/")
        target.write_bytes(text if isinstance(text, bytes) else text.encode())

    write("/img/logo.png", PNG)
    write("/css/site.css", "body { font-family: sans-serif; }\n")
    write("/js/site.js", "console.log('site');\n")
    site.assets |= {u("/img/logo.png"), u("/css/site.css"), u("/js/site.js")}

    write("/index.html", _page("Home", f"""
<p>Welcome. <a href="/about.html">About us</a>, <a href="docs/index.html">the docs</a>,
<a href="/blog/post-1.html">the blog</a>.</p>
<p><a href="/missing.html">A page that was removed</a></p>
<p><a href="{dead}/">A partner whose server is gone</a></p>
<p><a href="/private/secret.html">Members only</a></p>
<p><a href="mailto:team@example.test">Mail us</a> <a href="tel:+15555550100">Call us</a>
<a href="javascript:window.print()">Print</a> <a href="#top">Top</a></p>
<img src="/img/logo.png" srcset="/img/logo.png 1x, /img/logo.png 2x" alt="Logo">
<img src="data:image/png;base64,iVBORw0KGgo=" alt="inline">
<script src="/js/site.js"></script>""", head='<link rel="icon" href="/img/logo.png">'))
    write("/about.html", _page("About", """
<p><a href="/index.html">Home</a> <a href="index.html#top">Home, top</a></p>
<p><img src="/img/missing.png" alt="Our team"></p>"""))
    write("/docs/index.html", _page("Docs", """
<p><a href="guide.html">Guide</a>, <a href="guide.html#step-2">step 2</a>,
<a href="../about.html">About</a>, <a href="nothere.html">Old page</a>,
<a href="README.md">the README</a></p>"""))
    write("/docs/guide.html", _page("Guide", """
<h2 id="step-2">Step 2</h2><p><a href="./">Docs</a> <a href="/index.html">Home</a></p>"""))
    write("/docs/README.md", f"""# Read me

See [the guide](guide.html "Guide"), ![the logo](/img/logo.png) and [about][about].
Raw links work too: {u('/blog/post-1.html')} and <{u('/docs/guide.html')}>.
A broken one: [old](nothere.html). Not checked: [mail](mailto:team@example.test),
[script](javascript:alert(1)) and [a section](#usage).

<img src="/img/missing.png" alt="html in markdown">

[about]: /about.html
""")
    site.assets.add(u("/docs/README.md"))
    site.pages += [u("/index.html"), u("/about.html"), u("/docs/index.html"), u("/docs/guide.html")]
    site.broken |= {u("/missing.html"), u("/docs/nothere.html"), u("/img/missing.png"), f"{dead}/",
                    u("/blog/post-0.html")}

    for i in range(1, pages + 1):
        prev = f"post-{i - 1}.html"  # post-0 never existed: the first post's broken link
        nxt = f'<a href="post-{i + 1}.html">Next</a>' if i < pages else ""
        write(f"/blog/post-{i}.html", _page(f"Post {i}", f"""
<p><a href="{prev}">Previous</a> {nxt} <a href="/index.html">Home</a></p>
<p>Post {i} of {pages}.</p>"""))
        site.pages.append(u(f"/blog/post-{i}.html"))

    write("/private/secret.html",
          _page("Secret", '<p><a href="hidden.html">Hidden</a> <a href="gone.html">Gone</a></p>'))
    write("/private/hidden.html", _page("Hidden", '<p><a href="/index.html">Home</a></p>'))
    site.private += [u("/private/secret.html"), u("/private/hidden.html")]
    write("/robots.txt", "User-agent: *\nDisallow: /private/\n")

    # Sitemaps: an index over a plain and a gzip sitemap.
    plain = [u("/index.html"), u("/about.html"), u("/docs/index.html"), u("/docs/guide.html")]
    posts = [u(f"/blog/post-{i}.html") for i in range(1, pages + 1)]
    for n, url in enumerate(plain + posts):
        site.lastmod[url] = f"2026-11-{1 + n % 28:02d}"
    write("/sitemaps/pages.xml", _urlset(plain, site.lastmod))
    write("/sitemaps/blog.xml.gz", gzip.compress(_urlset(posts, site.lastmod).encode()))
    write("/sitemap.xml", _index([u("/sitemaps/pages.xml"), u("/sitemaps/blog.xml.gz")]))
    site.sitemap_urls = plain + posts

    write("/sitemaps/errors.xml", f"""<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <url><loc>{u('/index.html')}</loc><lastmod>2026-11-27</lastmod></url>
  <url><loc>ftp://files.example.test/dump.tar</loc></url>
  <url><lastmod>2026-11-27</lastmod></url>
  <url><loc>{u('/about.html')}</loc><lastmod>last tuesday</lastmod></url>
  <url><loc>{u('/index.html')}</loc></url>
</urlset>
""")
    deep = [u(f"/sitemaps/deep-{i}.xml") for i in range(1, 4)]
    write("/sitemaps/deep.xml", _index([deep[0]]))
    write("/sitemaps/deep-1.xml", _index([deep[1]]))
    write("/sitemaps/deep-2.xml", _index([deep[2]]))
    write("/sitemaps/deep-3.xml", _urlset([u("/index.html")], {}))
    with open(root / "sitemaps" / "bomb.xml.gz", "wb") as out:
        out.write(gzip.compress(b'<?xml version="1.0"?>\n<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
                                + f"<url><loc>{u('/index.html')}</loc></url>\n".encode()))
        member = gzip.compress(b" " * BOMB_MEMBER, compresslevel=9)
        for _ in range(BOMB_MEMBERS):
            out.write(member)
    os.link(root / "sitemaps" / "bomb.xml.gz", root / "sitemaps" / "huge.xml.gz")
    return site


def _urlset(urls: list[str], lastmod: dict[str, str]) -> str:
    entries = "".join(f"  <url><loc>{url}</loc>" + (f"<lastmod>{lastmod[url]}</lastmod>" if url in lastmod else "")
                      + "</url>\n" for url in urls)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
            + entries + "</urlset>\n")


def _index(urls: list[str]) -> str:
    entries = "".join(f"  <sitemap><loc>{url}</loc></sitemap>\n" for url in urls)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<sitemapindex '
            'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
            + entries + "</sitemapindex>\n")


def nginx_conf(base: Path, root: Path, port: int) -> str:
    user = "user www-data;" if os.geteuid() == 0 else ""
    return f"""
{user}
worker_processes 1;
daemon off;
pid {base}/nginx.pid;
error_log {base}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    # What the tests read back: each request's path, status, encoding and time.
    log_format site '$msec $status $request_uri $sent_http_content_encoding';
    access_log {base}/access.log site;
    client_body_temp_path {base}/tmp/body;
    proxy_temp_path {base}/tmp/proxy;
    fastcgi_temp_path {base}/tmp/fastcgi;
    uwsgi_temp_path {base}/tmp/uwsgi;
    scgi_temp_path {base}/tmp/scgi;
    types {{ text/html html; text/css css; application/javascript js; image/png png;
             application/xml xml; application/gzip gz; text/markdown md; text/plain txt; }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        gzip on;
        gzip_types application/xml text/markdown text/css;
        gzip_min_length 1;
        # The bomb again, as a 5 GiB XML file sent with Content-Encoding: gzip.
        location = /sitemaps/huge.xml {{ gzip off; gzip_static always; types {{ }} default_type application/xml; }}
        location = /moved/ {{ return 301 /docs/; }}
        location = /busy.xml {{ add_header Retry-After 1 always; return 503; }}
    }}
}}
"""


@contextmanager
def serve_site(*, pages: int = 20) -> Iterator[Site]:
    """Build the site in a directory of its own and serve it with nginx on 127.0.0.1 until
    the end (the directory is world-readable: as root, nginx's workers are www-data)."""
    binary = servers.require("nginx")
    workdir = Path(tempfile.mkdtemp(prefix="urltester-site-"))
    port, dead_port = services.free_ports(2)
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (workdir / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    root = workdir / "www"
    site = build_site(root, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{dead_port}", pages=pages)
    workdir.chmod(0o755)
    for path in [workdir, *workdir.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    (workdir / "nginx.conf").write_text(nginx_conf(workdir, root, port))
    site.log = workdir / "access.log"
    proc = servers._popen([binary, "-p", str(workdir), "-c", str(workdir / "nginx.conf")], workdir / "nginx.out")
    running = servers.Running("nginx", proc, {"http": port})
    try:
        servers.wait_port(port, proc, "nginx", workdir / "nginx-error.log")
        yield site
    finally:
        running.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def linkchecker(url: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Debian's linkchecker on ``url`` (its CSV output on stdout); skips (fails with CI=true)
    when it is not installed."""
    binary = servers.require("linkchecker")
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["HOME"] = env.get("HOME") or "/tmp"
    return subprocess.run([binary, "--no-status", "--output=csv", *args, url], capture_output=True,
                          text=True, timeout=timeout, env=env)
