# Sphinx configuration of rnnfast's documentation: the pages are Markdown (MyST), the API pages come
# from the docstrings (autodoc; NumPy-style sections through napoleon). Built by .ci/run with
# warnings as errors:  pip install ".[docs]" && sphinx-build -W -b html docs docs/_build/html
project = "rnnfast"
author = "the rnnfast developers"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "myst_parser"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
myst_heading_anchors = 3
html_theme = "alabaster"
html_title = "rnnfast"
