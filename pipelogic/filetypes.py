"""The platform's file types: its vocabulary, a file's types from its extension, and a
generated file's extension from its type (docs/platform.md, "File slots"). Pure data."""

from __future__ import annotations

from pathlib import Path

__all__ = ["EXTENSION_TYPES", "FILE_TYPES", "TYPE_EXTENSIONS", "types_of"]

# The platform's file-type vocabulary (its "File types" page names these groups; its full
# set is larger, so another name is accepted with a warning from validate).
FILE_TYPES = (
    "model",
    "weights",
    "onnx",
    "mar",
    "safetensors",
    "checkpoint",
    "tokenizer",
    "lora",
    "gguf",
    "csv",
    "tsv",
    "excel",
    "parquet",
    "arrow",
    "pdf",
    "json",
    "jsonl",
    "yaml",
    "toml",
    "xml",
    "html",
    "markdown",
    "text",
    "srt",
    "vtt",
    "image",
    "audio",
    "video",
    "mesh",
    "point_cloud",
    "numpy",
    "faiss",
    "archive",
    "binary",
)
# A bound file's types when the binding does not say: its extension's entry here, and the
# extension itself (so the older form, a slot typed by extension, still matches).
EXTENSION_TYPES: dict[str, tuple[str, ...]] = {
    "onnx": ("onnx", "weights"),
    "pt": ("weights", "checkpoint"),
    "pth": ("weights", "checkpoint"),
    "safetensors": ("safetensors", "weights"),
    "engine": ("weights",),
    "bin": ("weights",),
    "ckpt": ("checkpoint",),
    "mar": ("mar",),
    "gguf": ("gguf", "model"),
    "csv": ("csv",),
    "tsv": ("tsv",),
    "xlsx": ("excel",),
    "xls": ("excel",),
    "parquet": ("parquet",),
    "arrow": ("arrow",),
    "feather": ("arrow",),
    "pdf": ("pdf",),
    "json": ("json",),
    "jsonl": ("jsonl",),
    "yaml": ("yaml",),
    "yml": ("yaml",),
    "toml": ("toml",),
    "xml": ("xml",),
    "html": ("html",),
    "htm": ("html",),
    "md": ("markdown",),
    "txt": ("text",),
    "srt": ("srt",),
    "vtt": ("vtt",),
    "png": ("image",),
    "jpg": ("image",),
    "jpeg": ("image",),
    "bmp": ("image",),
    "webp": ("image",),
    "tif": ("image",),
    "tiff": ("image",),
    "wav": ("audio",),
    "mp3": ("audio",),
    "flac": ("audio",),
    "ogg": ("audio",),
    "mp4": ("video",),
    "avi": ("video",),
    "mkv": ("video",),
    "mov": ("video",),
    "webm": ("video",),
    "obj": ("mesh",),
    "stl": ("mesh",),
    "glb": ("mesh",),
    "ply": ("mesh", "point_cloud"),
    "pcd": ("point_cloud",),
    "npy": ("numpy",),
    "npz": ("numpy",),
    "faiss": ("faiss",),
    "index": ("faiss",),
    "zip": ("archive",),
    "tar": ("archive",),
    "tgz": ("archive",),
    "gz": ("archive",),
}
# A generated file's extension, from its type (else the type itself).
TYPE_EXTENSIONS = {
    "excel": "xlsx",
    "markdown": "md",
    "text": "txt",
    "image": "png",
    "audio": "wav",
    "video": "mp4",
    "numpy": "npy",
    "archive": "zip",
    "point_cloud": "ply",
    "mesh": "obj",
    "weights": "bin",
    "model": "bin",
    "binary": "bin",
    "checkpoint": "ckpt",
}


def types_of(path: Path, said: str | None = None) -> set[str]:
    """The file types of ``path``: ``said`` by the binding, else from its extension; every
    file is also ``binary``."""
    if said:
        return {said, "binary"}
    ext = path.suffix.lstrip(".").lower()
    return {ext, *EXTENSION_TYPES.get(ext, ()), "binary"}
