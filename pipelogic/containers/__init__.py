"""Containers: the runtime image, component images and compose files.

``scripts/build-images`` (``python -m pipelogic.containers``) builds the runtime image;
``pipelogic image build`` builds a component's image on top of it; ``pipelogic compose``
writes a compose file for a pipeline (:func:`render_compose`). The docker SDK is imported
only when an image is built, so rendering a compose file needs no engine.
"""

from pipelogic.containers._compose import ComposeOptions, render_compose
from pipelogic.containers._images import (
    DEFAULT_BASE,
    LOCAL_BASE,
    RUNTIME_IMAGE,
    build_component_image,
    build_runtime_image,
)

__all__ = [
    "DEFAULT_BASE",
    "LOCAL_BASE",
    "RUNTIME_IMAGE",
    "ComposeOptions",
    "build_component_image",
    "build_runtime_image",
    "render_compose",
]
