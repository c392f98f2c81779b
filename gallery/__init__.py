"""The studio's storage: input images, runs and their files, and the job queue, in one data
folder indexed by an SQLite database (see store.py). Never imports torch."""
from gallery.errors import GalleryError, NotFound
from gallery.models import InputImage, Run
from gallery.store import DATA_ENV, Gallery, resolve_data_dir, run_id

__all__ = ["DATA_ENV", "Gallery", "GalleryError", "InputImage", "NotFound", "Run", "resolve_data_dir", "run_id"]
