"""Discovery: the links a document holds, and the URLs a sitemap lists.

Modules: ``links`` (a found link, how it is resolved against the document's URL, which
kinds are skipped), ``html`` (HTML read streaming with lxml), ``markdown`` (Markdown read
with markdown-it-py and linkify-it-py, in chunks), ``sitemap`` (sitemaps and sitemap
indexes read streaming with defusedxml over expat, gzip inflated a piece at a time, the
protocol's bounds enforced as the bytes pass).

Owns: turning the bytes of a document into links or entries, each with its place (line,
entry number), never holding a document whole: ``runner import --format html|markdown|sitemap``
reads files of any size with it, and a crawl's worker reads the page body it already
holds with the same code (:func:`runner.discover.html.html_links`).

Fetches nothing and knows nothing of jobs: the caller hands it bytes (a file, a response
read through the check's transport) and decides what a link becomes. Real parsers only,
never regular expressions over markup. The only code of urltester that imports lxml,
markdown_it, linkify_it or defusedxml. May import: the shared leaves; never
``runner.check``, ``runner.taskq``, ``runner.jobs``, ``runner.cli``, ``db`` or ``tui``.
"""
