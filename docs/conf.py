"""Sphinx configuration of balgrad's documentation (``sphinx-build -W docs docs/_build/html``)."""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(DOCS.parent / "src"))  # a checkout without `pip install -e .` builds too

import sphinx_autodoc_typehints  # noqa: E402

import balgrad  # noqa: E402

_process_signature = sphinx_autodoc_typehints.process_signature


def _signature_or_none(*args, **kwargs):
    # the hints extension fails on a dataclass whose default is inspect.Parameter.empty
    # (balgrad.registry.Option's REQUIRED); autodoc's own signature is kept there
    try:
        return _process_signature(*args, **kwargs)
    except ValueError:
        return None


sphinx_autodoc_typehints.process_signature = _signature_or_none

project = "balgrad"
author = "balgrad contributors"
copyright = "balgrad contributors, MIT licence"
release = version = balgrad.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx_autodoc_typehints",
    "balgrad_docs",  # docs/_ext: the API pages, the CLI and config tables, generated at build time
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
root_doc = "index"

html_theme = "furo"
html_title = f"balgrad {release}"
html_static_path = ["_static"]

myst_enable_extensions = ["colon_fence", "deflist", "dollarmath"]
myst_heading_anchors = 3  # `page.md#a-heading` links, as GitHub renders them

autodoc_default_options = {"members": True, "undoc-members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
typehints_fully_qualified = False
always_document_param_types = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True  # an "Attributes:" section as fields, not a second attribute entry

# A reference to a balgrad name that does not exist fails the build (-W); references to
# other libraries' names (torch, numpy, pydantic, the standard library) are not checked,
# since the build runs offline, without their inventories.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(?!balgrad\b).*"),
    # private names (`_grad.py`, `_Stream`) are left out of the reference by design
    (r"py:.*", r"balgrad\.(.*\.)?_[A-Za-z].*"),
    (r"py:class", r"balgrad(\.\w+)*\.[A-Z]"),  # a one-letter TypeVar (`T`)
]
autodoc_inherit_docstrings = False  # not torch's or Lightning's docstrings on our overrides
suppress_warnings = [
    # pydantic's `Field(...)` and string annotations the hints extension cannot evaluate
    "sphinx_autodoc_typehints.forward_reference",
    "sphinx_autodoc_typehints.guarded_import",
    # one short type alias name defined in two modules (`Pixels`, `SampleRate`)
    "ref.python",
]
