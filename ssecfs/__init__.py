"""ssecfs: a FUSE filesystem over an S3 bucket encrypted with SSE-C."""

__version__ = "0.1.0"
