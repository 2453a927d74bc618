"""MkDocs hook (mkdocs.yml ``hooks:``): put files that live outside ``docs/`` into the site.

The notebooks stay in ``notebooks/`` (where the tests run them) and the bundled model's card stays next to its
weights; the site shows them as ``notebooks/*.ipynb`` and ``model-card.md``. ``on_files`` runs before
mkdocs-jupyter's (priority 100), so that plugin renders the notebooks, with the outputs they are committed with.

A notebook's Markdown links point at the repository (``../docs/kernels.md``, right on GitHub and in Jupyter);
mkdocs-jupyter renders them to HTML without checking them, so ``on_page_content`` maps them to the site's pages
and logs a warning (an error under ``--strict``) for one that names no page.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
MODEL_CARD = ROOT / "dllm_mcmc" / "small_model" / "bundled" / "tasks-small" / "MODEL_CARD.md"
REPO_LINK = re.compile(r'href="\.\./docs/([^"#]+)(#[^"]*)?"')
log = logging.getLogger("mkdocs.hooks.dllm_mcmc")


@event_priority(100)
def on_files(files: Files, config) -> Files:
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        # a real file whose source directory is the repository root: mkdocs-jupyter reads it from there
        files.append(File(f"notebooks/{path.name}", str(ROOT), config["site_dir"], config["use_directory_urls"]))
    files.append(File.generated(config, "model-card.md", abs_src_path=str(MODEL_CARD)))
    return files


def on_page_content(html: str, page, config, files: Files) -> str:
    if not page.file.src_uri.endswith(".ipynb"):
        return html

    def site_link(match: re.Match) -> str:
        target = files.get_file_from_path(match.group(1))
        if target is None:
            log.warning("%s links to ../docs/%s, which is not a page of the site", page.file.src_uri, match.group(1))
            return match.group(0)
        return f'href="{target.url_relative_to(page.file)}{match.group(2) or ""}"'

    return REPO_LINK.sub(site_link, html)
