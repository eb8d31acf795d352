"""Images and datasets: preprocessing (numpy + PIL, no torch), image folders, bundled data.

``edgevit.data.preprocess`` is used on devices by :mod:`edgevit.runtime`, so this package
imports nothing heavy at import time.
"""

from edgevit.data.preprocess import PreprocessSpec, load_image, preprocess_image, preprocess_images

__all__ = ["PreprocessSpec", "load_image", "preprocess_image", "preprocess_images"]
