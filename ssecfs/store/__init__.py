"""The object store seam: everything ssecfs asks of S3 goes through an `ObjectStore`."""

from .base import ListedObject, ListPage, ObjectInfo, ObjectStore

__all__ = ["ListPage", "ListedObject", "ObjectInfo", "ObjectStore"]
