"""gsm: G-softmax (Gaussian-based softmax) heads and an end-to-end reproduction of the G-softmax paper.

``gsm.heads`` holds the drop-in heads (eqs. 3, 4, 13-16); ``python -m gsm.train`` (``gsm-train``) is the
Hydra trainer, whose configs ship inside the package (``gsm/configs``). Importing ``gsm`` loads nothing else.
"""

__version__ = "0.2.0"  # the single source of the version: pyproject.toml reads it (setuptools dynamic attr)

__all__ = ["__version__"]
